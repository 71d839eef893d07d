# EdgeProxy image: docker build -t edgeproxy .
# Runs `edgeproxy serve` as the unprivileged `node` user; configure it with EDGEPROXY_* variables
# (README, "Configuration"). Ports: 8080 public, 9090 admin API (loopback inside the container
# unless EDGEPROXY_ADMIN_ADDR says otherwise, e.g. 0.0.0.0:9090 for a Prometheus on the network).

# --- build: compile TypeScript with the dev dependencies --------------------------------------
FROM node:24-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
# --ignore-scripts: the install scripts are the test PostgreSQL's and the pinned Node's (the image
# has Node 24 already); neither is needed to compile.
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json ./
COPY src ./src
RUN npx tsc -p tsconfig.json \
 && npm prune --omit=dev --ignore-scripts --no-audit --no-fund

# --- runtime: production dependencies and the compiled code only -----------------------------
FROM node:24-slim
ENV NODE_ENV=production
WORKDIR /app
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist/src ./dist/src
COPY package.json ./
COPY migrations ./migrations
USER node
EXPOSE 8080 9090
# /healthz on the admin port (from EDGEPROXY_ADMIN_ADDR, default 9090), over loopback.
HEALTHCHECK --interval=10s --timeout=3s --start-period=15s --retries=3 \
  CMD ["node", "-e", "const a = process.env.EDGEPROXY_ADMIN_ADDR || '127.0.0.1:9090'; fetch('http://127.0.0.1:' + a.slice(a.lastIndexOf(':') + 1) + '/healthz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# A larger young generation: fewer scavenges on the request path (docs/decisions/0007).
ENTRYPOINT ["node", "--max-semi-space-size=32", "dist/src/cli/bin.js"]
CMD ["serve"]

/**
 * The Node.js version EdgeProxy runs on. The bin checks it before loading anything else, so an
 * old `node` on the PATH refuses to start with one line instead of starting and failing later on
 * an API it lacks (`reusePort`, newer TLS options). Kept free of imports and new syntax: it must
 * load on the old runtimes it turns away.
 */

/** The oldest release of the Node 24 LTS line; `engines.node` in package.json says the same. */
export const REQUIRED_NODE = { major: 24, minor: 11 } as const;

/** Why this Node cannot run EdgeProxy, as one line with what to do; undefined when it can. */
export function runtimeProblem(version: string, execPath: string): string | undefined {
  const m = /^v?(\d+)\.(\d+)\./.exec(version);
  const major = m === null ? 0 : Number(m[1]);
  const minor = m === null ? 0 : Number(m[2]);
  if (major > REQUIRED_NODE.major || (major === REQUIRED_NODE.major && minor >= REQUIRED_NODE.minor)) return undefined;
  return (
    `needs Node.js ${REQUIRED_NODE.major}.${REQUIRED_NODE.minor} or later (the ${REQUIRED_NODE.major} LTS line); ` +
    `${execPath} is v${version.replace(/^v/, '')}. Use the Docker image, a Node.js ${REQUIRED_NODE.major} package, ` +
    'or the pinned one that npm ci installs (npm start, npx edgeproxy, node_modules/.bin/node)'
  );
}

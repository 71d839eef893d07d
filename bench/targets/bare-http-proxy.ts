// The reference: a bare http-proxy script with a keep-alive agent (http-proxy-3, the API-compatible
// fork EdgeProxy uses; docs/decisions/0001). node bench/targets/bare-http-proxy.ts PORT BACKEND_PORT
import http from 'node:http';
import { createProxyServer } from 'http-proxy-3';

const [port, backend] = process.argv.slice(2).map(Number);
const agent = new http.Agent({ keepAlive: true, maxFreeSockets: 256 });
const proxy = createProxyServer({ target: `http://127.0.0.1:${backend}`, agent });
proxy.on('error', (_err, _req, res) => {
  const r = res as http.ServerResponse;
  if (!r.headersSent) r.writeHead(502);
  r.end();
});
http.createServer((req, res) => proxy.web(req, res)).listen(port, '127.0.0.1', () => console.log(JSON.stringify({ ready: true, port })));
process.on('SIGTERM', () => process.exit(0));

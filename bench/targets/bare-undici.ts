// A bare undici forwarding script (Pool.stream), the undici counterpart of bare-http-proxy.ts.
// node bench/targets/bare-undici.ts PORT BACKEND_PORT
import http from 'node:http';
import { Pool } from 'undici';

const [port, backend] = process.argv.slice(2).map(Number);
const pool = new Pool(`http://127.0.0.1:${backend}`, { pipelining: 1 });
http
  .createServer((req, res) => {
    const headers = { ...req.headers };
    delete headers.connection;
    pool.stream(
      {
        path: req.url ?? '/',
        method: req.method as 'GET',
        headers,
        body: req.method === 'GET' || req.method === 'HEAD' ? null : req,
        opaque: res,
      },
      ({ statusCode, headers: h, opaque }) => {
        const r = opaque as http.ServerResponse;
        delete h.connection;
        delete h['keep-alive'];
        delete h['transfer-encoding'];
        r.writeHead(statusCode, h as http.OutgoingHttpHeaders);
        return r;
      },
      (err) => {
        if (err !== null && !res.headersSent) res.writeHead(502).end();
      },
    );
  })
  .listen(port, '127.0.0.1', () => console.log(JSON.stringify({ ready: true, port })));
process.on('SIGTERM', () => process.exit(0));

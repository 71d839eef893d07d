// Fallback backend when nginx is not installed: a tiny node:http server, 12-byte responses.
// node bench/targets/node-backend.ts PORT
import http from 'node:http';

const [port] = process.argv.slice(2).map(Number);
const body = Buffer.from('hello world\n');
http
  .createServer((req, res) => {
    req.resume();
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': body.length });
    res.end(body);
  })
  .listen(port, '127.0.0.1', () => console.log(JSON.stringify({ ready: true, port })));
process.on('SIGTERM', () => process.exit(0));

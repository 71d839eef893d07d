// The floor of Node's own cost for bench/https-speed.ts: node:http on a plain port and
// https.createServer (tls.Server, Node's SNI-less path) on a TLS port, both answering `GET /`
// themselves with the backend's 12-byte body (nothing is proxied).
// node bench/targets/node-tls.ts PLAIN_PORT TLS_PORT CERT_FILE KEY_FILE
import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';

const [plainPort, tlsPort, certFile, keyFile] = process.argv.slice(2);
const body = Buffer.from('hello world\n');
const answer = (req: http.IncomingMessage, res: http.ServerResponse) => {
  req.resume();
  res.writeHead(200, { 'content-type': 'text/plain', 'content-length': body.length });
  res.end(body);
};
const tls = { cert: readFileSync(certFile!), key: readFileSync(keyFile!), ALPNProtocols: ['http/1.1'] };
http
  .createServer(answer)
  .listen(Number(plainPort), '127.0.0.1', () =>
    https.createServer(tls, answer).listen(Number(tlsPort), '127.0.0.1', () => console.log(JSON.stringify({ ready: true }))),
  );
process.on('SIGTERM', () => process.exit(0));

// The floors of Node's own cost for bench/https-speed.ts: node:http on a plain port and, on a TLS
// port, both answering `GET /` themselves with the backend's 12-byte body (nothing is proxied):
//   https  https.createServer (tls.Server, one certificate, Node's SNI-less path)
//   front  EdgeProxy's TLS front (src/tls/tls-front.ts: the ClientHello read first, the
//          certificate chosen by name, then TLS on the socket) feeding a node:http server, as
//          the HTTPS listener feeds the proxy: the front's cost is front − https
// node bench/targets/node-tls.ts https|front PLAIN_PORT TLS_PORT CERT_FILE KEY_FILE
import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import tls from 'node:tls';
import { createTlsFront } from '../../src/tls/tls-front.js';

const [mode, plainPort, tlsPort, certFile, keyFile] = process.argv.slice(2);
const body = Buffer.from('hello world\n');
const answer = (req: http.IncomingMessage, res: http.ServerResponse) => {
  req.resume();
  res.writeHead(200, { 'content-type': 'text/plain', 'content-length': body.length });
  res.end(body);
};
const credentials = { cert: readFileSync(certFile!), key: readFileSync(keyFile!) };

function tlsServer() {
  if (mode === 'https') return https.createServer({ ...credentials, ALPNProtocols: ['http/1.1'] }, answer);
  const context = tls.createSecureContext(credentials);
  const server = http.createServer(answer);
  return createTlsFront({
    select: (hello) => (hello.serverName === undefined ? undefined : context),
    alpn: ['http/1.1'],
    handshakeTimeoutMs: 10_000,
    onSecure: (socket) => server.emit('connection', socket),
    onRefused: () => undefined,
  });
}

http
  .createServer(answer)
  .listen(Number(plainPort), '127.0.0.1', () =>
    tlsServer().listen(Number(tlsPort), '127.0.0.1', () => console.log(JSON.stringify({ ready: true }))),
  );
process.on('SIGTERM', () => process.exit(0));

/**
 * nginx for the speed benches: a config directory per instance (1 worker, no access log, its temp
 * paths inside the directory) and the instance started in the foreground.
 */
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { start, type Started } from './processes.js';

/** Writes `<tmp>/<name>/nginx.conf` with `body` inside its `http {}` block; returns the directory. */
export function nginxConf(tmp: string, name: string, body: string, workers = 1): string {
  const dir = join(tmp, name);
  spawnSync('mkdir', ['-p', join(dir, 'logs')]);
  const file = join(dir, 'nginx.conf');
  writeFileSync(
    file,
    `worker_processes ${workers};\nuser root;\npid ${dir}/nginx.pid;\nerror_log ${dir}/error.log warn;\nevents { worker_connections 4096; }\n` +
      `http {\n access_log off;\n client_body_temp_path ${dir}/body; proxy_temp_path ${dir}/proxy; fastcgi_temp_path ${dir}/f; uwsgi_temp_path ${dir}/u; scgi_temp_path ${dir}/s;\n keepalive_requests 1000000;\n${body}\n}\n`,
  );
  return dir;
}

/** nginx with the config of `dir`, ready once `port` accepts. */
export function startNginx(dir: string, port: number): Promise<Started> {
  return start('nginx', ['-p', dir, '-c', join(dir, 'nginx.conf'), '-g', 'daemon off;'], false, port);
}

/** The backend every proxy forwards to: nginx answering `GET /` with a 12-byte body. */
export function backendConf(tmp: string, port: number): string {
  return nginxConf(
    tmp,
    'backend',
    ` server { listen 127.0.0.1:${port}; location / { default_type text/plain; return 200 "hello world\\n"; } }`,
  );
}

/** The `location` of nginx as a reverse proxy to the backend (upstream `backend`, keep-alive). */
export const PROXY_LOCATION =
  'location / { proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection ""; proxy_set_header Host $host; }';

/** The upstream block for the backend on `port`, with pooled keep-alive connections. */
export const upstream = (port: number): string => ` upstream backend { server 127.0.0.1:${port}; keepalive 128; }\n`;

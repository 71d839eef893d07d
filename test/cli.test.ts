import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { OPTIONS } from '../src/config/config.js';
import { helpDefault } from '../src/cli/options.js';
import { REQUIRED_NODE, runtimeProblem } from '../src/cli/runtime.js';
import { describeRun, runCli as cli, type Run } from './support/cli.js';

// The CLI as a real process (test/support/cli.ts): configuration errors, --help, --version.

const PASSWORD = 'Sup3rS3cretPw';
const DB_URL = `postgres://edge:${PASSWORD}@db.internal:5432/zeitwork`;
const REGION = '01234567-89ab-cdef-0123-456789abcdef';
/** Every required setting, valid. Only used together with something invalid: a valid config would start serving. */
const GOOD_ENV = { EDGEPROXY_DATABASE_URL: DB_URL, EDGEPROXY_REGION_ID: REGION };

function assertNoPassword(r: Run): void {
  assert.ok(!r.stdout.includes(PASSWORD), `password on stdout:\n${describeRun(r)}`);
  assert.ok(!r.stderr.includes(PASSWORD), `password on stderr:\n${describeRun(r)}`);
}

/** Exit status 2, nothing on stdout, exactly one `edgeproxy: ...` line on stderr; returns that line. */
function assertUsageError(r: Run): string {
  assert.equal(r.signal, null, `killed (timeout?):\n${describeRun(r)}`);
  assert.equal(r.code, 2, describeRun(r));
  assert.equal(r.stdout, '', describeRun(r));
  assert.match(r.stderr, /^edgeproxy: [^\n]+\n$/, describeRun(r));
  assertNoPassword(r);
  return r.stderr.trimEnd();
}

describe('edgeproxy --help and --version', { concurrency: 4 }, () => {
  for (const args of [['--help'], ['serve', '--help']]) {
    it(`${args.join(' ')} exits 0 and lists every flag and env var with its default`, async () => {
      const r = await cli(args, GOOD_ENV);
      assert.equal(r.code, 0, describeRun(r));
      assert.equal(r.stderr, '');
      assertNoPassword(r);
      // yargs wraps long lines: compare on single-spaced text, option by option.
      const text = r.stdout.replace(/\s+/g, ' ');
      const start = text.indexOf('Configuration (flag over env var over default):');
      const end = text.indexOf('Options:', start);
      assert.ok(start >= 0 && end > start, `no configuration group in:\n${r.stdout}`);
      const chunks = text
        .slice(start, end)
        .split(/ (?=--[a-z])/)
        .slice(1);
      assert.equal(chunks.length, OPTIONS.length, `expected one entry per option:\n${chunks.join('\n')}`);
      for (const o of OPTIONS) {
        const chunk = chunks.find((c) => c.startsWith(`--${o.flag} `));
        assert.ok(chunk !== undefined, `--${o.flag} missing from help:\n${r.stdout}`);
        assert.ok(chunk.includes(o.env), `--${o.flag} does not name ${o.env}: ${chunk}`);
        const shownDefault = helpDefault(o);
        assert.ok(chunk.includes(`[default: ${shownDefault}]`), `--${o.flag} does not show default ${shownDefault}: ${chunk}`);
      }
      // The documented defaults, literally.
      for (const [flag, def] of [
        ['http-addr', ':8080'],
        ['update-interval', '10s'],
        ['log-level', 'info'],
        ['health-timeout', '2s'],
        ['health-cache-ttl', '1s'],
        ['cross-region-port', '80'],
        ['shutdown-timeout', '30s'],
        ['sync-mode', 'auto'],
        ['publication', 'edgeproxy'],
        ['admin-addr', '127.0.0.1:9090'],
      ]) {
        assert.ok(
          chunks.some((c) => c.startsWith(`--${flag} `) && c.includes(`[default: ${def}]`)),
          `--${flag} default ${def}`,
        );
      }
      assert.match(text, /--version/);
      assert.match(text, /--help/);
    });
  }

  for (const command of ['resync', 'routes', 'certs', 'certs renew', 'migrate', 'doctor']) {
    it(`${command} --help exits 0 with examples and only the options the command uses`, async () => {
      const r = await cli([...command.split(' '), '--help']);
      assert.equal(r.code, 0, describeRun(r));
      assert.match(r.stdout, /Examples:/);
      assert.match(r.stdout, /--json/);
      assert.doesNotMatch(r.stdout, /--http-addr/, 'serve-only options are not listed');
    });
  }

  it('--help lists the commands', async () => {
    const r = await cli(['--help']);
    for (const command of ['serve', 'resync', 'routes [host]', 'certs', 'migrate', 'doctor'])
      assert.ok(r.stdout.includes(`edgeproxy ${command}`), `${command} in:\n${r.stdout}`);
  });

  it('--version prints the package.json version', async () => {
    const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };
    const r = await cli(['--version'], GOOD_ENV);
    assert.equal(r.code, 0, describeRun(r));
    assert.equal(r.stdout, `${pkg.version}\n`);
    assert.equal(r.stderr, '');
  });

  it('the built bin runs through its shebang (with the V8 flags it ships with)', () => {
    // npm test builds first; `package.json` "bin" points here.
    const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as {
      version: string;
      bin: { edgeproxy: string };
    };
    const bin = fileURLToPath(new URL(`../${pkg.bin.edgeproxy}`, import.meta.url));
    assert.match(readFileSync(bin, 'utf8').split('\n')[0]!, /^#!\/usr\/bin\/env -S node --max-semi-space-size=32$/);
    assert.equal(execFileSync(bin, ['--version'], { encoding: 'utf8' }), `${pkg.version}\n`);
  });

  it('the built bin under the plain `node` of the PATH (without the pinned one): runs on Node 24, else refuses in one line', () => {
    const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as {
      version: string;
      bin: { edgeproxy: string };
    };
    const bin = fileURLToPath(new URL(`../${pkg.bin.edgeproxy}`, import.meta.url));
    // What an operator's shell finds: the PATH without node_modules/.bin (npm test puts the pinned Node 24 first).
    const PATH = (process.env.PATH ?? '')
      .split(':')
      .filter((dir) => !dir.includes('node_modules'))
      .join(':');
    const env = { PATH, HOME: process.env.HOME ?? '/tmp' };
    const plain = spawnSync('node', ['-p', 'process.versions.node + " " + process.execPath'], { env, encoding: 'utf8' });
    assert.equal(plain.status, 0, `a node on the PATH without node_modules: ${plain.stderr}`);
    const [version, execPath] = plain.stdout.trim().split(' ') as [string, string];
    const r = spawnSync(bin, ['--version'], { env, encoding: 'utf8' });
    if (runtimeProblem(version, execPath) === undefined) {
      assert.equal(r.status, 0, r.stderr);
      assert.equal(r.stdout, `${pkg.version}\n`);
    } else {
      assert.equal(r.status, 1, r.stderr);
      assert.equal(r.stdout, '');
      assert.match(
        r.stderr,
        new RegExp(
          `^edgeproxy: needs Node\\.js ${REQUIRED_NODE.major}\\.${REQUIRED_NODE.minor} or later [^\\n]*v${version.replaceAll('.', '\\.')}[^\\n]*\\n$`,
        ),
      );
    }
  });

  it('the runtime check: Node 24.11 and later run, older ones are told what they need', () => {
    for (const v of ['24.11.0', '24.21.0', 'v25.0.1', '26.10.0']) assert.equal(runtimeProblem(v, '/usr/bin/node'), undefined, v);
    for (const v of ['20.20.2', 'v22.12.0', '24.10.0', 'garbage']) {
      const problem = runtimeProblem(v, '/usr/bin/node') ?? '';
      assert.match(problem, /^needs Node\.js 24\.11 or later .*\/usr\/bin\/node is v/, v);
      assert.ok(!problem.includes('\n'), 'one line');
    }
  });
});

describe('edgeproxy with a bad configuration: exit 2, one line on stderr', { concurrency: 4 }, () => {
  interface Case {
    readonly name: string;
    readonly args: readonly string[];
    readonly env: Readonly<Record<string, string>>;
    /** Must appear in the stderr line. */
    readonly names: readonly string[];
  }
  const cases: Case[] = [
    {
      name: 'missing database URL',
      args: [],
      env: { EDGEPROXY_REGION_ID: REGION },
      names: ['EDGEPROXY_DATABASE_URL', '--database-url', 'required'],
    },
    {
      name: 'missing region id',
      args: ['serve'],
      env: { EDGEPROXY_DATABASE_URL: DB_URL },
      names: ['EDGEPROXY_REGION_ID', '--region-id', 'required'],
    },
    {
      name: 'bad region id from env',
      args: ['serve'],
      env: { ...GOOD_ENV, EDGEPROXY_REGION_ID: 'eu-central-1' },
      names: ['EDGEPROXY_REGION_ID:', '"eu-central-1"'],
    },
    {
      name: 'bad region id from a flag',
      args: ['--region-id', 'not-a-uuid'],
      env: GOOD_ENV,
      names: ['--region-id:', '"not-a-uuid"'],
    },
    {
      name: 'bad duration from env',
      args: [],
      env: { ...GOOD_ENV, EDGEPROXY_UPDATE_INTERVAL: '10' },
      names: ['EDGEPROXY_UPDATE_INTERVAL:', '"10"'],
    },
    {
      name: 'bad duration from a flag',
      args: ['serve', '--health-timeout=-1s'],
      env: GOOD_ENV,
      names: ['--health-timeout:', '"-1s"'],
    },
    {
      name: 'bad log level',
      args: [],
      env: { ...GOOD_ENV, EDGEPROXY_LOG_LEVEL: 'verbose' },
      names: ['EDGEPROXY_LOG_LEVEL:', '"verbose"'],
    },
    {
      name: 'bad listen address',
      args: ['serve', '--http-addr', '8080'],
      env: GOOD_ENV,
      names: ['--http-addr:', '"8080"'],
    },
    {
      name: 'unknown flag',
      args: ['--bogus-flag', 'x'],
      env: GOOD_ENV,
      names: ['bogus-flag'],
    },
    {
      name: 'non-postgres database URL with a password in env',
      args: ['serve'],
      env: { ...GOOD_ENV, EDGEPROXY_DATABASE_URL: `mysql://edge:${PASSWORD}@db/zeitwork` },
      names: ['EDGEPROXY_DATABASE_URL:'],
    },
    {
      name: 'unparseable database URL with a password in a flag',
      args: ['--database-url', `postgres//edge:${PASSWORD}@db`],
      env: GOOD_ENV,
      names: ['--database-url:'],
    },
  ];

  cases.push(
    { name: 'resync: bad admin address', args: ['resync', '--admin-addr', 'localhost'], env: {}, names: ['--admin-addr:', '"localhost"'] },
    { name: 'resync: admin API disabled', args: ['resync'], env: { EDGEPROXY_ADMIN_ADDR: 'off' }, names: ['admin API address is empty'] },
    { name: 'resync: bad timeout', args: ['resync', '--timeout', 'soon'], env: {}, names: ['--timeout:', '"soon"'] },
    { name: 'resync: unknown flag', args: ['resync', '--force'], env: {}, names: ['force'] },
    { name: 'routes: two hosts', args: ['routes', 'a.example', 'b.example'], env: {}, names: ['b.example'] },
    { name: 'routes: limit out of range', args: ['routes', '--limit', '0'], env: {}, names: ['--limit:', '1 to 100000'] },
    { name: 'routes: limit not a number', args: ['routes', '--limit', 'ten'], env: {}, names: ['--limit:'] },
    { name: 'migrate: no database URL', args: ['migrate'], env: {}, names: ['EDGEPROXY_DATABASE_URL', 'required'] },
    {
      name: 'migrate: bad database URL with a password',
      args: ['migrate', '--database-url', `mysql://edge:${PASSWORD}@db/x`],
      env: {},
      names: ['--database-url:'],
    },
    { name: 'certs renew: no name', args: ['certs', 'renew'], env: {}, names: ['Not enough non-option arguments'] },
    { name: 'doctor: bad sync mode', args: ['doctor', '--sync-mode', 'stream'], env: GOOD_ENV, names: ['--sync-mode:', '"stream"'] },
    { name: 'doctor: bad region id', args: ['doctor'], env: { ...GOOD_ENV, EDGEPROXY_REGION_ID: 'eu' }, names: ['EDGEPROXY_REGION_ID:'] },
    { name: 'doctor: bad publication name', args: ['doctor', '--publication', 'Edge-Proxy'], env: GOOD_ENV, names: ['--publication:'] },
  );

  for (const c of cases) {
    it(`${c.name}: edgeproxy ${c.args.join(' ').replaceAll(PASSWORD, '***') || '(no subcommand)'}`, async () => {
      const line = assertUsageError(await cli(c.args, c.env));
      for (const n of c.names) assert.ok(line.includes(n), `expected ${JSON.stringify(n)} in: ${line}`);
    });
  }

  // The table above already mixes both forms; here the same configuration goes through both.
  it('`serve` and no subcommand behave the same', async () => {
    const env = { EDGEPROXY_DATABASE_URL: DB_URL, EDGEPROXY_REGION_ID: 'EU', EDGEPROXY_LOG_LEVEL: 'verbose' };
    const [bare, serve] = await Promise.all([cli([], env), cli(['serve'], env)]);
    const line = assertUsageError(bare);
    assertUsageError(serve);
    assert.ok(line.includes('EDGEPROXY_REGION_ID'), line);
    assert.equal(serve.stderr, bare.stderr);
  });
});

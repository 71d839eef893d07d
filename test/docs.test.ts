import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { ERROR_CODES } from '../src/errors.js';

// The documentation is part of the interface: what a user can meet must be written down.

const read = (path: string) => readFileSync(new URL(`../${path}`, import.meta.url), 'utf8');

describe('docs/errors.md', () => {
  const doc = read('docs/errors.md');
  const documented = new Set([...doc.matchAll(/^\| `([A-Z0-9_]+)` \|/gm)].map((m) => m[1]!));

  it('lists every error code, each once', () => {
    for (const code of Object.keys(ERROR_CODES)) assert.ok(documented.has(code), `${code} is not in docs/errors.md`);
    assert.equal([...doc.matchAll(/^\| `([A-Z0-9_]+)` \|/gm)].length, documented.size, 'a code is listed twice');
  });

  it('lists no code the code does not have', () => {
    for (const code of documented) assert.ok(code in ERROR_CODES, `docs/errors.md lists ${code}, which src/errors.ts does not define`);
  });
});

/** Every `*.ts` file under src/, with its text. */
function sources(): { path: string; text: string }[] {
  const root = new URL('../src/', import.meta.url);
  return (readdirSync(root, { recursive: true }) as string[])
    .filter((f) => f.endsWith('.ts'))
    .map((f) => ({ path: `src/${f}`, text: readFileSync(new URL(f, root), 'utf8') }));
}

/** The message of each logger call: the last string literal before the call's closing parenthesis. */
function logMessages(text: string): string[] {
  const out: string[] = [];
  for (const m of text.matchAll(/\b(?:logger|log)\.(?:debug|info|warn|error|fatal)\(/g)) {
    let depth = 1;
    let i = m.index + m[0].length;
    const start = i;
    for (; i < text.length && depth > 0; i++) {
      if (text[i] === '(') depth++;
      else if (text[i] === ')') depth--;
    }
    const call = text.slice(start, i - 1);
    const literals = [...call.matchAll(/'((?:[^'\\]|\\.)*)'|`((?:[^`\\]|\\.)*)`/g)];
    const last = literals.at(-1);
    if (last !== undefined && /\s*,?\s*$/.test(call.slice(last.index + last[0].length))) out.push(last[1] ?? last[2]!);
  }
  return out;
}

describe('docs/logging.md', () => {
  const doc = read('docs/logging.md');
  it('documents every message the code logs', () => {
    const missing: string[] = [];
    let found = 0;
    for (const { path, text } of sources()) {
      for (const msg of logMessages(text)) {
        found += 1;
        // A message built from a template is documented with its placeholder left out.
        const shown = msg.replace(/\$\{[^}]*\}/g, '');
        if (!doc.includes(`\`${msg}\``) && !doc.includes(shown.split('(')[0]!.trim())) missing.push(`${path}: ${msg}`);
      }
    }
    assert.ok(found > 40, `the scan found only ${found} log calls`);
    assert.deepEqual(missing, []);
  });
});

describe('README metrics table', () => {
  it('lists every metric the service registers', async () => {
    const { Metrics } = await import('../src/metrics/metrics.js');
    const readme = read('README.md');
    const names = new Metrics().registry.getMetricsAsArray().map((m) => m.name);
    const ours = names.filter((n) => !/^edgeproxy_(process|nodejs)_/.test(n));
    assert.ok(ours.length > 10);
    for (const name of ours) assert.ok(readme.includes(`\`${name}\``), `${name} is not in the README's metrics table`);
  });
});

describe('docs/streaming.md sync states', () => {
  it('describes every state of the sync', async () => {
    const { SYNC_STATES } = await import('../src/sync/sync-state.js');
    const doc = read('docs/streaming.md');
    for (const state of SYNC_STATES) assert.match(doc, new RegExp(`^\\| \`${state}\` \\|`, 'm'), state);
  });
});

describe('README configuration table', () => {
  const rows = new Map(
    [...read('README.md').matchAll(/^\| `(EDGEPROXY_[A-Z0-9_]+)` \| `--([a-z0-9-]+)` \| ([^|]+) \|/gm)].map((m) => [
      m[1]!,
      { flag: m[2]!, shown: m[3]!.trim() },
    ]),
  );

  it('lists every option with its flag and its default', async () => {
    const { OPTIONS } = await import('../src/config/config.js');
    for (const o of OPTIONS) {
      const row = rows.get(o.env);
      assert.ok(row !== undefined, `${o.env} has no row in the README's configuration table`);
      assert.equal(row.flag, o.flag, `${o.env}'s flag`);
      // No default = required; an empty default reads as "none" or "empty"; any other, as typed.
      const ok = o.default === undefined ? ['required'] : o.default === '' ? ['none', 'empty'] : [`\`${o.default}\``];
      assert.ok(ok.includes(row.shown), `${o.env}'s default: the README says ${row.shown}, the code ${JSON.stringify(o.default)}`);
    }
  });

  it('lists no variable the code does not read', async () => {
    const { OPTIONS } = await import('../src/config/config.js');
    const envs = new Set(OPTIONS.map((o) => o.env));
    for (const env of rows.keys())
      assert.ok(envs.has(env), `the README's configuration table lists ${env}, which src/config/config.ts does not define`);
  });
});

describe('README benchmark table', () => {
  const listed = new Set(
    [...read('README.md').matchAll(/^\| `bench\/[^|]+\|/gm)].flatMap((m) =>
      [...m[0].matchAll(/`bench\/([a-z0-9-]+)\.ts`/g)].map((b) => b[1]!),
    ),
  );

  it('lists every benchmark in bench/, and none that is not there', () => {
    const benches = readdirSync(new URL('../bench/', import.meta.url))
      .filter((f) => f.endsWith('.ts'))
      .map((f) => f.slice(0, -3));
    for (const b of benches) assert.ok(listed.has(b), `bench/${b}.ts has no row in the README's benchmark table`);
    for (const b of listed) assert.ok(benches.includes(b), `the README's benchmark table lists bench/${b}.ts, which does not exist`);
  });
});

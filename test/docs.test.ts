import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
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

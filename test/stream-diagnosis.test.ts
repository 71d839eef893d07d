import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { PublicationError } from '../src/db/publication.js';
import { EdgeProxyError } from '../src/errors.js';
import { StreamError } from '../src/replication/stream.js';

describe('failure classification', () => {
  it('each kind has its code', () => {
    const codes = (['unavailable', 'publication', 'resync', 'transient'] as const).map((k) => new StreamError('streaming', k, 'x').code);
    assert.deepEqual(codes, ['STREAM_UNAVAILABLE', 'STREAM_PUBLICATION', 'STREAM_RESYNC', 'STREAM_TRANSIENT']);
  });

  it('stream and publication errors are in the family, with the SQL as their fix', () => {
    const e = new StreamError('check_publication', 'publication', 'publication "edgeproxy" does not exist', 'CREATE PUBLICATION …;');
    assert.ok(e instanceof EdgeProxyError);
    assert.equal(e.fix, 'CREATE PUBLICATION …;');
    assert.equal(e.fixSql, e.fix);
    const p = new PublicationError('publication "edgeproxy" does not exist', 'CREATE PUBLICATION …;');
    assert.ok(p instanceof EdgeProxyError);
    assert.equal(p.code, 'STREAM_PUBLICATION');
    assert.equal(p.fix, 'CREATE PUBLICATION …;');
  });
});

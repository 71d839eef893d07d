import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import pg from 'pg';
import { startPostgres, type PgServer } from './postgres.js';

/** Folders whose contents a base backup leaves out (the standby gets WAL by streaming). */
const SKIP_CONTENTS = new Set(['pg_wal', 'pg_replslot', 'pg_stat_tmp']);
const SKIP_FILES = new Set(['postmaster.pid', 'postmaster.opts']);

async function copyData(src: string, dst: string, top = true): Promise<void> {
  for (const e of await fsp.readdir(src, { withFileTypes: true })) {
    const s = path.join(src, e.name);
    const d = path.join(dst, e.name);
    if (e.isDirectory()) {
      await fsp.mkdir(d, { recursive: true, mode: 0o700 });
      if (!(top && SKIP_CONTENTS.has(e.name))) await copyData(s, d, false);
    } else if (e.isFile() && !(top && SKIP_FILES.has(e.name))) {
      await fsp.copyFile(s, d);
    } else if (e.isSymbolicLink()) {
      await fsp.symlink(await fsp.readlink(s), d);
    }
    // sockets and other special files are skipped
  }
}

/**
 * A hot standby of a local `primary`, streaming from it through a physical slot, without
 * pg_basebackup (the embedded binaries lack it): pg_backup_start, copy the data folder,
 * pg_backup_stop's label as backup_label, standby.signal. See ../shared/notes/postgres-for-tests.md.
 */
export async function startStandby(primary: PgServer, settings: Record<string, string> = {}): Promise<PgServer> {
  if (primary.dataDir === undefined || primary.binDir === undefined) throw new Error('startStandby needs a local primary');
  const slot = `standby_${randomBytes(4).toString('hex')}`;
  const c = new pg.Client({ connectionString: primary.url('postgres') });
  await c.connect();
  try {
    await c.query('SELECT pg_create_physical_replication_slot($1, true)', [slot]);
    await c.query(`SELECT pg_backup_start('edgeproxy-test-standby', true)`);
    return await startPostgres({
      binDir: primary.binDir,
      populate: async (dataDir) => {
        await copyData(primary.dataDir!, dataDir);
        const { rows } = await c.query<{ labelfile: string }>('SELECT labelfile FROM pg_backup_stop(false)');
        await fsp.writeFile(path.join(dataDir, 'backup_label'), rows[0]!.labelfile);
        await fsp.writeFile(path.join(dataDir, 'standby.signal'), '');
      },
      settings: {
        hot_standby_feedback: 'on',
        primary_conninfo: `host=127.0.0.1 port=${primary.port} user=postgres`,
        primary_slot_name: slot,
        ...settings,
      },
    });
  } finally {
    await c.end();
  }
}

/** Waits until the standby has replayed everything the primary has written so far. */
export async function waitForReplay(primary: pg.ClientBase, standby: pg.ClientBase, timeoutMs = 10_000): Promise<void> {
  const { rows } = await primary.query<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn');
  const target = rows[0]!.lsn;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const r = await standby.query<{ done: boolean }>('SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn AS done', [target]);
    if (r.rows[0]?.done) return;
    if (Date.now() > deadline) throw new Error(`standby did not replay up to ${target} within ${timeoutMs} ms`);
    await new Promise((res) => setTimeout(res, 10));
  }
}

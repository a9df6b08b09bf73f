import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { after, before, describe, test } from 'node:test';
import { decodeBatch, encodeBatch } from '../../src/engine/embedded/batch-format.ts';
import type { StoredRecord } from '../../src/engine/types.ts';
import { isEventlineError } from '../../src/errors.ts';
import { BatchIds, type BatchMarkStore, DedupGate, type MarkedIds } from '../../src/runtime/dedup-gate.ts';
import { type SqliteDedupStore, sqliteDedupStore } from '../../src/runtime/dedup-sqlite.ts';
import { spawnNode, unique, waitFor } from '../helpers.ts';

const HOLDER = new URL('./processes/dedup-transaction.ts', import.meta.url);

const dir = mkdtempSync(join(tmpdir(), 'eventline-dedup-sqlite-'));
after(() => rmSync(dir, { recursive: true, force: true }));

interface MarkRow {
  /** `batches` or `packed`: the table (after the store's table name) the row is in. */
  in: string;
  /** The type SQLite stored the row's ids as, and their length. */
  kind: string;
  size: number;
}

/** The rows of marks written in batches for a group. */
function rowsOf(store: SqliteDedupStore, table: string, group: string): MarkRow[] {
  const rows = store.db
    .prepare(
      `SELECT 'batches' AS tbl, typeof(ids) AS kind, length(ids) AS size FROM ${table}_batches WHERE grp = ?1
       UNION ALL SELECT 'packed', typeof(ids), length(ids) FROM ${table}_packed WHERE grp = ?1`,
    )
    .all(group) as { tbl: string; kind: string; size: number }[];
  return rows.map((r) => ({ in: r.tbl, kind: r.kind, size: r.size }));
}

describe('SQLite store: lookups', () => {
  let store: SqliteDedupStore;
  before(() => {
    store = sqliteDedupStore({ path: join(dir, 'lookups.db') });
  });
  after(() => store.close());

  test('a batch of marks is one row, found again by has, hasMany and processOnce', async () => {
    const group = unique('g');
    const marked = Array.from({ length: 300 }, () => randomUUID());
    const others = Array.from({ length: 300 }, () => randomUUID());
    await store.markMany!(group, marked, 60_000);
    assert.deepEqual(rowsOf(store, 'eventline_dedup', group), [
      { in: 'batches', kind: 'text', size: marked.join('\n').length },
    ]);
    assert.deepEqual(await store.hasMany!(group, [...others, ...marked]), new Set(marked));
    assert.equal(await store.has(group, marked[123]!), true);
    assert.equal(await store.has(group, others[0]!), false);
    assert.equal(await store.has(group, marked[123]!.toUpperCase()), false, 'ids are compared exactly');
    let ran = 0;
    const result = await store.processOnce(group, marked[7]!, 60_000, () => ran++);
    assert.deepEqual(result, { duplicate: true });
    assert.equal(ran, 0);
    assert.deepEqual(await store.hasMany!(unique('other-group'), marked), new Set(), 'marks are per group');
  });

  test('a lookup overlapping several rows finds the marks of each', async () => {
    const group = unique('g');
    const ids = Array.from({ length: 90 }, () => randomUUID()).sort();
    // Interleaved, as marks of partitions handled side by side are: every row spans every other.
    await store.markMany!(
      group,
      ids.filter((_, i) => i % 3 === 0),
      60_000,
    );
    await store.markMany!(
      group,
      ids.filter((_, i) => i % 3 === 1),
      60_000,
    );
    assert.deepEqual(await store.hasMany!(group, ids), new Set(ids.filter((_, i) => i % 3 !== 2)));
  });

  test('marks made one at a time are found whether their range holds few or many', async () => {
    const group = unique('g');
    const ids = Array.from({ length: 200 }, (_, i) => `m-${String(i).padStart(3, '0')}`);
    for (const id of ids.filter((_, i) => i % 2 === 0)) await store.mark(group, id, 60_000);
    // 20 ids whose range holds 10 marks (one probe answers), then 23 spread over all 100 (more
    // than a probe reads: asked id by id).
    const narrow = ids.slice(40, 60);
    assert.deepEqual(await store.hasMany!(group, narrow), new Set(narrow.filter((_, i) => i % 2 === 0)));
    const wide = ids.filter((_, i) => i % 9 === 0);
    assert.deepEqual(
      await store.hasMany!(group, wide),
      new Set(wide.filter((id) => ids.indexOf(id) % 2 === 0)),
    );
  });
});

describe('SQLite store: checkpoints', () => {
  test('a store on its own file copies its WAL into the database on a thread of its own', async () => {
    const path = join(dir, 'checkpointed.db');
    const store = sqliteDedupStore({ path });
    const group = unique('g');
    const ids = Array.from({ length: 40_000 }, () => randomUUID());
    for (let i = 0; i < ids.length; i += 1000) await store.markMany!(group, ids.slice(i, i + 1000), 60_000);
    // 640 KB of packed marks sit in the WAL: the connection itself checkpoints only far later.
    assert.ok(statSync(path).size < 200_000, `database file ${statSync(path).size} bytes before`);
    await waitFor(
      'the checkpoint thread to copy the marks into the database file',
      () => statSync(path).size > 600_000,
      20_000,
    );
    assert.deepEqual((await store.hasMany!(group, ids.slice(0, 500))).size, 500);
    await store.close();
  });
});

/** Records as the embedded engine stores and fetches them, with these ce_ids. */
function withIds(ids: string[]): StoredRecord[] {
  const payload = encodeBatch(
    ids.map((id, i) => ({
      offset: i,
      timestamp: 0,
      key: null,
      value: null,
      headers: [['ce_id', Buffer.from(id)]],
    })),
    0,
    0,
  );
  const records: StoredRecord[] = [];
  decodeBatch(payload, 't', 0, 0, 0, 0, records, ids.length);
  return records;
}

describe('SQLite store: marks from the consumer runtime', () => {
  test('UUIDs are stored 16 bytes each; other ids as text; both are found by every lookup', async () => {
    const store = sqliteDedupStore({ path: join(dir, 'runtime-marks.db') });
    const group = unique('g');
    const gate = new DedupGate({ store, markDelay: '1h' }, group);
    const uuids = Array.from({ length: 300 }, () => randomUUID()).sort();
    const others = ['order-1', randomUUID().toUpperCase(), 'order-2'];
    const first = new BatchIds(withIds(uuids));
    for (let o = 0; o < uuids.length; o++) gate.handled(first, o);
    await gate.flush();
    const second = new BatchIds(withIds(others));
    for (let o = 0; o < others.length; o++) gate.handled(second, o);
    await gate.flush();
    assert.deepEqual(
      rowsOf(store, 'eventline_dedup', group).sort((a, b) => a.kind.localeCompare(b.kind)),
      [
        { in: 'packed', kind: 'blob', size: 300 * 16 },
        { in: 'batches', kind: 'text', size: others.join('\n').length },
      ],
    );
    const unknown = Array.from({ length: 50 }, () => randomUUID());
    assert.deepEqual(
      await store.hasMany!(group, [...unknown, ...uuids, ...others]),
      new Set([...uuids, ...others]),
    );
    assert.equal(await store.has(group, uuids[42]!), true);
    assert.equal(await store.has(group, uuids[42]!.toUpperCase()), false);
    assert.deepEqual(await gate.seen(new BatchIds(withIds([unknown[0]!, uuids[7]!]))), new Set([uuids[7]]));
    const once = await store.processOnce(group, uuids[9]!, 60_000, () => 'ran');
    assert.deepEqual(once, { duplicate: true });
    gate.close();
    await store.close();
  });

  test('ids that share their last bytes are told apart in a packed row', async () => {
    const store = sqliteDedupStore({ path: join(dir, 'runtime-tails.db') });
    const group = unique('g');
    const gate = new DedupGate({ store, markDelay: '1h' }, group);
    // A packed row is searched by the last four bytes of each id: these all share them.
    const id = (first: string): string => `${first}-0000-7000-8000-0000aabbccdd`;
    const batch = new BatchIds(withIds([id('00000001'), id('00000003')]));
    gate.handled(batch, 0);
    gate.handled(batch, 1);
    await gate.flush();
    assert.deepEqual(
      rowsOf(store, 'eventline_dedup', group).map((r) => `${r.in} ${r.kind}`),
      ['packed blob'],
    );
    assert.deepEqual(
      await store.hasMany!(group, [id('00000000'), id('00000001'), id('00000002'), id('00000003')]),
      new Set([id('00000001'), id('00000003')]),
    );
    gate.close();
    await store.close();
  });

  test('packed marks are kept apart from the text rows earlier versions read, and purged by TTL too', async () => {
    const store = sqliteDedupStore({ path: join(dir, 'runtime-tables.db'), table: 'marks' });
    const group = unique('g');
    const gate = new DedupGate({ store, markDelay: '1h' }, group);
    const uuids = Array.from({ length: 20 }, () => randomUUID()).sort();
    const texts = ['order-1', 'order-2'];
    const packed = new BatchIds(withIds(uuids));
    for (let o = 0; o < uuids.length; o++) gate.handled(packed, o);
    await gate.flush();
    const text = new BatchIds(withIds(texts));
    for (let o = 0; o < texts.length; o++) gate.handled(text, o);
    await gate.flush();
    // What a process of an earlier version does with each `_batches` row it finds in range.
    const earlier = store.db.prepare('SELECT ids FROM marks_batches WHERE grp = ?').all(group) as {
      ids: string | Uint8Array;
    }[];
    assert.deepEqual(
      earlier.flatMap((row) => (row.ids as string).split('\n')),
      texts,
      'only text rows where earlier versions read',
    );
    assert.deepEqual(await store.hasMany!(group, [...uuids, ...texts]), new Set([...uuids, ...texts]));
    // Expired marks of both tables go with the purge.
    const expired: MarkedIds = {
      count: uuids.length,
      packed: () => Buffer.from(uuids.join('').replaceAll('-', ''), 'hex'),
      list: () => uuids,
    };
    await (store as unknown as BatchMarkStore).markIds(group, expired, packed.low, packed.high, 0);
    await store.markMany!(group, ['order-3'], 0);
    assert.equal(rowsOf(store, 'marks', group).length, 4);
    assert.equal(await store.purge(), 2);
    assert.deepEqual(
      rowsOf(store, 'marks', group).map((r) => `${r.in} ${r.kind}`),
      ['batches text', 'packed blob'],
    );
    gate.close();
    await store.close();
  });

  test("on the application's connection a flush fails while the application has a transaction open", async () => {
    const db = new DatabaseSync(join(dir, 'runtime-app.db'));
    const store = sqliteDedupStore({ db });
    const group = unique('g');
    const gate = new DedupGate({ store, markDelay: '1h' }, group);
    const ids = [randomUUID(), randomUUID()].sort();
    const batch = new BatchIds(withIds(ids));
    gate.handled(batch, 0);
    gate.handled(batch, 1);
    // The application's own transaction, awaiting something between BEGIN and its end.
    db.exec('BEGIN');
    await assert.rejects(gate.flush(), (err) => isEventlineError(err));
    db.exec('ROLLBACK');
    assert.deepEqual(
      await store.hasMany!(group, ids),
      new Set(),
      'no mark joined the rolled back transaction',
    );
    await gate.flush();
    assert.deepEqual(await store.hasMany!(group, ids), new Set(ids), 'written by the next flush');
    gate.close();
    await store.close();
    // The same on a store's own connection, should a transaction be begun on it.
    const own = sqliteDedupStore({ path: join(dir, 'runtime-own.db') });
    const ownGate = new DedupGate({ store: own, markDelay: '1h' }, group);
    ownGate.handled(batch, 0);
    own.db.exec('BEGIN');
    await assert.rejects(ownGate.flush(), (err) => isEventlineError(err));
    own.db.exec('ROLLBACK');
    assert.deepEqual(await own.hasMany!(group, ids), new Set());
    ownGate.close();
    await own.close();
    db.close();
  });

  test('a flush waits while another process holds the write lock, and fails after lockTimeout', async () => {
    const path = join(dir, 'runtime-locked.db');
    const store = sqliteDedupStore({ path, lockTimeout: '300ms' });
    store.db.exec('CREATE TABLE effects (id TEXT NOT NULL)');
    const group = unique('g');
    const gate = new DedupGate({ store, markDelay: '1h' }, group);
    const ids = [randomUUID(), randomUUID()].sort();
    const batch = new BatchIds(withIds(ids));
    gate.handled(batch, 0);
    gate.handled(batch, 1);
    // Holds the write lock: a processOnce in another process whose function never ends.
    const holder = spawnNode(HOLDER, {
      store: 'sqlite',
      target: path,
      effects: 'effects',
      group,
      id: 'held',
    });
    try {
      await holder.waitForLine<{ wrote?: boolean }>('the lock to be held', (l) => l.wrote === true);
      await assert.rejects(gate.flush(), (err) => isEventlineError(err, 'EVENTLINE_ERR_ENGINE_BUSY'));
      assert.deepEqual(await store.hasMany!(group, ids), new Set());
    } finally {
      holder.kill('SIGKILL');
      await holder.exited;
    }
    await gate.flush();
    assert.deepEqual(await store.hasMany!(group, ids), new Set(ids), 'written by the next flush');
    gate.close();
    await store.close();
  });
});

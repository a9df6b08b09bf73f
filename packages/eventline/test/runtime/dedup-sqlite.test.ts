import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { type SqliteDedupStore, sqliteDedupStore } from '../../src/runtime/dedup-sqlite.ts';
import { unique, waitFor } from '../helpers.ts';

const dir = mkdtempSync(join(tmpdir(), 'eventline-dedup-sqlite-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** The rows `markMany` wrote for a group: the type SQLite stored their ids as, and their length. */
function rowsOf(store: SqliteDedupStore, table: string, group: string): { kind: string; size: number }[] {
  const rows = store.db
    .prepare(`SELECT typeof(ids) AS kind, length(ids) AS size FROM ${table}_batches WHERE grp = ?`)
    .all(group) as { kind: string; size: number }[];
  return rows.map((r) => ({ kind: r.kind, size: r.size }));
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
      { kind: 'text', size: marked.join('\n').length },
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

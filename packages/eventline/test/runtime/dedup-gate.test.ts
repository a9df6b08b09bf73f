import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { connect } from '../../src/client.ts';
import { bytes } from '../../src/codec.ts';
import { decodeBatch, encodeBatch } from '../../src/engine/embedded/batch-format.ts';
import type { Header, StoredRecord } from '../../src/engine/types.ts';
import { silentLogger } from '../../src/observability/logger.ts';
import { type DedupStore, eventIdOf } from '../../src/runtime/dedup.ts';
import { BatchIds, DedupGate, OffsetIds } from '../../src/runtime/dedup-gate.ts';
import { sqliteDedupStore } from '../../src/runtime/dedup-sqlite.ts';
import { defineTopic } from '../../src/topic.ts';
import { unique, waitFor } from '../helpers.ts';

const dir = mkdtempSync(join(tmpdir(), 'eventline-dedup-gate-'));
after(() => rmSync(dir, { recursive: true, force: true }));

describe('OffsetIds', () => {
  test('holds ids of offsets taken in order, finished in order or not', () => {
    const ids = new OffsetIds<string>();
    for (let o = 100; o < 110; o++) ids.set(o, `e${o}`);
    assert.equal(ids.get(100), 'e100');
    assert.equal(ids.get(109), 'e109');
    assert.equal(ids.get(99), undefined);
    assert.equal(ids.get(110), undefined);
    ids.delete(103);
    assert.equal(ids.get(103), undefined);
    ids.delete(100);
    ids.delete(101);
    assert.equal(ids.get(100), undefined);
    assert.equal(ids.get(102), 'e102');
    // Put back after it was finished (a record taken again).
    ids.set(101, 'again');
    assert.equal(ids.get(101), 'again');
    for (let o = 101; o < 110; o++) ids.delete(o);
    for (let o = 100; o < 110; o++) assert.equal(ids.get(o), undefined);
    // Empty again: the next offset may be anywhere.
    ids.set(5, 'e5');
    assert.equal(ids.get(5), 'e5');
  });

  test('gaps (compacted offsets) and offsets far away are kept too', () => {
    const ids = new OffsetIds<string>();
    ids.set(0, 'a');
    ids.set(10, 'b');
    ids.set(1_000_000, 'c');
    ids.set(1_000_001, 'd');
    assert.deepEqual(
      [0, 10, 1_000_000, 1_000_001, 5].map((o) => ids.get(o)),
      ['a', 'b', 'c', 'd', undefined],
    );
    ids.delete(1_000_000);
    assert.equal(ids.get(1_000_000), undefined);
    assert.equal(ids.get(1_000_001), 'd');
    ids.clear();
    assert.deepEqual(
      [0, 10, 1_000_001].map((o) => ids.get(o)),
      [undefined, undefined, undefined],
    );
  });

  test('a long run keeps every id still held while finished ones are dropped', () => {
    const ids = new OffsetIds<string>();
    const held = new Map<number, string>();
    for (let o = 0; o < 20_000; o++) {
      ids.set(o, `e${o}`);
      held.set(o, `e${o}`);
      // Finish all but every 997th record, a little behind the newest.
      const done = o - 50;
      if (done >= 0 && done % 997 !== 0) {
        ids.delete(done);
        held.delete(done);
      }
    }
    for (let o = 0; o < 20_000; o++) assert.equal(ids.get(o), held.get(o), `offset ${o}`);
  });
});

/** Records as the embedded engine stores and fetches them, from offset `first`, with these headers. */
function stored(headers: Header[][], first = 0): StoredRecord[] {
  const payload = encodeBatch(
    headers.map((h, i) => ({ offset: first + i, timestamp: 0, key: null, value: null, headers: h })),
    first,
    0,
  );
  const records: StoredRecord[] = [];
  decodeBatch(payload, 't', 0, first, 0, first, records, headers.length);
  return records;
}

/** Records whose ce_id headers are these ids (undefined: no ce_id). */
function withIds(ids: (string | undefined)[], first = 0): StoredRecord[] {
  return stored(
    ids.map((id): Header[] =>
      id === undefined ? [['ce_type', Buffer.from('t')]] : [['ce_id', Buffer.from(id)]],
    ),
    first,
  );
}

describe('BatchIds', () => {
  test('reads every ce_id of a stored batch as eventIdOf does, without a string per record', () => {
    const records = stored([
      [['ce_id', Buffer.from(randomUUID())]],
      [],
      [
        ['ce_type', Buffer.from('t')],
        ['ce_id', Buffer.from('x'.repeat(300))],
      ],
      [['ce_id', Buffer.from([0x63, 0xe9, 0xff])]],
      [['ce_idx', Buffer.from('no')]],
      [['ce_id', Buffer.alloc(0)]],
      ...Array.from({ length: 50 }, (): Header[] => [['ce_id', Buffer.from(randomUUID())]]),
    ]);
    assert.ok(records[0]!.copyHeader !== undefined, 'the embedded engine copies headers out');
    const batch = new BatchIds(records);
    const expected = records.map(eventIdOf);
    assert.deepEqual(
      records.map((_, i) => batch.id(i)),
      expected,
    );
    assert.deepEqual(
      batch.ids(),
      expected.filter((id) => id !== undefined),
    );
    assert.equal(batch.count, 54);
    assert.equal(batch.id(2), 'x'.repeat(300), 'an id longer than the room kept for it');
    const sorted = expected.filter((id) => id !== undefined).sort();
    assert.equal(batch.low, sorted[0]);
    assert.equal(batch.high, sorted.at(-1));
    assert.equal(batch.ordered, false);
    // Records of an engine that cannot copy headers out are read one by one, with the same result.
    const plain = records.map((r) => ({ ...r, headers: r.headers }));
    const fallback = new BatchIds(plain);
    assert.deepEqual(fallback.ids(), batch.ids());
    assert.equal(fallback.low, batch.low);
    assert.equal(fallback.high, batch.high);
  });

  test('knows when each id sorts after the one before, and finds records by offset', () => {
    const ids = Array.from({ length: 20 }, () => randomUUID()).sort();
    const ordered = new BatchIds(withIds([ids[0], undefined, ...ids.slice(1)], 100));
    assert.equal(ordered.ordered, true);
    assert.equal(ordered.low, ids[0]);
    assert.equal(ordered.high, ids[19]);
    assert.equal(ordered.idAt(100), ids[0]);
    assert.equal(ordered.idAt(101), undefined);
    assert.equal(ordered.idAt(102), ids[1]);
    assert.equal(ordered.idAt(99), undefined);
    assert.equal(new BatchIds(withIds([ids[0], ids[1], ids[1]])).ordered, false, 'an id twice');
    assert.equal(new BatchIds(withIds([ids[1], ids[0]])).ordered, false);
    // Offsets with gaps (a compacted log): found by search.
    const gappy = withIds(ids.slice(0, 3)).map((r, i) => ({ ...r, headers: r.headers, offset: i * 10 }));
    assert.equal(new BatchIds(gappy).idAt(20), ids[2]);
    assert.equal(new BatchIds(gappy).idAt(15), undefined);
  });
});

describe('DedupGate', () => {
  test('handled ids count as processed until marked, and are in the store after the flush', async () => {
    const store = sqliteDedupStore({ path: join(dir, 'gate.db') });
    const group = unique('g');
    const gate = new DedupGate({ store, markDelay: '1h' }, group);
    const ids = Array.from({ length: 40 }, () => randomUUID()).sort();
    const first = new BatchIds(withIds(ids.filter((_, i) => i % 2 === 0)));
    // Handled out of order, as records of several partitions and lanes are.
    for (let o = 19; o >= 0; o--) gate.handled(first, o);
    const handled = new Set(ids.filter((_, i) => i % 2 === 0));
    // A later batch interleaving with it: its repeats are found before and while it is handled.
    const second = new BatchIds(withIds(ids, 100));
    assert.deepEqual(await gate.seen(second), handled);
    assert.equal(gate.repeat(second, 104), true);
    assert.equal(gate.repeat(second, 105), false);
    assert.deepEqual(await store.hasMany!(group, ids), new Set(), 'nothing written before the flush');
    await gate.flush();
    assert.equal(gate.repeat(second, 104), false, 'marked now: the fetch-time lookup finds it');
    assert.deepEqual(await store.hasMany!(group, ids), handled);
    assert.deepEqual(await gate.seen(second), handled);
    gate.close();
    await store.close();
  });

  test('a batch with an id twice, or spanning ids of another batch not yet marked, is checked id by id', async () => {
    const store = sqliteDedupStore({ path: join(dir, 'gate-repeat.db') });
    const gate = new DedupGate({ store, markDelay: '1h' }, unique('g'));
    const [a, b, c, d] = Array.from({ length: 4 }, () => randomUUID()).sort() as [
      string,
      string,
      string,
      string,
    ];
    const twice = new BatchIds(withIds([a, b, a]));
    assert.deepEqual(await gate.seen(twice), new Set());
    gate.handled(twice, 0);
    assert.equal(gate.repeat(twice, 1), false);
    gate.handled(twice, 1);
    assert.equal(gate.repeat(twice, 2), true, 'the same id later in the batch');
    // Fetched before either of the two below was handled, so the lookup found nothing.
    const one = new BatchIds(withIds([c]));
    const other = new BatchIds(withIds([b, c, d], 10));
    assert.deepEqual(await gate.seen(one), new Set());
    assert.deepEqual(await gate.seen(other), new Set([b]));
    assert.equal(gate.repeat(other, 11), false);
    gate.handled(one, 0);
    assert.equal(gate.repeat(other, 11), true, 'handled in another batch since the fetch');
    assert.equal(gate.repeat(other, 12), false);
    gate.close();
    await store.close();
  });

  test('ids with a newline, or that are not UUIDs, are marked and found as well', async () => {
    const store = sqliteDedupStore({ path: join(dir, 'gate-odd.db') });
    const group = unique('g');
    const gate = new DedupGate({ store, markDelay: '1h' }, group);
    const ids = ['order-1', 'line\nbreak', 'order-2', 'ORDER-3'];
    const batch = new BatchIds(withIds(ids));
    for (let o = 0; o < ids.length; o++) gate.handled(batch, o);
    await gate.flush();
    assert.deepEqual(await store.hasMany!(group, [...ids, 'line', 'break']), new Set(ids));
    assert.deepEqual(
      await gate.seen(new BatchIds(withIds(['line', 'break', 'order-2']))),
      new Set(['order-2']),
    );
    gate.close();
    await store.close();
  });

  test('marks within markDelay of their handler, without a flush asked for', async () => {
    const store = sqliteDedupStore({ path: join(dir, 'gate-delay.db') });
    const group = unique('g');
    const gate = new DedupGate({ store, markDelay: '5ms' }, group);
    const id = randomUUID();
    gate.handled(new BatchIds(withIds([id])), 0);
    await waitFor('the mark to be written', () => store.has(group, id));
    gate.close();
    await store.close();
  });

  test('a failed flush keeps its ids pending and writes them with the next one', async () => {
    const sqlite = sqliteDedupStore({ path: join(dir, 'gate-fail.db') });
    let down = true;
    // The store seen through the two required methods and markMany, which fails while `down`.
    const store: DedupStore = {
      description: 'failing once',
      has: (g, id) => sqlite.has(g, id),
      mark: (g, id, ttl) => sqlite.mark(g, id, ttl),
      markMany: async (g, ids, ttl) => {
        if (down) throw new Error('store down');
        await sqlite.markMany!(g, ids, ttl);
      },
      close: async () => {},
    };
    const group = unique('g');
    const gate = new DedupGate({ store, markDelay: '1h' }, group);
    const [a, b] = [randomUUID(), randomUUID()].sort() as [string, string];
    const batch = new BatchIds(withIds([a, b]));
    gate.handled(batch, 0);
    await assert.rejects(gate.flush(), /store down/);
    assert.ok(gate.failure instanceof Error);
    assert.deepEqual(await gate.seen(new BatchIds(withIds([a]))), new Set([a]), 'still counts as processed');
    gate.handled(batch, 1);
    down = false;
    await gate.flush();
    assert.equal(gate.failure, undefined);
    assert.deepEqual(await sqlite.hasMany!(group, [a, b]), new Set([a, b]));
    gate.close();
    await sqlite.close();
  });
});

describe('subscribe with dedup', () => {
  test('an id repeated within a batch, across batches and across partitions is handled once', async () => {
    const bus = await connect('sqlite::memory:', { logger: silentLogger });
    const store = sqliteDedupStore({ path: join(dir, 'subscribe.db') });
    try {
      const topic = defineTopic(unique('dedup-repeats'), { partitions: 2, value: bytes() });
      await bus.ensureTopics([topic]);
      const ids = Array.from({ length: 20 }, () => randomUUID());
      // Each id three times: twice in one partition (back to back and far apart), once in the other.
      const items = (partition: number, order: string[]) =>
        order.map((id) => ({ value: Buffer.from(id), partition, headers: { ce_id: id } }));
      await bus.publishBatch(topic, items(0, [...ids.flatMap((id) => [id, id])]));
      await bus.publishBatch(topic, items(1, [...ids].reverse()));
      await bus.publishBatch(topic, items(0, ids));
      const handled: string[] = [];
      const skipped: string[] = [];
      const sub = bus.subscribe({
        group: unique('g'),
        topics: [topic],
        fromBeginning: true,
        maxBatchSize: 7,
        concurrency: { partitions: 2 },
        dedup: { store, onDuplicate: (m) => skipped.push(m.id!) },
        handler: (m) => {
          handled.push(m.id!);
        },
      });
      await waitFor('every record handled or skipped', () => handled.length + skipped.length === 80);
      await sub.stop();
      assert.deepEqual([...handled].sort(), [...ids].sort(), 'each id handled once');
      assert.equal(skipped.length, 60);
    } finally {
      await store.close();
      await bus.close();
    }
  });
});

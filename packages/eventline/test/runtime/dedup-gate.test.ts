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
import { BatchIds, DedupGate, TakenIds } from '../../src/runtime/dedup-gate.ts';
import { sqliteDedupStore } from '../../src/runtime/dedup-sqlite.ts';
import { defineTopic } from '../../src/topic.ts';
import { unique, waitFor } from '../helpers.ts';

const dir = mkdtempSync(join(tmpdir(), 'eventline-dedup-gate-'));
after(() => rmSync(dir, { recursive: true, force: true }));

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
  test('reads every ce_id of a stored batch as eventIdOf does', () => {
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
    assert.ok(records[0]!.locateHeader !== undefined, 'the embedded engine says where a header is');
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
    assert.equal(batch.id(2), 'x'.repeat(300), 'a long id that is not a UUID');
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

describe('TakenIds', () => {
  test('finds the batch of a taken record by offset until the record is finished', () => {
    const taken = new TakenIds();
    const a = new BatchIds(withIds(['a0', 'a1', 'a2'], 10));
    const b = new BatchIds(withIds(['b0', undefined, 'b2'], 13));
    taken.add(a);
    taken.add(b);
    assert.equal(taken.get(9), undefined);
    assert.equal(taken.get(11), a);
    assert.equal(taken.get(14), b, 'a record without an id is still one of its batch');
    assert.equal(taken.get(16), undefined);
    // Finished out of order, and twice: nothing else is affected.
    taken.delete(11);
    taken.delete(11);
    assert.equal(taken.get(11), undefined);
    assert.equal(taken.get(10), a);
    taken.delete(10);
    taken.delete(12);
    assert.equal(taken.get(12), undefined);
    assert.equal(taken.get(13), b, 'a batch with every record finished is dropped, the next stays');
    taken.delete(15);
    taken.clear();
    assert.equal(taken.get(13), undefined);
  });

  test('batches with offset gaps (a compacted log) and long runs', () => {
    const taken = new TakenIds();
    const gappy = withIds(['x', 'y', 'z']).map((r, i) => ({
      ...r,
      headers: r.headers,
      offset: 100 + i * 10,
    }));
    const batch = new BatchIds(gappy);
    taken.add(batch);
    assert.equal(taken.get(110), batch);
    assert.equal(taken.get(115), undefined);
    const batches = Array.from({ length: 50 }, (_, k) => new BatchIds(withIds(['p', 'q'], 1000 + k * 2)));
    for (const b of batches) taken.add(b);
    // All but every seventh batch finished, in any order: the others are still found.
    for (let k = 49; k >= 0; k--) {
      if (k % 7 === 0) continue;
      taken.delete(1000 + k * 2 + 1);
      taken.delete(1000 + k * 2);
    }
    for (let k = 0; k < 50; k++) assert.equal(taken.get(1000 + k * 2), k % 7 === 0 ? batches[k] : undefined);
    assert.equal(taken.get(120), batch);
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

  test('an id twice in one batch is a repeat even once the first copy is marked', async () => {
    const store = sqliteDedupStore({ path: join(dir, 'gate-repeat-marked.db') });
    const gate = new DedupGate({ store, markDelay: '1h' }, unique('g'));
    const [a, b] = [randomUUID(), randomUUID()].sort() as [string, string];
    const twice = new BatchIds(withIds([a, b, a]));
    assert.deepEqual(await gate.seen(twice), new Set());
    gate.handled(twice, 0);
    await gate.flush();
    assert.equal(gate.repeat(twice, 1), false);
    assert.equal(gate.repeat(twice, 2), true, 'the first copy was marked after the fetch-time lookup');
    gate.close();
    await store.close();
  });

  test('a lookup finds an id whose mark is written while the store looks', async () => {
    const sqlite = sqliteDedupStore({ path: join(dir, 'gate-slow-lookup.db') });
    let answer!: () => void;
    const answered = new Promise<void>((resolve) => {
      answer = resolve;
    });
    // An async store (as Postgres and Redis are) that reads at once and answers when told to.
    const store: DedupStore = {
      description: 'slow to answer',
      has: async (g, id) => {
        const marked = await sqlite.has(g, id);
        await answered;
        return marked;
      },
      mark: (g, id, ttl) => sqlite.mark(g, id, ttl),
      markMany: (g, ids, ttl) => sqlite.markMany!(g, ids, ttl),
      close: async () => {},
    };
    const group = unique('g');
    const gate = new DedupGate({ store, markDelay: '1h' }, group);
    const id = randomUUID();
    gate.handled(new BatchIds(withIds([id])), 0);
    const lookup = gate.seen(new BatchIds(withIds([id], 10)));
    await gate.flush();
    assert.equal(await sqlite.has(group, id), true, 'written after the store read');
    answer();
    assert.deepEqual(await lookup, new Set([id]));
    gate.close();
    await sqlite.close();
  });

  test('a batch stops pointing at marks once they are written, so a batch left open keeps none alive', async () => {
    const store = sqliteDedupStore({ path: join(dir, 'gate-release.db') });
    const gate = new DedupGate({ store, markDelay: '1h' }, unique('g'));
    // Record 1 of `open` waits in retry while later batches are handled and marked.
    const open = new BatchIds(withIds([randomUUID(), randomUUID()].sort()));
    gate.handled(open, 0);
    const later = new BatchIds(withIds([randomUUID()], 10));
    gate.handled(later, 10);
    assert.notEqual(open.marks, undefined);
    await gate.flush();
    assert.equal(open.marks, undefined, 'the open batch no longer holds the written marks (nor `later`)');
    assert.equal(later.marks, undefined);
    // A failed flush keeps them, and their ids still count as processed.
    const down: DedupStore = {
      description: 'down',
      has: async () => false,
      mark: async () => {
        throw new Error('store down');
      },
      close: async () => {},
    };
    const failing = new DedupGate({ store: down, markDelay: '1h' }, unique('g'));
    const kept = new BatchIds(withIds([randomUUID()], 20));
    failing.handled(kept, 20);
    await assert.rejects(failing.flush(), /store down/);
    assert.notEqual(kept.marks, undefined);
    failing.close();
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

  test('stop writes the marks still pending when there is no offset to commit', async () => {
    const bus = await connect('sqlite::memory:', { logger: silentLogger });
    const store = sqliteDedupStore({ path: join(dir, 'subscribe-stop.db') });
    try {
      const topic = defineTopic(unique('dedup-stop'), { value: bytes() });
      await bus.ensureTopics([topic]);
      const items = (ids: string[]) => ids.map((id) => ({ value: Buffer.from(id), headers: { ce_id: id } }));
      // Every other record fails and waits an hour for its retry: so many finished and waiting
      // records that the committed progress keeps only the first retries, and stops changing.
      const first = Array.from({ length: 200 }, () => randomUUID());
      const failing = new Set<string>(first.filter((_, i) => i % 2 === 0));
      const later = Array.from({ length: 20 }, () => randomUUID());
      await bus.publishBatch(topic, items(first));
      const group = unique('g');
      const handled = new Set<string>();
      const sub = bus.subscribe({
        group,
        topics: [topic],
        fromBeginning: true,
        retry: { attempts: Number.POSITIVE_INFINITY, initialDelay: '1h', maxDelay: '1h', jitter: 0 },
        dedup: { store, markDelay: '1h' },
        handler: (m) => {
          if (failing.has(m.id!)) throw new Error('not yet');
          handled.add(m.id!);
        },
      });
      const passing = first.filter((id) => !failing.has(id));
      // Marked: a commit carrying the progress of all of them has begun.
      await waitFor(
        'the first records to be marked',
        async () => (await store.hasMany!(group, passing)).size === passing.length,
      );
      await bus.publishBatch(topic, items(later));
      await waitFor('the later records to be handled', () => later.every((id) => handled.has(id)));
      await sub.stop();
      assert.deepEqual(await store.hasMany!(group, later), new Set(later), 'each handled record marked');
    } finally {
      await store.close();
      await bus.close();
    }
  });
});

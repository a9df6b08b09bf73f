import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { connect, type Eventline } from '../../src/client.ts';
import { EventlineError, isEventlineError } from '../../src/errors.ts';
import type { Message } from '../../src/message.ts';
import { silentLogger } from '../../src/observability/logger.ts';
import { partitionForKey } from '../../src/partitioner.ts';
import { createOutbox, type OutboxErrorInfo } from '../../src/patterns/outbox.ts';
import { sqliteDedupStore } from '../../src/runtime/dedup-sqlite.ts';
import { defineTopic, type Topic } from '../../src/topic.ts';
import { spawnNode, tally, unique, waitFor } from '../helpers.ts';

const POSTGRES = process.env.EVENTLINE_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const CHILD = new URL('./outbox-crash-child.ts', import.meta.url);

type Event = { key: string; seq: number };

/** Every record of a topic, partition by partition, in offset order. */
async function readAll<V>(bus: Eventline, topic: Topic<V>): Promise<Message<V>[]> {
  const out: Message<V>[] = [];
  for (const p of await bus.reader.offsets(topic.name)) {
    for (let offset = p.start; offset < p.end; ) {
      const ms = await bus.reader.read(topic, { partition: p.partition, from: { offset }, max: 1000 });
      if (ms.length === 0) break;
      out.push(...ms);
      offset = ms[ms.length - 1]!.offset + 1;
    }
  }
  return out;
}

/** Asserts that each key's events arrive with increasing `seq`. */
function assertOrderPerKey(messages: readonly Message<Event>[]): void {
  const last = new Map<string, number>();
  for (const m of messages) {
    const prev = last.get(m.value.key) ?? -1;
    assert.ok(m.value.seq > prev, `key ${m.value.key}: seq ${m.value.seq} after ${prev}`);
    last.set(m.value.key, m.value.seq);
  }
}

function serviceDb(): DatabaseSync {
  const db = new DatabaseSync(':memory:');
  db.exec('CREATE TABLE orders (id TEXT PRIMARY KEY, total INTEGER NOT NULL)');
  return db;
}

describe('outbox on SQLite', () => {
  let bus: Eventline;
  before(async () => {
    bus = await connect('sqlite::memory:', { logger: silentLogger });
  });
  after(() => bus.close());

  test('rows and events commit together and roll back together', async () => {
    const t = defineTopic<{ id: string }>(unique('outbox-commit'), { partitions: 2, key: (v) => v.id });
    await bus.ensureTopics([t]);
    const db = serviceDb();
    const outbox = await createOutbox(bus, { database: db, relay: false });
    const entry = await outbox.transaction(async (tx) => {
      tx.db.prepare('INSERT INTO orders VALUES (?, ?)').run('o-1', 10);
      return tx.publish(t, { id: 'o-1' });
    });
    await assert.rejects(
      outbox.transaction(async (tx) => {
        tx.db.prepare('INSERT INTO orders VALUES (?, ?)').run('o-2', 20);
        await tx.publish(t, { id: 'o-2' });
        throw new Error('the service changed its mind');
      }),
      /changed its mind/,
    );
    // A value the codec rejects fails the transaction: the row goes too.
    await assert.rejects(
      outbox.transaction(async (tx) => {
        tx.db.prepare('INSERT INTO orders VALUES (?, ?)').run('o-3', 30);
        await tx.publish(t, { id: 'o-3', n: 10n } as unknown as { id: string });
      }),
      (err: unknown) => isEventlineError(err, 'EVENTLINE_ERR_ENCODE'),
    );
    assert.deepEqual(
      db
        .prepare('SELECT id FROM orders')
        .all()
        .map((r) => r.id),
      ['o-1'],
    );
    assert.equal((await outbox.backlog()).count, 1);
    assert.deepEqual(await readAll(bus, t), [], 'nothing is published before the relay runs');

    outbox.start();
    await waitFor('the backlog to drain', async () => (await outbox.backlog()).count === 0);
    const published = await readAll(bus, t);
    assert.equal(entry.partition, -1, 'the relay picks the partition when it publishes');
    assert.deepEqual(
      published.map((m) => [m.value.id, m.id, m.key, m.partition]),
      [['o-1', entry.id, 'o-1', partitionForKey(Buffer.from('o-1'), 2)]],
    );
    await outbox.close();
    await assert.rejects(
      outbox.transaction(async () => {}),
      (err: unknown) => isEventlineError(err, 'EVENTLINE_ERR_CLOSED'),
    );
  });

  test('the relay publishes in order per key, keeping headers and timestamps', async () => {
    const t = defineTopic<Event>(unique('outbox-order'), { partitions: 3, key: (v) => v.key });
    await bus.ensureTopics([t]);
    const outbox = await createOutbox(bus, { database: serviceDb(), batchSize: 37 });
    const ids: string[] = [];
    for (let seq = 0; seq < 30; seq++) {
      await outbox.transaction(async (tx) => {
        // One event alone, then a batch: both keep their order.
        ids.push((await tx.publish(t, { key: 'k0', seq }, { headers: { 'x-n': String(seq) } })).id);
        const entries = await tx.publishBatch(
          t,
          Array.from({ length: 9 }, (_, k) => ({ value: { key: `k${k + 1}`, seq }, timestamp: 1_000 + seq })),
        );
        ids.push(...entries.map((e) => e.id));
      });
    }
    await waitFor('the backlog to drain', async () => (await outbox.backlog()).count === 0);
    await outbox.close();
    const published = await readAll(bus, t);
    const { missing, duplicated } = tally(
      published.map((m) => m.id!),
      ids,
    );
    assert.deepEqual(
      { missing, duplicated, count: published.length },
      { missing: [], duplicated: [], count: 300 },
    );
    assertOrderPerKey(published);
    const k0 = published.filter((m) => m.value.key === 'k0');
    assert.deepEqual(
      k0.map((m) => m.headers['x-n']),
      k0.map((m) => String(m.value.seq)),
    );
    assert.ok(
      published.filter((m) => m.value.key !== 'k0').every((m) => m.timestamp === 1_000 + m.value.seq),
    );
  });

  test('backlog counts unsent events and the age of the oldest', async () => {
    const t = defineTopic<Event>(unique('outbox-backlog'));
    await bus.ensureTopics([t]);
    const outbox = await createOutbox(bus, { database: serviceDb(), relay: false });
    assert.deepEqual(await outbox.backlog(), { count: 0, oldestAgeMs: 0 });
    await outbox.transaction((tx) =>
      tx.publishBatch(t, [{ value: { key: 'a', seq: 0 } }, { value: { key: 'a', seq: 1 } }]),
    );
    await waitFor('the oldest event to age', async () => (await outbox.backlog()).oldestAgeMs >= 20);
    assert.equal((await outbox.backlog()).count, 2);
    outbox.start();
    await waitFor('the backlog to drain', async () => (await outbox.backlog()).count === 0);
    assert.equal((await outbox.backlog()).oldestAgeMs, 0);
    await outbox.close();
  });

  test('keepSent keeps published rows out of the backlog', async () => {
    const t = defineTopic<Event>(unique('outbox-keep'));
    await bus.ensureTopics([t]);
    const db = serviceDb();
    const outbox = await createOutbox(bus, { database: db, keepSent: '1h', table: 'kept_outbox' });
    await outbox.transaction((tx) => tx.publish(t, { key: 'a', seq: 0 }));
    await waitFor('the backlog to drain', async () => (await outbox.backlog()).count === 0);
    await outbox.close();
    const rows = db.prepare('SELECT sent_at FROM kept_outbox').all();
    assert.equal(rows.length, 1);
    assert.equal(typeof rows[0]!.sent_at, 'number');
  });

  test('a failing engine is retried with backoff; nothing is lost or reordered', async () => {
    const t = defineTopic<Event>(unique('outbox-retry'), { partitions: 2, key: (v) => v.key });
    await bus.ensureTopics([t]);
    let refusals = 3;
    // The same client, whose appends are refused three times as if the brokers were down.
    const flaky = new Proxy(bus, {
      get(target, prop) {
        if (prop === 'appendEncoded') {
          return (...args: Parameters<Eventline['appendEncoded']>) => {
            if (refusals-- > 0) {
              return Promise.reject(new EventlineError('EVENTLINE_ERR_ENGINE_UNAVAILABLE', 'brokers down'));
            }
            return target.appendEncoded(...args);
          };
        }
        const v = Reflect.get(target, prop, target);
        return typeof v === 'function' ? v.bind(target) : v;
      },
    });
    const errors: [string, OutboxErrorInfo][] = [];
    const outbox = await createOutbox(flaky, {
      database: serviceDb(),
      retryDelay: '5ms',
      onError: (err, info) => errors.push([(err as EventlineError).code, info]),
    });
    for (let seq = 0; seq < 20; seq++) {
      await outbox.transaction((tx) => tx.publish(t, { key: `k${seq % 3}`, seq }));
    }
    await waitFor('the backlog to drain', async () => (await outbox.backlog()).count === 0);
    await outbox.close();
    assert.deepEqual(
      errors.map(([code, info]) => [code, info.topic, info.attempt]),
      [
        ['EVENTLINE_ERR_ENGINE_UNAVAILABLE', t.name, 1],
        ['EVENTLINE_ERR_ENGINE_UNAVAILABLE', t.name, 2],
        ['EVENTLINE_ERR_ENGINE_UNAVAILABLE', t.name, 3],
      ],
    );
    assert.ok(errors.every(([, info]) => info.retryInMs > 0));
    const published = await readAll(bus, t);
    assert.equal(published.length, 20);
    assertOrderPerKey(published);
  });

  test('a nested transaction is refused instead of waiting for itself', async () => {
    const outbox = await createOutbox(bus, { database: serviceDb(), relay: false });
    await assert.rejects(
      outbox.transaction(() => outbox.transaction(async () => {})),
      (err: unknown) => isEventlineError(err, 'EVENTLINE_ERR_INVALID_ARGUMENT'),
    );
    await outbox.close();
  });
});

describe('outbox on a shared SQLite file', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'eventline-outbox-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('two outboxes on one database do not publish the same event twice', async () => {
    const bus = await connect(`sqlite:${join(dir, 'engine-two.db')}`, { logger: silentLogger });
    const t = defineTopic<Event>(unique('outbox-two'), { partitions: 2, key: (v) => v.key });
    await bus.ensureTopics([t]);
    const file = join(dir, 'service-two.db');
    const first = new DatabaseSync(file);
    first.exec('PRAGMA journal_mode=WAL');
    const second = new DatabaseSync(file);
    const a = await createOutbox(bus, { database: first, batchSize: 10, pollInterval: '5ms' });
    const b = await createOutbox(bus, { database: second, batchSize: 10, pollInterval: '5ms' });
    const ids: string[] = [];
    for (let seq = 0; seq < 100; seq++) {
      const outbox = seq % 2 === 0 ? a : b;
      ids.push((await outbox.transaction((tx) => tx.publish(t, { key: `k${seq % 4}`, seq }))).id);
    }
    await waitFor('the backlog to drain', async () => (await a.backlog()).count === 0);
    await Promise.all([a.close(), b.close()]);
    const published = await readAll(bus, t);
    const { missing, duplicated } = tally(
      published.map((m) => m.id!),
      ids,
    );
    assert.deepEqual({ missing, duplicated }, { missing: [], duplicated: [] });
    assertOrderPerKey(published);
    first.close();
    second.close();
    await bus.close();
  });

  test('a relay killed between publishing and marking publishes again; dedup handles each event once', {
    timeout: 60_000,
  }, async () => {
    const url = `sqlite:${join(dir, 'engine-crash.db')}`;
    const bus = await connect(url, { logger: silentLogger });
    const t = defineTopic<Event>(unique('outbox-crash'), { partitions: 2, key: (v) => v.key });
    await bus.ensureTopics([t]);
    const file = join(dir, 'service-crash.db');
    const db = new DatabaseSync(file);
    db.exec('PRAGMA journal_mode=WAL');
    const writer = await createOutbox(bus, { database: db, relay: false });
    const ids: string[] = [];
    for (let seq = 0; seq < 50; seq++) {
      ids.push((await writer.transaction((tx) => tx.publish(t, { key: `k${seq % 5}`, seq }))).id);
    }
    const child = spawnNode(CHILD, { url, database: file, batchSize: 20 });
    const line = await child.waitForLine<{ published?: string[] }>(
      'the first batch',
      (l) => l.published !== undefined,
    );
    assert.equal(await child.exited, 'SIGKILL');
    assert.equal(line.published!.length, 20);
    assert.equal((await writer.backlog()).count, 50, 'the killed relay marked nothing');

    writer.start(); // takes over once the dead relay's lease expires
    await waitFor('the backlog to drain', async () => (await writer.backlog()).count === 0);
    await writer.close();
    const published = await readAll(bus, t);
    assert.equal(published.length, 70, 'the first batch is in the log twice');

    const store = sqliteDedupStore({ path: join(dir, 'dedup.db') });
    const handled: string[] = [];
    const skipped: string[] = [];
    const sub = bus.subscribe({
      group: unique('outbox-crash-group'),
      topics: [t],
      fromBeginning: true,
      dedup: { store, onDuplicate: (m) => skipped.push(m.id!) },
      handler: (m) => {
        handled.push(m.id!);
      },
    });
    try {
      await waitFor('every record', () => handled.length + skipped.length === 70, 60_000);
    } finally {
      await sub.stop();
    }
    await store.close();
    const { missing, duplicated } = tally(handled, ids);
    assert.deepEqual({ missing, duplicated }, { missing: [], duplicated: [] });
    assert.deepEqual(skipped.sort(), [...line.published!].sort());
    db.close();
    await bus.close();
  });
});

describe('outbox on PostgreSQL', () => {
  let bus: Eventline;
  let pool: pg.Pool;
  const tables: string[] = [];
  const table = (): string => {
    const name = unique('outbox').replaceAll('-', '_');
    tables.push(name, `${name}_relay`);
    return name;
  };
  before(async () => {
    bus = await connect('sqlite::memory:', { logger: silentLogger });
    pool = new pg.Pool({ connectionString: POSTGRES, max: 6 });
    await pool.query(
      'CREATE TABLE IF NOT EXISTS outbox_test_orders (id TEXT PRIMARY KEY, total INTEGER NOT NULL)',
    );
  });
  after(async () => {
    for (const name of tables) await pool.query(`DROP TABLE IF EXISTS ${name}`);
    await pool.end();
    await bus.close();
  });

  test('rows and events commit together and roll back together', async () => {
    const t = defineTopic<{ id: string }>(unique('outbox-pg'), { partitions: 2, key: (v) => v.id });
    await bus.ensureTopics([t]);
    const outbox = await createOutbox(bus, { database: { postgres: pool }, table: table(), relay: false });
    const [good, bad] = [unique('o'), unique('o')];
    const entry = await outbox.transaction(async (tx) => {
      await tx.client.query('INSERT INTO outbox_test_orders VALUES ($1, 10)', [good]);
      return tx.publish(t, { id: good });
    });
    await assert.rejects(
      outbox.transaction(async (tx) => {
        await tx.client.query('INSERT INTO outbox_test_orders VALUES ($1, 20)', [bad]);
        await tx.publish(t, { id: bad });
        throw new Error('the service changed its mind');
      }),
      /changed its mind/,
    );
    const rows = await pool.query('SELECT id FROM outbox_test_orders WHERE id = ANY($1)', [[good, bad]]);
    assert.deepEqual(
      rows.rows.map((r) => r.id),
      [good],
    );
    assert.equal((await outbox.backlog()).count, 1);
    outbox.start();
    await waitFor('the backlog to drain', async () => (await outbox.backlog()).count === 0);
    await outbox.close();
    const published = await readAll(bus, t);
    assert.deepEqual(
      published.map((m) => [m.value.id, m.id, m.partition]),
      [[good, entry.id, partitionForKey(Buffer.from(good), 2)]],
    );
  });

  test('two outboxes on one database publish each event once, in order per key', async () => {
    const t = defineTopic<Event>(unique('outbox-pg-two'), { partitions: 3, key: (v) => v.key });
    await bus.ensureTopics([t]);
    const name = table();
    // One on the service's pool, one on its own connection string: two services sharing a database.
    const a = await createOutbox(bus, {
      database: { postgres: pool },
      table: name,
      batchSize: 25,
      pollInterval: '5ms',
    });
    const b = await createOutbox(bus, {
      database: { postgres: POSTGRES },
      table: name,
      batchSize: 25,
      pollInterval: '5ms',
    });
    const server = new URL(POSTGRES);
    assert.equal(b.description, `postgres://${server.host}${server.pathname}`, 'no user or password shown');
    const ids: string[] = [];
    for (let round = 0; round < 20; round++) {
      const outbox = round % 2 === 0 ? a : b;
      const entries = await outbox.transaction((tx) =>
        tx.publishBatch(
          t,
          Array.from({ length: 10 }, (_, k) => ({ value: { key: `k${k % 4}`, seq: round * 10 + k } })),
        ),
      );
      ids.push(...entries.map((e) => e.id));
    }
    await waitFor('the backlog to drain', async () => (await a.backlog()).count === 0);
    await Promise.all([a.close(), b.close()]);
    const published = await readAll(bus, t);
    const { missing, duplicated } = tally(
      published.map((m) => m.id!),
      ids,
    );
    assert.deepEqual({ missing, duplicated }, { missing: [], duplicated: [] });
    assertOrderPerKey(published);
  });
});

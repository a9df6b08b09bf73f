import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { createClient } from 'redis';
import { isEventlineError } from '../../src/errors.ts';
import type { Message } from '../../src/message.ts';
import { type DedupStore, withBatchDedup, withDedup } from '../../src/runtime/dedup.ts';
import { type PostgresDedupStore, postgresDedupStore } from '../../src/runtime/dedup-postgres.ts';
import { redisDedupKey, redisDedupStore } from '../../src/runtime/dedup-redis.ts';
import { type SqliteDedupStore, sqliteDedupStore } from '../../src/runtime/dedup-sqlite.ts';
import { spawnNode, unique, waitFor } from '../helpers.ts';

/** The servers the issue names; both run on loopback on the development machines and in CI. */
const REDIS_URL = process.env.EVENTLINE_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
const POSTGRES_URL = process.env.EVENTLINE_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const HOLDER = new URL('./processes/dedup-transaction.ts', import.meta.url);

const dir = mkdtempSync(join(tmpdir(), 'eventline-dedup-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** The behaviour every store shares, run against each one. */
function storeContract(name: string, open: () => Promise<DedupStore>): void {
  describe(`${name} store`, () => {
    let store: DedupStore;
    before(async () => {
      store = await open();
    });
    after(() => store.close());

    test('has is false until mark, then true; marking twice is fine', async () => {
      const group = unique('g');
      assert.equal(await store.has(group, 'e1'), false);
      await store.mark(group, 'e1', 60_000);
      await store.mark(group, 'e1', 60_000);
      assert.equal(await store.has(group, 'e1'), true);
      assert.equal(await store.has(group, 'e2'), false);
    });

    test('a mark expires after its TTL and can be made again', async () => {
      const group = unique('g');
      await store.mark(group, 'short', 1000);
      await store.mark(group, 'long', 600_000);
      assert.equal(await store.has(group, 'short'), true);
      await waitFor('the short mark to expire', async () => !(await store.has(group, 'short')), 10_000);
      assert.equal(await store.has(group, 'long'), true);
      assert.deepEqual(await store.hasMany!(group, ['short', 'long']), new Set(['long']));
      await store.mark(group, 'short', 600_000);
      assert.equal(await store.has(group, 'short'), true, 'an expired mark is replaced by a new one');
    });

    test('groups are isolated, also when their names contain the key separator', async () => {
      const base = unique('g');
      await store.mark(`${base}:a`, 'b', 60_000);
      assert.equal(await store.has(`${base}:a`, 'b'), true);
      assert.equal(await store.has(base, 'a:b'), false);
      assert.equal(await store.has(`${base}:b`, 'b'), false);
      assert.deepEqual(await store.hasMany!(base, ['a:b', 'b']), new Set());
    });

    test('hasMany and markMany handle a batch, repeated ids included', async () => {
      const group = unique('g');
      const ids = Array.from({ length: 300 }, (_, i) => `id-${i}`);
      await store.markMany!(group, [...ids.slice(0, 100), 'id-5'], 60_000);
      assert.deepEqual(await store.hasMany!(group, ids), new Set(ids.slice(0, 100)));
    });

    test('concurrent marks of many ids all land; concurrent marks of one id leave one mark', async () => {
      const group = unique('g');
      const ids = Array.from({ length: 200 }, (_, i) => `c-${i}`);
      await Promise.all([
        ...ids.map((id) => store.mark(group, id, 60_000)),
        ...Array.from({ length: 20 }, () => store.mark(group, 'same', 60_000)),
      ]);
      assert.deepEqual(await store.hasMany!(group, [...ids, 'same']), new Set([...ids, 'same']));
    });
  });
}

storeContract('SQLite (own file)', async () => sqliteDedupStore({ path: join(dir, 'own.db') }));
storeContract('SQLite (application connection)', async () =>
  sqliteDedupStore({ db: new DatabaseSync(join(dir, 'app.db')), table: 'marks' }),
);
storeContract('Redis', () => redisDedupStore({ url: REDIS_URL }));
storeContract('PostgreSQL', () => postgresDedupStore({ connectionString: POSTGRES_URL }));

describe('store descriptions and keys', () => {
  test('descriptions name the store without its password', async () => {
    const sqlite = sqliteDedupStore({ path: join(dir, 'described.db') });
    assert.equal(sqlite.description, `sqlite:${join(dir, 'described.db')}`);
    await sqlite.close();
    const url = new URL(POSTGRES_URL);
    url.password = 's3cret';
    const pool = new pg.Pool({ connectionString: POSTGRES_URL });
    const postgres = await postgresDedupStore({ pool });
    assert.equal(postgres.description, 'postgres (application pool)');
    await postgres.close();
    await pool.end();
    // The server trusts loopback connections, so a password in the URL is accepted and ignored.
    const withPassword = await postgresDedupStore({ connectionString: `${url.href}?password=s3cret` });
    assert.ok(!withPassword.description.includes('s3cret'), withPassword.description);
    assert.match(withPassword.description, /^postgres:\/\/postgres:\*\*\*@127\.0\.0\.1:5432\/test/);
    await withPassword.close();
  });

  test('Redis keys are namespaced and escape the separator in group names', () => {
    assert.equal(redisDedupKey('billing', 'e1'), 'eventline:dedup:billing:e1');
    assert.equal(redisDedupKey('a:b', 'c'), 'eventline:dedup:a%3Ab:c');
    assert.notEqual(redisDedupKey('a:b', 'c'), redisDedupKey('a', 'b:c'));
    assert.notEqual(redisDedupKey('a%3Ab', 'c'), redisDedupKey('a:b', 'c'));
  });

  test('a Redis client the application owns stays open after close', async () => {
    const client = createClient({ url: REDIS_URL });
    await client.connect();
    const store = await redisDedupStore({ client });
    const group = unique('g');
    await store.mark(group, 'x', 60_000);
    await store.close();
    assert.equal(await client.exists(redisDedupKey(group, 'x')), 1);
    const ttl = await client.pTTL(redisDedupKey(group, 'x'));
    assert.ok(ttl > 0 && ttl <= 60_000, `the key expires by itself (PTTL ${ttl})`);
    await client.close();
  });

  test('an unreachable server is EVENTLINE_ERR_ENGINE_UNAVAILABLE', async () => {
    await assert.rejects(
      postgresDedupStore({ connectionString: 'postgres://postgres@127.0.0.1:1/test' }),
      (err) => isEventlineError(err, 'EVENTLINE_ERR_ENGINE_UNAVAILABLE'),
    );
  });
});

describe('SQLite store upkeep', () => {
  test('purge deletes expired marks and keeps live ones', async () => {
    const store = sqliteDedupStore({ path: join(dir, 'purge.db'), table: 'purged' });
    const group = unique('g');
    await store.markMany!(
      group,
      Array.from({ length: 20 }, (_, i) => `old-${i}`),
      1,
    );
    await store.mark(group, 'live', 600_000);
    await waitFor('the old marks to expire', async () => (await store.hasMany!(group, ['old-0'])).size === 0);
    assert.equal(await store.purge(), 1, 'the 20 marks written together are one row');
    assert.equal(await store.has(group, 'live'), true);
    const rows = store.db.prepare('SELECT count(*) AS n FROM purged').get() as { n: number };
    assert.equal(rows.n, 1);
    const batches = store.db.prepare('SELECT count(*) AS n FROM purged_batches').get() as { n: number };
    assert.equal(batches.n, 0);
    await store.close();
    await assert.rejects(store.has(group, 'live'), (err) => isEventlineError(err, 'EVENTLINE_ERR_CLOSED'));
  });
});

function message(id: string | undefined, offset: number): Message<string, string> {
  return { id, offset, value: `v${offset}` } as unknown as Message<string, string>;
}

describe('handler wrappers', () => {
  test('withDedup handles each id once, marks only after success, and reports duplicates', async () => {
    const store = sqliteDedupStore({ path: join(dir, 'wrap.db') });
    const handled: number[] = [];
    const duplicates: number[] = [];
    let failNext = true;
    const handler = withDedup<Message<string, string>, object>(
      async (m) => {
        if (m.offset === 1 && failNext) {
          failNext = false;
          throw new Error('boom');
        }
        handled.push(m.offset);
      },
      { store, ttl: '1h', onDuplicate: (m) => duplicates.push(m.offset) },
      unique('g'),
    );
    await handler(message('a', 0), {});
    await assert.rejects(handler(message('b', 1), {}), /boom/);
    await handler(message('b', 1), {});
    await handler(message('a', 2), {});
    await handler(message(undefined, 3), {});
    await handler(message(undefined, 4), {});
    assert.deepEqual(
      handled,
      [0, 1, 3, 4],
      'a failed record is not marked; records without an id always run',
    );
    assert.deepEqual(duplicates, [2]);
    await store.close();
  });

  test('withBatchDedup drops marked ids and repeats within a batch, with or without the batch fast path', async () => {
    const sqlite = sqliteDedupStore({ path: join(dir, 'batch.db') });
    // The same store seen through the two required methods only.
    const plain: DedupStore = {
      description: 'plain',
      has: (g, id) => sqlite.has(g, id),
      mark: (g, id, ttl) => sqlite.mark(g, id, ttl),
      close: async () => {},
    };
    for (const store of [sqlite, plain]) {
      const group = unique('g');
      const batches: number[][] = [];
      const duplicates: number[] = [];
      const handler = withBatchDedup<Message<string, string>, object>(
        (ms) => {
          batches.push(ms.map((m) => m.offset));
        },
        { store, onDuplicate: (m) => duplicates.push(m.offset) },
        group,
      );
      await handler([message('a', 0), message('b', 1), message('a', 2), message(undefined, 3)], {});
      await handler([message('b', 4), message('c', 5)], {});
      await handler([message('a', 6)], {});
      assert.deepEqual(batches, [[0, 1, 3], [5]], store.description);
      assert.deepEqual(duplicates, [2, 4, 6], store.description);
    }
    await sqlite.close();
  });
});

describe('processOnce on SQLite', () => {
  let store: SqliteDedupStore;
  const effects = (): string[] =>
    (store.db.prepare('SELECT id FROM effects ORDER BY id').all() as { id: string }[]).map((r) => r.id);
  before(() => {
    store = sqliteDedupStore({ path: join(dir, 'once.db') });
    store.db.exec('CREATE TABLE effects (id TEXT NOT NULL)');
  });
  after(() => store.close());

  test("the handler's writes and the mark commit together, and a duplicate does not run", async () => {
    const group = unique('g');
    const first = await store.processOnce(group, 'e1', 60_000, (db) => {
      db.prepare('INSERT INTO effects (id) VALUES (?)').run('e1');
      return 'done';
    });
    assert.deepEqual(first, { duplicate: false, value: 'done' });
    let ran = false;
    const second = await store.processOnce(group, 'e1', 60_000, () => {
      ran = true;
    });
    assert.deepEqual(second, { duplicate: true });
    assert.equal(ran, false);
    assert.deepEqual(effects(), ['e1']);
    // The wrapper's mark after the handler is a no-op.
    await store.mark(group, 'e1', 60_000);
    assert.equal(await store.has(group, 'e1'), true);
  });

  test('a handler that throws after writing leaves neither its rows nor the mark', async () => {
    const group = unique('g');
    await assert.rejects(
      store.processOnce(group, 'e2', 60_000, async (db) => {
        db.prepare('INSERT INTO effects (id) VALUES (?)').run('e2');
        await new Promise((r) => setImmediate(r));
        throw new Error('crash after the write');
      }),
      /crash after the write/,
    );
    assert.equal(effects().includes('e2'), false);
    assert.equal(await store.has(group, 'e2'), false);
    // Delivered again, it runs.
    const again = await store.processOnce(group, 'e2', 60_000, (db) => {
      db.prepare('INSERT INTO effects (id) VALUES (?)').run('e2');
    });
    assert.equal(again.duplicate, false);
    assert.equal(effects().filter((id) => id === 'e2').length, 1);
  });

  test('a process killed inside the transaction leaves neither its rows nor the mark', async () => {
    const group = unique('g');
    const child = spawnNode(HOLDER, {
      store: 'sqlite',
      target: join(dir, 'once.db'),
      effects: 'effects',
      group,
      id: 'killed',
    });
    await child.waitForLine<{ wrote?: boolean }>('the write inside the transaction', (l) => l.wrote === true);
    child.kill('SIGKILL');
    await child.exited;
    assert.equal(effects().includes('killed'), false);
    assert.equal(await store.has(group, 'killed'), false);
    const retried = await store.processOnce(group, 'killed', 60_000, (db) => {
      db.prepare('INSERT INTO effects (id) VALUES (?)').run('killed');
    });
    assert.equal(retried.duplicate, false);
    assert.deepEqual(
      effects().filter((id) => id === 'killed'),
      ['killed'],
    );
  });
});

describe('processOnce on PostgreSQL', () => {
  let store: PostgresDedupStore;
  let pool: pg.Pool;
  const effects = unique('effects').replace(/-/g, '_');
  const rows = async (id: string): Promise<number> =>
    (await pool.query(`SELECT 1 FROM ${effects} WHERE id = $1`, [id])).rowCount ?? 0;
  before(async () => {
    pool = new pg.Pool({ connectionString: POSTGRES_URL });
    await pool.query(`CREATE TABLE ${effects} (id text NOT NULL)`);
    store = await postgresDedupStore({ pool });
  });
  after(async () => {
    await store.close();
    await pool.query(`DROP TABLE ${effects}`);
    await pool.end();
  });

  test("the handler's writes and the mark commit together; a throw leaves neither", async () => {
    const group = unique('g');
    const insert = (id: string) => async (tx: pg.PoolClient) => {
      await tx.query(`INSERT INTO ${effects} (id) VALUES ($1)`, [id]);
      return id;
    };
    assert.deepEqual(await store.processOnce(group, 'p1', 60_000, insert('p1')), {
      duplicate: false,
      value: 'p1',
    });
    assert.deepEqual(await store.processOnce(group, 'p1', 60_000, insert('p1')), { duplicate: true });
    assert.equal(await rows('p1'), 1);
    await assert.rejects(
      store.processOnce(group, 'p2', 60_000, async (tx) => {
        await insert('p2')(tx);
        throw new Error('crash after the write');
      }),
      /crash after the write/,
    );
    assert.equal(await rows('p2'), 0);
    assert.equal(await store.has(group, 'p2'), false);
  });

  test('two processOnce calls racing on one id run the function once', async () => {
    const group = unique('g');
    let runs = 0;
    const results = await Promise.all(
      Array.from({ length: 4 }, () =>
        store.processOnce(group, 'race', 60_000, async (tx) => {
          runs++;
          await tx.query(`INSERT INTO ${effects} (id) VALUES ('race')`);
        }),
      ),
    );
    assert.equal(runs, 1);
    assert.equal(results.filter((r) => r.duplicate).length, 3);
    assert.equal(await rows('race'), 1);
  });

  test('a process killed inside the transaction leaves neither its rows nor the mark', async () => {
    const group = unique('g');
    const child = spawnNode(HOLDER, {
      store: 'postgres',
      target: POSTGRES_URL,
      effects,
      group,
      id: 'killed',
    });
    await child.waitForLine<{ wrote?: boolean }>('the write inside the transaction', (l) => l.wrote === true);
    child.kill('SIGKILL');
    await child.exited;
    // The server rolls the transaction back once it notices the connection is gone.
    const retried = await store.processOnce(group, 'killed', 60_000, async (tx) => {
      await tx.query(`INSERT INTO ${effects} (id) VALUES ('killed')`);
    });
    assert.equal(retried.duplicate, false, 'the killed transaction left no mark');
    assert.equal(await rows('killed'), 1, 'and no row of its own');
  });
});

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { connect, defineTopic } from 'eventline';
import { numberPlaceholders, openDatabase, type ServiceDatabase } from '../db.ts';
import { createTempDatabase } from './pg.ts';

const dir = mkdtempSync(join(tmpdir(), 'apps-shared-db-'));
after(() => rmSync(dir, { recursive: true, force: true }));

test('? placeholders become $n for PostgreSQL, quoted text is left alone', () => {
  assert.equal(
    numberPlaceholders(`SELECT ? AS a, '?' AS b, "x?" AS c WHERE d = ? AND e = ?`),
    `SELECT $1 AS a, '?' AS b, "x?" AS c WHERE d = $2 AND e = $3`,
  );
});

test('a DATABASE_URL of another kind is refused, naming what was given', async () => {
  await assert.rejects(openDatabase('svc', 'mysql://db/x'), /DATABASE_URL must start with postgres:\/\//);
  await assert.rejects(openDatabase('svc', 'sqlite::memory:'), /names no file/);
});

const flavours: [string, () => Promise<{ db: ServiceDatabase; done(): Promise<void> }>][] = [
  [
    'sqlite',
    async () => {
      const db = await openDatabase('svc', `sqlite:${join(dir, `svc-${Date.now()}.db`)}`);
      return { db, done: () => db.close() };
    },
  ],
  [
    'postgres',
    async () => {
      const temp = await createTempDatabase('apps_shared');
      const db = await openDatabase('svc', temp.url);
      return {
        db,
        done: async () => {
          await db.close();
          await temp.drop();
        },
      };
    },
  ],
];

for (const [kind, open] of flavours) {
  describe(`ServiceDatabase on ${kind}`, () => {
    test('statements, conflicts, RETURNING and rollback behave the same', async () => {
      const { db, done } = await open();
      try {
        assert.equal(db.kind, kind);
        await db.exec(
          'CREATE TABLE IF NOT EXISTS items (id TEXT PRIMARY KEY, n INTEGER NOT NULL); CREATE INDEX IF NOT EXISTS items_n ON items (n)',
        );
        const inserted = await db.query<{ id: string }>(
          'INSERT INTO items (id, n) VALUES (?, ?) ON CONFLICT (id) DO NOTHING RETURNING id',
          ['a', 1],
        );
        assert.deepEqual(
          inserted.map((r) => r.id),
          ['a'],
        );
        const again = await db.query(
          'INSERT INTO items (id, n) VALUES (?, ?) ON CONFLICT (id) DO NOTHING RETURNING id',
          ['a', 2],
        );
        assert.equal(again.length, 0, 'a second insert of the same key is a no-op');
        assert.equal(await db.run('UPDATE items SET n = n + 1 WHERE id = ?', ['a']), 1);
        await assert.rejects(
          db.transaction(async (tx) => {
            await tx.run('INSERT INTO items (id, n) VALUES (?, ?)', ['b', 1]);
            throw new Error('boom');
          }),
          /boom/,
        );
        const rows = await db.query<{ id: string; n: number }>(
          'SELECT id, n, CAST(count(*) OVER () AS INTEGER) AS total FROM items ORDER BY id',
        );
        assert.deepEqual(
          rows.map((r) => ({ ...r })),
          [{ id: 'a', n: 2, total: 1 }],
          'the rolled-back insert left nothing',
        );
      } finally {
        await done();
      }
    });

    test('an outbox transaction commits rows and events together, or neither', async () => {
      const { db, done } = await open();
      const bus = await connect(`sqlite:${join(dir, `events-${kind}-${Date.now()}.db`)}`);
      const topic = defineTopic<{ id: string }>('items.created');
      try {
        await bus.ensureTopics([topic]);
        await db.exec('CREATE TABLE IF NOT EXISTS items (id TEXT PRIMARY KEY)');
        const outbox = await db.createOutbox(bus, { pollInterval: '20ms' });
        await outbox.transaction(async (tx) => {
          await tx.run('INSERT INTO items (id) VALUES (?)', ['x']);
          await tx.publish(topic, { id: 'x' }, { key: 'x' });
        });
        await assert.rejects(
          outbox.transaction(async (tx) => {
            await tx.run('INSERT INTO items (id) VALUES (?)', ['y']);
            await tx.publish(topic, { id: 'y' }, { key: 'y' });
            throw new Error('abandon');
          }),
          /abandon/,
        );
        // A plain transaction on a database with an outbox goes through the same queue.
        await db.transaction((tx) => tx.run('INSERT INTO items (id) VALUES (?)', ['z']));
        const ids = (await db.query<{ id: string }>('SELECT id FROM items ORDER BY id')).map((r) => r.id);
        assert.deepEqual(ids, ['x', 'z']);
        const deadline = Date.now() + 15_000;
        let values: string[] = [];
        while (Date.now() < deadline) {
          const msgs = await bus.reader.read(topic, { partition: 0, from: 'earliest', max: 10 });
          values = msgs.map((m) => m.value!.id);
          if (values.length > 0 && (await outbox.backlog()).count === 0) break;
          await new Promise((r) => setTimeout(r, 20));
        }
        assert.deepEqual(values, ['x'], 'only the committed event is published');
        await outbox.close();
      } finally {
        await done();
        await bus.close();
      }
    });
  });
}

import assert from 'node:assert/strict';
import { DatabaseSync } from 'node:sqlite';
import type { Message } from '../../../src/message.ts';
import { partitionForKey } from '../../../src/partitioner.ts';
import { createOutbox } from '../../../src/patterns/outbox.ts';
import { tally, waitFor } from '../../helpers.ts';
import type { ConformanceCase } from '../suite.ts';

type Event = { key: string; seq: number };

export const outboxCases: ConformanceCase[] = [
  {
    name: "outbox: committed events reach the group in order per key with their id, key and the key's partition; rolled back ones never do",
    async run(ctx) {
      const t = await ctx.topic<Event>('outbox', { partitions: 3, key: (v) => v.key });
      const db = new DatabaseSync(':memory:');
      db.exec('CREATE TABLE ledger (seq INTEGER PRIMARY KEY)');
      const outbox = await createOutbox(ctx.bus, { database: db, batchSize: 50 });
      const written = new Map<string, { key: string; partition: number }>();
      const rolledBack: number[] = [];
      try {
        for (let seq = 0; seq < 200; seq++) {
          const fails = seq % 10 === 7;
          await outbox
            .transaction(async (tx) => {
              tx.db.prepare('INSERT INTO ledger VALUES (?)').run(seq);
              const entry = await tx.publish(t, { key: `k${seq % 6}`, seq });
              if (fails) throw new Error(`abandon ${seq}`);
              written.set(entry.id, {
                key: `k${seq % 6}`,
                partition: partitionForKey(Buffer.from(`k${seq % 6}`), 3),
              });
            })
            .catch((err: unknown) => {
              if (!fails) throw err;
              rolledBack.push(seq);
            });
        }
        const seen: Message<Event>[] = [];
        const sub = ctx.bus.subscribe({
          group: ctx.group('outbox'),
          topics: [t],
          fromBeginning: true,
          handler: (m) => {
            seen.push(m);
          },
        });
        try {
          await waitFor('every committed event', () => seen.length >= written.size, 60_000);
          await waitFor('the backlog to drain', async () => (await outbox.backlog()).count === 0);
        } finally {
          await sub.stop();
        }
        const { missing, duplicated } = tally(
          seen.map((m) => m.id!),
          [...written.keys()],
        );
        assert.deepEqual({ missing, duplicated }, { missing: [], duplicated: [] });
        assert.deepEqual(
          seen.filter((m) => rolledBack.includes(m.value.seq)).map((m) => m.value.seq),
          [],
          'events of rolled back transactions were published',
        );
        assert.equal((db.prepare('SELECT count(*) AS n FROM ledger').get() as { n: number }).n, written.size);
        const last = new Map<string, number>();
        for (const m of seen) {
          assert.deepEqual([m.key, m.partition], [written.get(m.id!)!.key, written.get(m.id!)!.partition]);
          assert.ok(m.value.seq > (last.get(m.value.key) ?? -1), `key ${m.value.key} out of order`);
          last.set(m.value.key, m.value.seq);
        }
      } finally {
        await outbox.close();
        db.close();
      }
    },
  },
  {
    name: 'outbox: events written while the relay is stopped wait and are published once it starts',
    async run(ctx) {
      const t = await ctx.topic<Event>('outbox-wait', { partitions: 2, key: (v) => v.key });
      const db = new DatabaseSync(':memory:');
      const outbox = await createOutbox(ctx.bus, { database: db, relay: false });
      try {
        const entries = await outbox.transaction((tx) =>
          tx.publishBatch(
            t,
            Array.from({ length: 40 }, (_, seq) => ({ value: { key: `k${seq % 4}`, seq } })),
          ),
        );
        const offsets = await ctx.bus.reader.offsets(t.name);
        assert.deepEqual(
          offsets.map((p) => p.end - p.start),
          [0, 0],
          'nothing is published before the relay starts',
        );
        assert.equal((await outbox.backlog()).count, 40);
        outbox.start();
        await waitFor('the backlog to drain', async () => (await outbox.backlog()).count === 0, 60_000);
        const read: string[] = [];
        for (const partition of [0, 1]) {
          for (const m of await ctx.bus.reader.read(t, { partition, from: 'earliest', max: 100 }))
            read.push(m.id!);
        }
        const { missing, duplicated } = tally(
          read,
          entries.map((e) => e.id),
        );
        assert.deepEqual({ missing, duplicated }, { missing: [], duplicated: [] });
      } finally {
        await outbox.close();
        db.close();
      }
    },
  },
];

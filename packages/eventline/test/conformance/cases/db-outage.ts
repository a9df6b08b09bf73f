import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import pg from 'pg';
import { NonRetryableError } from '../../../src/runtime/retry.ts';
import type { ErrorInfo, Subscription } from '../../../src/runtime/subscription.ts';
import { tally, waitFor } from '../../helpers.ts';
import { startPostgres } from '../../postgres-server.ts';
import type { ConformanceCase } from '../suite.ts';

type Row = { id: string; key: string; seq: number };

const TOTAL = 300;
const BEFORE = 100;
const KEYS = 10;
const OUTAGE_MS = 20_000;

/** Per key, the sequence numbers in the order given. */
function byKey(rows: readonly Row[]): Map<string, number[]> {
  const out = new Map<string, number[]>();
  for (const r of rows) out.set(r.key, [...(out.get(r.key) ?? []), r.seq]);
  return out;
}

export const dbOutageCases: ConformanceCase[] = [
  {
    name: 'db outage: while the database the handler writes to is down for 20 s, records wait; when it returns each is written once, in order per key',
    timeoutMs: 240_000,
    async run(ctx) {
      // A private server: this case kills it, and other tests use the shared one.
      const db = await startPostgres();
      const pool = new pg.Pool({
        connectionString: db.url,
        max: 4,
        connectionTimeoutMillis: 2_000,
        idleTimeoutMillis: 1_000,
        query_timeout: 10_000,
      });
      // Idle connections lose their server in the outage; the next query reports it to the handler.
      pool.on('error', () => {});
      let sub: Subscription | undefined;
      try {
        await pool.query('CREATE TABLE written (id text PRIMARY KEY, n int NOT NULL)');
        const t = await ctx.topic<Row>('db-outage', { partitions: 3, key: (v) => v.key });
        const rows: Row[] = Array.from({ length: TOTAL }, (_, seq) => ({
          id: `r${seq}`,
          key: `k${seq % KEYS}`,
          seq,
        }));
        const written: Row[] = [];
        const writtenAtAttempt = new Map<string, number>();
        // A plain INSERT: a record written twice fails the primary key and is caught here.
        const writtenTwice: string[] = [];
        const failures: ErrorInfo[] = [];
        const group = ctx.group('db-outage');
        sub = ctx.bus.subscribe({
          group,
          topics: [t],
          fromBeginning: true,
          retry: { attempts: Number.POSITIVE_INFINITY, maxDelay: '2s' },
          onError: (_err, info) => failures.push(info),
          handler: async (m, c) => {
            try {
              await pool.query('INSERT INTO written (id, n) VALUES ($1, $2)', [m.value.id, m.value.seq]);
            } catch (err) {
              if ((err as { code?: unknown }).code !== '23505') throw err;
              // Retrying cannot help; the record is finished (dead-lettered) and named below.
              writtenTwice.push(m.value.id);
              throw new NonRetryableError(`${m.value.id} was written before`, { cause: err });
            }
            written.push(m.value);
            writtenAtAttempt.set(m.value.id, c.attempt);
          },
        });

        await ctx.bus.publishBatch(
          t,
          rows.slice(0, BEFORE).map((value) => ({ value })),
        );
        await waitFor(`the first ${BEFORE} rows`, () => written.length >= BEFORE, 60_000);
        const down = Date.now();
        await db.stop();
        await ctx.bus.publishBatch(
          t,
          rows.slice(BEFORE).map((value) => ({ value })),
        );
        await sleep(Math.max(0, OUTAGE_MS - (Date.now() - down)));
        const writtenWhileDown = written.length - BEFORE;
        const failedWhileDown = failures.length;
        await db.start();

        const ends = await ctx.bus.reader.offsets(t.name);
        const committedToEnd = async (): Promise<boolean> => {
          const committed = await ctx.bus.reader.groupOffsets(group);
          return ends.every(
            (e) => committed.find((o) => o.topic === t.name && o.partition === e.partition)?.offset === e.end,
          );
        };
        // Finished means written, or given up and committed past: the assertions name what is missing.
        await waitFor(
          `all ${TOTAL} records finished`,
          async () => written.length >= TOTAL || (await committedToEnd()),
          120_000,
        );
        await waitFor('the commit to the end', committedToEnd, 30_000);
        await sub.stop();
        sub = undefined;

        assert.equal(writtenWhileDown, 0, 'the handler wrote while the database was down');
        assert.ok(failedWhileDown > 0, 'the handler never failed during the outage');
        assert.deepEqual(writtenTwice, [], 'records written twice');
        const { missing, duplicated } = tally(
          written.map((r) => r.id),
          rows.map((r) => r.id),
        );
        assert.deepEqual({ missing, duplicated }, { missing: [], duplicated: [] });
        assert.deepEqual(byKey(written), byKey(rows), 'the order per key');
        const stored = await pool.query<{ id: string; n: number }>('SELECT id, n FROM written');
        assert.deepEqual(
          new Map(stored.rows.map((r) => [r.id, r.n])),
          new Map(rows.map((r) => [r.id, r.seq])),
          'the rows in the database',
        );
        // The first record of each key published in the outage met the dead database, waited and
        // was written on a later attempt.
        const firstInOutage = rows.slice(BEFORE, BEFORE + KEYS);
        assert.deepEqual(
          firstInOutage.filter((r) => !(writtenAtAttempt.get(r.id)! > 1)).map((r) => r.id),
          [],
          'written at the first attempt although the database was down',
        );
        assert.deepEqual(
          failures.filter((f) => f.retryInMs === undefined || f.deadLetter !== undefined || f.dropped),
          [],
          'failures that were not retried',
        );
      } finally {
        await sub?.stop();
        await pool.end();
        await db.close();
      }
    },
  },
];

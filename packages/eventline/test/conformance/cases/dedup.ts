import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { bytes } from '../../../src/codec.ts';
import { sqliteDedupStore } from '../../../src/runtime/dedup-sqlite.ts';
import { type Child, spawnNode, tally, waitFor } from '../../helpers.ts';
import type { CaseContext, ConformanceCase } from '../suite.ts';

const CONSUMER = new URL('../processes/dedup-consumer.ts', import.meta.url);
const POSTGRES_URL = process.env.EVENTLINE_TEST_POSTGRES_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

type Line = { ready?: string; handled?: number; duplicate?: string };

async function startConsumer(ctx: CaseContext, name: string, args: object): Promise<Child> {
  const child = spawnNode(CONSUMER, { url: ctx.target.url, name, ...args });
  await child.waitForLine<Line>(`${name} ready`, (l) => l.ready === name, 60_000);
  return child;
}

const duplicates = (child: Child): string[] =>
  (child.lines as Line[]).filter((l) => l.duplicate !== undefined).map((l) => l.duplicate!);
const handled = (child: Child): number => Math.max(0, ...(child.lines as Line[]).map((l) => l.handled ?? 0));

const report = (child: Child, done: number): string =>
  `${done} processed; b handled ${handled(child)}, skipped ${duplicates(child).length}; stderr: ${child.stderr.slice(-5).join(' | ')}`;

/** Publishes `n` records whose values are their names, spread over 2 partitions. */
async function publish(
  ctx: CaseContext,
  base: string,
  n: number,
): Promise<{ topic: string; ids: string[]; eventIds: Map<string, string> }> {
  const t = await ctx.topic(base, { partitions: 2, value: bytes() });
  const ids = Array.from({ length: n }, (_, i) => `r${i}`);
  const sent = await ctx.bus.publishBatch(
    t,
    ids.map((id) => ({ value: Buffer.from(id), key: id })),
  );
  // The store marks event ids (ce_id); the side file holds record values.
  const eventIds = new Map(ids.map((id, i) => [id, sent[i]!.id]));
  return { topic: t.name, ids, eventIds };
}

/**
 * Runs member `a` until it handled `killAfter` records (then `beforeKill`; `mustSkip` says how many
 * records b must skip), kills it with SIGKILL, and lets member `b` take over until every record is
 * processed and b skipped that many redelivered ones. Returns b, stopped.
 */
async function crashAndTakeOver(
  ctx: CaseContext,
  args: object,
  options: {
    killAfter: number;
    aArgs?: object;
    beforeKill?: () => Promise<void>;
    /** How many records b must skip, read once a is dead. */
    mustSkip?: () => Promise<number>;
    processed: () => string[] | Promise<string[]>;
    expected: number;
  },
): Promise<Child> {
  const a = await startConsumer(ctx, 'a', { ...args, ...options.aArgs });
  await waitFor(`a to handle ${options.killAfter} records`, () => handled(a) >= options.killAfter, 60_000);
  await options.beforeKill?.();
  a.kill('SIGKILL');
  await a.exited;
  // Read only now: a commit a had in flight may have landed before it died.
  const minSkipped = (await options.mustSkip?.()) ?? 1;
  const b = await startConsumer(ctx, 'b', args);
  const done = async (): Promise<number> => new Set(await options.processed()).size;
  try {
    await waitFor(
      'every record processed',
      async () => (await done()) === options.expected,
      90_000,
      50,
    ).catch(async (err: Error) => {
      throw new Error(`${err.message}; ${report(b, await done())}`);
    });
    // b got back what a handled but never committed; the store made it skip those.
    await waitFor(
      'b to skip the records a processed',
      () => duplicates(b).length >= minSkipped,
      30_000,
    ).catch(async (err: Error) => {
      throw new Error(`${err.message}: wanted ${minSkipped}; ${report(b, await done())}`);
    });
  } finally {
    b.kill('SIGTERM');
    await b.exited;
  }
  return b;
}

export const dedupCases: ConformanceCase[] = [
  {
    name: 'dedup: duplicates suppressed across a consumer crash (SQLite store, killed after handling, before its commit)',
    needs: 'processes',
    timeoutMs: 180_000,
    async run(ctx) {
      const { topic, ids, eventIds } = await publish(ctx, 'dedup-crash', 400);
      const group = ctx.group('dedup-crash');
      const dir = mkdtempSync(join(tmpdir(), 'eventline-dedup-case-'));
      const side = join(dir, 'processed.txt');
      const processed = (): string[] => {
        try {
          return readFileSync(side, 'utf8').split('\n').filter(Boolean);
        } catch {
          return [];
        }
      };
      try {
        const b = await crashAndTakeOver(
          ctx,
          { topic, group, store: 'sqlite', target: join(dir, 'dedup.db'), side },
          {
            killAfter: 250,
            aArgs: { hangAfter: 250 },
            beforeKill: async () => {
              // Marks are written in batches within a couple of milliseconds of their handler:
              // kill a once the 250 it handled are marked, so the kill lands after the mark.
              const store = sqliteDedupStore({ path: join(dir, 'dedup.db') });
              try {
                await waitFor('a to mark the records it handled', async () => {
                  const marked = await store.hasMany!(group, [...eventIds.values()]);
                  return processed().every((v) => marked.has(eventIds.get(v)!));
                });
              } finally {
                await store.close();
              }
            },
            mustSkip: async () => {
              const offsets = await ctx.bus.reader.groupOffsets(group);
              const committed = offsets.reduce((n, o) => n + o.offset, 0);
              assert.ok(
                committed < 250,
                `a committed ${committed} offsets, leaving handled records uncommitted`,
              );
              return 250 - committed;
            },
            processed,
            expected: ids.length,
          },
        );
        assert.deepEqual(tally(processed(), ids), { missing: [], duplicated: [] }, 'every id exactly once');
        const skipped = duplicates(b);
        assert.equal(new Set(skipped).size, skipped.length, 'each redelivered record skipped once');
        const byA = new Set(processed().slice(0, 250));
        assert.ok(
          skipped.every((v) => byA.has(v)),
          'only records a processed were skipped',
        );
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  },
  {
    name: 'dedup: exactly-once effect with processOnce on PostgreSQL across a consumer killed at any point',
    needs: 'processes',
    timeoutMs: 180_000,
    async run(ctx) {
      const { topic, ids } = await publish(ctx, 'dedup-once', 400);
      const group = ctx.group('dedup-once');
      const side = group.replace(/[^a-z0-9]/gi, '_').toLowerCase();
      const pool = new pg.Pool({ connectionString: POSTGRES_URL });
      await pool.query(`CREATE TABLE ${side} (value text NOT NULL)`);
      const processed = async (): Promise<string[]> =>
        (await pool.query<{ value: string }>(`SELECT value FROM ${side}`)).rows.map((r) => r.value);
      try {
        // Killed while it keeps handling: often inside a transaction that wrote its row.
        await crashAndTakeOver(
          ctx,
          { topic, group, store: 'postgres', target: POSTGRES_URL, side },
          { killAfter: 150, processed, expected: ids.length },
        );
        assert.deepEqual(
          tally(await processed(), ids),
          { missing: [], duplicated: [] },
          'every id exactly once',
        );
      } finally {
        await pool.query(`DROP TABLE IF EXISTS ${side}`);
        await pool.end();
      }
    },
  },
];

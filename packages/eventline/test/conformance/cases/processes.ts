import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { bytes } from '../../../src/codec.ts';
import { type Child, spawnNode, tally, waitFor } from '../../helpers.ts';
import type { CaseContext, ConformanceCase } from '../suite.ts';

const CONSUMER = new URL('../processes/consumer.ts', import.meta.url);
const PRODUCER = new URL('../processes/producer.ts', import.meta.url);

type Line = { id?: string; p?: number; o?: number; ready?: string; acked?: number };

function records(child: Child): Required<Pick<Line, 'id' | 'p' | 'o'>>[] {
  return (child.lines as Line[]).filter((l) => l.id !== undefined) as Required<
    Pick<Line, 'id' | 'p' | 'o'>
  >[];
}

async function startConsumer(
  ctx: CaseContext,
  topic: string,
  group: string,
  name: string,
  extra: object = {},
): Promise<Child> {
  const child = spawnNode(CONSUMER, { url: ctx.target.url, topic, group, name, ...extra });
  await child.waitForLine<Line>(`${name} ready`, (l) => l.ready === name);
  return child;
}

async function ownership(ctx: CaseContext, group: string): Promise<Map<string, number>> {
  const d = await ctx.bus.admin.describeGroup(group);
  const owners = new Map<string, number>();
  for (const m of d.members) owners.set(m.clientId, m.assignment.length);
  return owners;
}

function balanced(owners: Map<string, number>, members: string[], each: number): boolean {
  return owners.size === members.length && members.every((m) => owners.get(m) === each);
}

export const processCases: ConformanceCase[] = [
  {
    name: 'a consumer killed with SIGKILL loses nothing: the survivor resumes at the committed offsets',
    needs: 'processes',
    timeoutMs: 120_000,
    async run(ctx) {
      const t = await ctx.topic('kill-consumer', { partitions: 3, value: bytes() });
      const ids = Array.from({ length: 1500 }, (_, i) => `r${i}`);
      await ctx.bus.publishBatch(
        t,
        ids.map((id) => ({ value: Buffer.from(id), key: id })),
      );
      const group = ctx.group('kill-consumer');
      const a = await startConsumer(ctx, t.name, group, 'a', { delayMs: 1, sessionTimeout: '2s' });
      await waitFor('a to handle 300 records', () => records(a).length >= 300, 60_000);
      a.kill('SIGKILL');
      await a.exited;
      const killedAt = Date.now();
      const committed = new Map(
        (await ctx.bus.reader.groupOffsets(group)).map((o) => [o.partition, o.offset]),
      );
      const b = await startConsumer(ctx, t.name, group, 'b', { sessionTimeout: '2s' });
      try {
        await waitFor(
          'b to own every partition',
          async () => (await ownership(ctx, group)).get('b') === 3,
          30_000,
        );
        const takeoverMs = Date.now() - killedAt;
        assert.ok(
          takeoverMs < 2000 + 5000,
          `partitions moved ${takeoverMs} ms after the kill (session timeout 2 s)`,
        );
        await waitFor(
          'every record',
          () => new Set([...records(a), ...records(b)].map((r) => r.id)).size === ids.length,
          60_000,
        );
      } finally {
        b.kill('SIGTERM');
        await b.exited;
      }
      const seenA = records(a);
      const seenB = records(b);
      assert.deepEqual(
        tally(
          [...seenA, ...seenB].map((r) => r.id),
          ids,
        ).missing,
        [],
        'no record lost',
      );
      for (let p = 0; p < 3; p++) {
        const offA = seenA.filter((r) => r.p === p).map((r) => r.o);
        const offB = seenB.filter((r) => r.p === p).map((r) => r.o);
        assert.deepEqual(
          offA,
          offA.map((_, i) => i),
          `a handled partition ${p} in order from 0`,
        );
        const start = committed.get(p) ?? 0;
        assert.ok(
          start <= offA.length,
          `partition ${p}: committed ${start} beyond what a handled (${offA.length})`,
        );
        if (offB.length > 0) assert.equal(offB[0], start, `b resumed partition ${p} at the committed offset`);
        assert.deepEqual(
          offB,
          offB.map((_, i) => start + i),
          `b handled partition ${p} in order`,
        );
        const repeated = offB.filter((o) => o < offA.length);
        assert.deepEqual(
          repeated,
          Array.from({ length: offA.length - start }, (_, i) => start + i),
          `partition ${p}: only the uncommitted window [${start}, ${offA.length}) was handled twice`,
        );
      }
    },
  },
  {
    name: 'members in three processes share the partitions evenly and rebalance as they come and go',
    needs: 'processes',
    timeoutMs: 120_000,
    async run(ctx) {
      const t = await ctx.topic('balance', { partitions: 6, value: bytes() });
      const group = ctx.group('balance');
      const children = new Map<string, Child>();
      for (const name of ['m1', 'm2', 'm3'])
        children.set(name, await startConsumer(ctx, t.name, group, name));
      try {
        await waitFor(
          '2 partitions per member',
          async () => balanced(await ownership(ctx, group), ['m1', 'm2', 'm3'], 2),
          30_000,
        );
        const all: string[] = [];
        const publish = async (round: string, n: number): Promise<void> => {
          const ids = Array.from({ length: n }, (_, i) => `${round}-${i}`);
          all.push(...ids);
          await ctx.bus.publishBatch(
            t,
            ids.map((id) => ({ value: Buffer.from(id), key: id })),
          );
        };
        const seen = (): string[] => [...children.values()].flatMap((c) => records(c).map((r) => r.id));
        await publish('one', 600);
        await waitFor('round one', () => new Set(seen()).size === all.length, 30_000);
        for (const [name, child] of children) {
          const parts = new Set(records(child).map((r) => r.p));
          assert.equal(parts.size, 2, `${name} handled exactly its two partitions`);
        }
        // One leaves gracefully: the other two take three partitions each.
        const m2 = children.get('m2')!;
        m2.kill('SIGTERM');
        assert.equal(await m2.exited, 0, 'a SIGTERM stop exits cleanly');
        await waitFor(
          '3 partitions each',
          async () => balanced(await ownership(ctx, group), ['m1', 'm3'], 3),
          30_000,
        );
        await publish('two', 300);
        await waitFor('round two', () => new Set(seen()).size === all.length, 30_000);
        // One joins: back to two each.
        children.set('m4', await startConsumer(ctx, t.name, group, 'm4'));
        await waitFor(
          '2 each again',
          async () => balanced(await ownership(ctx, group), ['m1', 'm3', 'm4'], 2),
          30_000,
        );
        await publish('three', 300);
        await waitFor('round three', () => new Set(seen()).size === all.length, 30_000);
        await sleep(200);
        assert.deepEqual(
          tally(seen(), all),
          { missing: [], duplicated: [] },
          'graceful rebalances: each record once',
        );
      } finally {
        for (const c of children.values()) c.kill('SIGTERM');
        await Promise.all([...children.values()].map((c) => c.exited));
      }
    },
  },
  {
    name: 'a producer killed with SIGKILL mid-batch leaves no partial batch and loses no acknowledged one',
    needs: 'processes',
    timeoutMs: 120_000,
    async run(ctx) {
      const batchSize = 2000;
      for (let round = 0; round < 3; round++) {
        const t = await ctx.topic(`kill-producer-${round}`, { partitions: 3, value: bytes() });
        const producer = spawnNode(PRODUCER, {
          url: ctx.target.url,
          topic: t.name,
          batchSize,
          valueBytes: 1000,
        });
        await producer.waitForLine<Line>('the first ack', (l) => l.acked === 0, 60_000);
        await sleep(20 + Math.floor(Math.random() * 150));
        producer.kill('SIGKILL');
        await producer.exited;
        const acked = (producer.lines as Line[]).filter((l) => l.acked !== undefined).map((l) => l.acked!);
        const countBatches = async (): Promise<Map<number, number>> => {
          const perBatch = new Map<number, number>();
          for (const p of await ctx.bus.reader.offsets(t.name)) {
            for (let offset = p.start; offset < p.end; ) {
              const ms = await ctx.bus.reader.read(t.name, {
                partition: p.partition,
                from: { offset },
                max: 5000,
              });
              for (const m of ms) {
                const b = Number(m.value.toString('latin1', 0, 12).split(':')[0]);
                perBatch.set(b, (perBatch.get(b) ?? 0) + 1);
              }
              if (ms.length === 0) break; // only a transaction marker is left
              offset = ms[ms.length - 1]!.offset + 1;
            }
          }
          return perBatch;
        };
        // Kafka makes a committed transaction readable a moment after acknowledging it, and the
        // killed producer's open transaction holds readers back until the broker aborts it.
        const perBatch = await waitFor(
          'the acknowledged batches to be readable',
          async () => {
            const counts = await countBatches();
            return acked.every((b) => counts.get(b) === batchSize) ? counts : undefined;
          },
          60_000,
          250,
        );
        for (const [b, n] of perBatch)
          assert.equal(n, batchSize, `round ${round}: batch ${b} is partial (${n} records)`);
        assert.ok(acked.length >= 1);
      }
    },
  },
];

import assert from 'node:assert/strict';
import { waitFor } from '../../helpers.ts';
import type { CaseContext, ConformanceCase } from '../suite.ts';

/** Asks the engine to run retention and compaction now; engines that do it on their own schedule get time. */
async function maintain<T>(ctx: CaseContext, what: string, check: () => Promise<T | undefined>): Promise<T> {
  return waitFor<T | undefined>(
    what,
    async () => {
      await ctx.bus.engine.runMaintenance();
      return check();
    },
    60_000,
    500,
  ) as Promise<T>;
}

export const retentionCases: ConformanceCase[] = [
  {
    name: 'retention by time removes old records from the head; offsets never change',
    timeoutMs: 90_000,
    async run(ctx) {
      const t = await ctx.topic<{ n: number }>('retain-time', { retention: '1h' });
      const old = Date.now() - 3 * 3_600_000;
      // Separate publishes: engines delete whole stored batches, as Kafka deletes whole segments.
      for (let n = 0; n < 5; n++) await ctx.bus.publish(t, { n }, { timestamp: old + n });
      for (let n = 5; n < 8; n++) await ctx.bus.publish(t, { n });
      const [bounds] = await maintain(ctx, 'old records to go', async () => {
        const o = await ctx.bus.reader.offsets(t.name);
        return o[0]!.start >= 5 ? o : undefined;
      });
      assert.deepEqual(bounds, { partition: 0, start: 5, end: 8 });
      const left = await ctx.bus.reader.read(t, { partition: 0, from: 'earliest' });
      assert.deepEqual(
        left.map((m) => [m.offset, m.value.n]),
        [
          [5, 5],
          [6, 6],
          [7, 7],
        ],
      );
    },
  },
  {
    name: 'retention by size trims the oldest records first',
    timeoutMs: 90_000,
    async run(ctx) {
      const t = await ctx.topic<string>('retain-size', { retentionBytes: '16KiB' });
      const value = 'x'.repeat(1024);
      for (let n = 0; n < 40; n++) await ctx.bus.publish(t, `${n}:${value}`);
      const [bounds] = await maintain(ctx, 'the head to be trimmed', async () => {
        const o = await ctx.bus.reader.offsets(t.name);
        return o[0]!.start > 0 ? o : undefined;
      });
      assert.equal(bounds!.end, 40);
      const kept = bounds!.end - bounds!.start;
      assert.ok(kept >= 10 && kept <= 20, `kept ${kept} records of about 1 KiB under a 16 KiB limit`);
      const left = await ctx.bus.reader.read(t, { partition: 0, from: 'earliest', max: 100 });
      assert.deepEqual(
        left.map((m) => Number(m.value.split(':')[0])),
        Array.from({ length: kept }, (_, i) => bounds!.start + i),
        'what is left is the newest, in order',
      );
    },
  },
  {
    name: 'compaction keeps the newest value per key; tombstones go after the delete retention',
    timeoutMs: 90_000,
    async run(ctx) {
      const t = await ctx.topic<{ v: number }>('compact', {
        cleanupPolicy: 'compact',
        deleteRetention: '2s',
      });
      await ctx.bus.publish(t, { v: 1 }, { key: 'a' });
      await ctx.bus.publish(t, { v: 1 }, { key: 'b' });
      await ctx.bus.publish(t, { v: 2 }, { key: 'a' });
      await ctx.bus.publish(t, null, { key: 'b' });
      await ctx.bus.publish(t, { v: 3 }, { key: 'a' });
      await ctx.bus.publish(t, { v: 1 }, { key: 'c' });
      const read = async () =>
        (await ctx.bus.reader.read(t, { partition: 0, from: 'earliest', max: 100 })).map((m) => [
          m.offset,
          m.key,
          m.value,
        ]);
      const compacted = await maintain(ctx, 'superseded records to go', async () => {
        const records = await read();
        return records.length <= 3 ? records : undefined;
      });
      assert.deepEqual(
        compacted,
        [
          [3, 'b', null],
          [4, 'a', { v: 3 }],
          [5, 'c', { v: 1 }],
        ],
        'the newest record per key is left, at its own offset; the fresh tombstone stays',
      );
      const swept = await maintain(ctx, 'the tombstone to go', async () => {
        const records = await read();
        return records.length === 2 ? records : undefined;
      });
      assert.deepEqual(swept, [
        [4, 'a', { v: 3 }],
        [5, 'c', { v: 1 }],
      ]);
      assert.equal((await ctx.bus.reader.offsets(t.name))[0]!.end, 6);
      const next = await ctx.bus.publish(t, { v: 4 }, { key: 'a' });
      assert.equal(next.offset, 6, 'offsets continue after compaction');
    },
  },
];

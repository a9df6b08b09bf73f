import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { waitFor } from '../../helpers.ts';
import type { CaseContext, ConformanceCase } from '../suite.ts';

/** Asks the engine to run retention and compaction now; engines that do it on their own schedule get time. */
async function maintain<T>(ctx: CaseContext, what: string, check: () => Promise<T | undefined>): Promise<T> {
  return waitFor(
    what,
    async () => {
      await ctx.bus.engine.runMaintenance();
      return check();
    },
    60_000,
    500,
  ) as Promise<T>;
}

/** Keys of the marker records some cases publish to close a Kafka segment; other engines ignore them. */
const isMarker = (key: string | null): boolean => key?.startsWith('marker-') ?? false;

export const retentionCases: ConformanceCase[] = [
  {
    name: 'retention by time removes old records from the head; offsets never change',
    timeoutMs: 90_000,
    async run(ctx) {
      // segmentMs lets Kafka close a segment of old records when a new one arrives.
      const t = await ctx.topic<{ n: number }>('retain-time', { retention: '1h', segmentMs: '1h' });
      const old = Date.now() - 3 * 3_600_000;
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
    timeoutMs: 120_000,
    async run(ctx) {
      // Kafka trims whole segments, and a segment is at least 1 MiB there.
      const t = await ctx.topic<string>('retain-size', { retentionBytes: '2MiB', segmentBytes: '1MiB' });
      const value = 'x'.repeat(1024);
      for (let b = 0; b < 40; b++) {
        await ctx.bus.publishBatch(
          t,
          Array.from({ length: 100 }, (_, i) => ({ value: `${b * 100 + i}:${value}` })),
        );
      }
      const [bounds] = await maintain(ctx, 'the head to be trimmed', async () => {
        const o = await ctx.bus.reader.offsets(t.name);
        return o[0]!.start > 0 ? o : undefined;
      });
      assert.equal(bounds!.end, 4000);
      const kept = bounds!.end - bounds!.start;
      // About 1.2 KiB per record stored: at least the 2 MiB limit, at most one segment more.
      assert.ok(kept >= 1600 && kept <= 3300, `kept ${kept} records of about 1.2 KiB under a 2 MiB limit`);
      const left = await ctx.bus.reader.read(t, { partition: 0, from: 'earliest', max: 10 });
      assert.deepEqual(
        left.map((m) => Number(m.value.split(':')[0])),
        Array.from({ length: 10 }, (_, i) => bounds!.start + i),
        'what is left is the newest, in order',
      );
    },
  },
  {
    name: 'compaction keeps the newest value per key; tombstones go after the delete retention',
    timeoutMs: 120_000,
    async run(ctx) {
      const t = await ctx.topic<{ v: number }>('compact', {
        cleanupPolicy: 'compact',
        deleteRetention: '2s',
        segmentMs: '100ms',
        minCleanableDirtyRatio: 0.01,
      });
      await ctx.bus.publish(t, { v: 1 }, { key: 'a' });
      await ctx.bus.publish(t, { v: 1 }, { key: 'b' });
      await ctx.bus.publish(t, { v: 2 }, { key: 'a' });
      await ctx.bus.publish(t, null, { key: 'b' });
      await ctx.bus.publish(t, { v: 3 }, { key: 'a' });
      await ctx.bus.publish(t, { v: 1 }, { key: 'c' });
      // Kafka never compacts the open segment: a later record closes it.
      await sleep(300);
      await ctx.bus.publish(t, { v: 0 }, { key: 'marker-1' });
      const read = async () =>
        (await ctx.bus.reader.read(t, { partition: 0, from: 'earliest', max: 100 }))
          .filter((m) => !isMarker(m.key))
          .map((m) => [m.offset, m.key, m.value]);
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
      await sleep(2500);
      await ctx.bus.publish(t, { v: 0 }, { key: 'marker-2' });
      await sleep(300);
      const end = (await ctx.bus.publish(t, { v: 0 }, { key: 'marker-3' })).offset + 1;
      const swept = await maintain(ctx, 'the tombstone to go', async () => {
        const records = await read();
        return records.length === 2 ? records : undefined;
      });
      assert.deepEqual(swept, [
        [4, 'a', { v: 3 }],
        [5, 'c', { v: 1 }],
      ]);
      const next = await ctx.bus.publish(t, { v: 4 }, { key: 'a' });
      assert.equal(next.offset, end, 'offsets continue after compaction');
    },
  },
];

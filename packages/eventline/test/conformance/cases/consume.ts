import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { bytes } from '../../../src/codec.ts';
import { isEventlineError } from '../../../src/errors.ts';
import type { Message } from '../../../src/message.ts';
import { deadLetterTopic } from '../../../src/runtime/dead-letter.ts';
import type { ErrorInfo } from '../../../src/runtime/subscription.ts';
import { defineTopic } from '../../../src/topic.ts';
import { tally, waitFor } from '../../helpers.ts';
import type { ConformanceCase } from '../suite.ts';

type Item = { id: string; key: string; seq: number };

function items(n: number, keys = 10): Item[] {
  return Array.from({ length: n }, (_, i) => ({
    id: `r${i}`,
    key: `k${i % keys}`,
    seq: Math.floor(i / keys),
  }));
}

async function committedTotal(
  bus: { admin: { describeGroup(g: string): Promise<{ partitions: { committed: number | null }[] }> } },
  group: string,
) {
  const d = await bus.admin.describeGroup(group);
  return d.partitions.reduce((s, p) => s + (p.committed ?? 0), 0);
}

export const consumeCases: ConformanceCase[] = [
  {
    name: 'every record reaches the group exactly once when nothing fails, in order per key',
    async run(ctx) {
      const t = await ctx.topic<Item>('once', { partitions: 3, key: (v) => v.key });
      const all = items(600);
      // Publish concurrently, single records and batches mixed, to exercise group commit.
      await Promise.all([
        ...all.slice(0, 200).map((v) => ctx.bus.publish(t, v)),
        ctx.bus.publishBatch(
          t,
          all.slice(200, 400).map((value) => ({ value })),
        ),
      ]);
      for (const v of all.slice(400)) await ctx.bus.publish(t, v);
      const seen: string[] = [];
      const lastSeq = new Map<string, number>();
      const group = ctx.group('once');
      const sub = ctx.bus.subscribe({
        group,
        topics: [t],
        fromBeginning: true,
        handler: (m) => {
          seen.push(m.value.id);
          const prev = lastSeq.get(m.value.key) ?? -1;
          assert.ok(m.value.seq > prev, `key ${m.value.key}: seq ${m.value.seq} after ${prev}`);
          lastSeq.set(m.value.key, m.value.seq);
        },
      });
      await waitFor('all records', () => seen.length >= all.length);
      // Committed offsets reach the end of every partition (past any transaction markers too).
      await waitFor('commits to reach the end', async () =>
        (await ctx.bus.admin.describeGroup(group)).partitions.every(
          (p) => p.lag === 0 && p.committed === p.end,
        ),
      );
      await sub.stop();
      const { missing, duplicated } = tally(
        seen,
        all.map((v) => v.id),
      );
      assert.deepEqual({ missing, duplicated }, { missing: [], duplicated: [] });
      const d = await ctx.bus.admin.describeGroup(group);
      assert.equal(d.state, 'Empty');
      assert.ok(d.partitions.every((p) => p.lag === 0));
    },
  },
  {
    name: "with ordering 'partition', a handler that throws gets the record again; later records of the partition wait",
    async run(ctx) {
      const t = await ctx.topic<{ n: number }>('retry', { partitions: 1 });
      await ctx.bus.publishBatch(
        t,
        [0, 1, 2, 3, 4].map((n) => ({ value: { n } })),
      );
      const order: [number, number][] = [];
      const errors: ErrorInfo[] = [];
      const group = ctx.group('retry');
      const sub = ctx.bus.subscribe({
        group,
        topics: [t],
        fromBeginning: true,
        ordering: 'partition',
        retry: { initialDelay: '10ms' },
        onError: (_e, info) => errors.push(info),
        handler: (m, c) => {
          order.push([m.value.n, c.attempt]);
          if (m.value.n === 2 && c.attempt < 3) throw new Error(`fail ${c.attempt}`);
        },
      });
      await waitFor('record 4', () => order.some(([n]) => n === 4));
      await waitFor('commit to the end', async () => (await committedTotal(ctx.bus, group)) === 5);
      await sub.stop();
      assert.deepEqual(order, [
        [0, 1],
        [1, 1],
        [2, 1],
        [2, 2],
        [2, 3],
        [3, 1],
        [4, 1],
      ]);
      assert.deepEqual(
        errors.map((e) => [e.offset, e.attempt]),
        [
          [2, 1],
          [2, 2],
        ],
      );
      assert.ok(errors.every((e) => typeof e.retryInMs === 'number'));
    },
  },
  {
    name: 'offsets are committed only after the handler succeeded',
    async run(ctx) {
      const t = await ctx.topic<{ n: number }>('commit-after', { partitions: 1 });
      await ctx.bus.publishBatch(
        t,
        Array.from({ length: 10 }, (_, n) => ({ value: { n } })),
      );
      const gate = Promise.withResolvers<void>();
      let blocked = false;
      const group = ctx.group('commit-after');
      const sub = ctx.bus.subscribe({
        group,
        topics: [t],
        fromBeginning: true,
        maxBatchSize: 3,
        handler: async (m) => {
          if (m.value.n === 5) {
            blocked = true;
            await gate.promise;
          }
        },
      });
      await waitFor('the handler to block on record 5', () => blocked);
      await sleep(200);
      const during = (await ctx.bus.reader.groupOffsets(group))[0]?.offset ?? 0;
      assert.ok(during <= 5, `committed ${during} while record 5 was still being handled`);
      gate.resolve();
      await waitFor('commit to 10', async () => (await ctx.bus.reader.groupOffsets(group))[0]?.offset === 10);
      await sub.stop();
    },
  },
  {
    name: 'a batch handler gets records of one partition in order; a throw delivers the batch again',
    async run(ctx) {
      const t = await ctx.topic<{ n: number }>('batch', { partitions: 2 });
      await ctx.bus.publishBatch(
        t,
        Array.from({ length: 40 }, (_, n) => ({ value: { n }, key: `k${n % 2}` })),
      );
      const batches: { partition: number; offsets: number[]; attempt: number; failed: boolean }[] = [];
      const sub = ctx.bus.subscribe({
        group: ctx.group('batch'),
        topics: [t],
        fromBeginning: true,
        maxBatchSize: 8,
        redeliveryDelay: '10ms',
        batchHandler: (ms, c) => {
          const failed = !batches.some((b) => b.failed) && ms[0]!.offset > 0;
          batches.push({
            partition: ms[0]!.partition,
            offsets: ms.map((m) => m.offset),
            attempt: c.attempt,
            failed,
          });
          assert.equal(new Set(ms.map((m) => m.partition)).size, 1, 'one partition per batch');
          if (failed) throw new Error('once');
        },
      });
      const handled = (p: number): number[] =>
        batches.filter((b) => b.partition === p && !b.failed).flatMap((b) => b.offsets);
      await waitFor('40 records', () => handled(0).length + handled(1).length === 40);
      await sub.stop();
      assert.ok(batches.every((b) => b.offsets.length <= 8));
      const failed = batches.find((b) => b.failed)!;
      const again = batches.find((b) => b.attempt === 2);
      assert.ok(again, 'the failed batch came again with attempt 2');
      assert.deepEqual([again.partition, again.offsets[0]], [failed.partition, failed.offsets[0]]);
      for (const p of [0, 1]) {
        assert.deepEqual(
          handled(p),
          handled(p).map((_, i) => i),
          `partition ${p}: in order, each once`,
        );
      }
    },
  },
  {
    name: 'concurrency handles several partitions at once and keeps each in order',
    async run(ctx) {
      const t = await ctx.topic<{ n: number; k: string }>('concurrency', { partitions: 4, key: (v) => v.k });
      await ctx.bus.publishBatch(
        t,
        Array.from({ length: 80 }, (_, n) => ({ value: { n, k: `k${n % 8}` } })),
      );
      let active = 0;
      let peak = 0;
      const perPartition = new Map<number, number[]>();
      let done = 0;
      const sub = ctx.bus.subscribe({
        group: ctx.group('concurrency'),
        topics: [t],
        fromBeginning: true,
        concurrency: 4,
        maxBatchSize: 5,
        handler: async (m) => {
          active++;
          peak = Math.max(peak, active);
          await sleep(2);
          const list = perPartition.get(m.partition) ?? [];
          list.push(m.offset);
          perPartition.set(m.partition, list);
          active--;
          done++;
        },
      });
      await waitFor('80 records', () => done === 80);
      await sub.stop();
      assert.ok(peak >= 2, `expected overlapping partitions, peak was ${peak}`);
      assert.ok(peak <= 4, `concurrency 4 exceeded: ${peak}`);
      for (const [p, offsets] of perPartition) {
        assert.deepEqual(
          offsets,
          offsets.map((_, i) => i),
          `partition ${p} handled in order, once`,
        );
      }
    },
  },
  {
    name: 'pause stops delivery for a topic or partition until resume',
    async run(ctx) {
      const t = await ctx.topic<{ n: number }>('pause', { partitions: 2 });
      const got: Message<{ n: number }>[] = [];
      const sub = ctx.bus.subscribe({
        group: ctx.group('pause'),
        topics: [t],
        handler: (m) => void got.push(m),
      });
      await sub.ready();
      await waitFor('assignment', () => sub.assignment().length === 2);
      await ctx.bus.publish(t, { n: 1 }, { partition: 0 });
      await waitFor('first record', () => got.length === 1);
      sub.pause([t.name]);
      await ctx.bus.publish(t, { n: 2 }, { partition: 0 });
      await ctx.bus.publish(t, { n: 3 }, { partition: 1 });
      await sleep(300);
      assert.equal(got.length, 1, 'nothing delivered while the topic is paused');
      sub.resume([t.name]);
      sub.pause([{ topic: t.name, partition: 1 }]);
      await waitFor('partition 0 record', () => got.length === 2);
      await sleep(200);
      assert.deepEqual(
        got.map((m) => m.value.n),
        [1, 2],
        'partition 1 is still paused',
      );
      sub.resume();
      await waitFor('partition 1 record', () => got.length === 3);
      await sub.stop();
    },
  },
  {
    name: 'seek moves delivery to an offset, to the start, or to a time',
    async run(ctx) {
      const t = await ctx.topic<{ n: number }>('seek', { partitions: 1 });
      const base = Date.now() - 60_000;
      await ctx.bus.publishBatch(
        t,
        Array.from({ length: 10 }, (_, n) => ({ value: { n }, timestamp: base + n * 1000 })),
      );
      const got: number[] = [];
      const sub = ctx.bus.subscribe({
        group: ctx.group('seek'),
        topics: [t],
        fromBeginning: true,
        handler: (m) => void got.push(m.value.n),
      });
      await waitFor('10 records', () => got.length === 10);
      await sub.seek({ topic: t, partition: 0, offset: 7 });
      await waitFor('7..9 again', () => got.length === 13);
      assert.deepEqual(got.slice(10), [7, 8, 9]);
      await sub.seek({ topic: t, timestamp: base + 4500 });
      await waitFor('5..9 again', () => got.length === 18);
      assert.deepEqual(got.slice(13), [5, 6, 7, 8, 9]);
      await sub.seek({ topic: t.name, offset: 'earliest' });
      await waitFor('all again', () => got.length === 28);
      assert.deepEqual(got.slice(18), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
      await assert.rejects(sub.seek({ topic: 'not-subscribed', offset: 0 }), (e: unknown) =>
        isEventlineError(e, 'EVENTLINE_ERR_INVALID_ARGUMENT'),
      );
      await sub.stop();
    },
  },
  {
    name: 'a new group without fromBeginning starts at the end',
    async run(ctx) {
      const t = await ctx.topic<{ n: number }>('latest', { partitions: 2 });
      await ctx.bus.publishBatch(t, [{ value: { n: 1 } }, { value: { n: 2 } }]);
      const got: number[] = [];
      const sub = ctx.bus.subscribe({
        group: ctx.group('latest'),
        topics: [t],
        handler: (m) => void got.push(m.value.n),
      });
      await waitFor('assignment', () => sub.assignment().length === 2);
      await ctx.bus.publish(t, { n: 3 });
      await waitFor('the new record', () => got.length === 1);
      await sleep(100);
      assert.deepEqual(got, [3]);
      await sub.stop();
    },
  },
  {
    name: 'a record that cannot be decoded goes to the dead-letter topic at once; other partitions keep flowing',
    async run(ctx) {
      const t = await ctx.topic<{ ok: boolean }>('poison', { partitions: 2 });
      const raw = defineTopic(t.name, { partitions: 2, value: bytes() });
      const bad = await ctx.bus.publish(raw, Buffer.from('{not json'), { partition: 0 });
      const errors: [Error, ErrorInfo][] = [];
      const good: number[] = [];
      const group = ctx.group('poison');
      const sub = ctx.bus.subscribe({
        group,
        topics: [t],
        fromBeginning: true,
        onError: (e, info) => errors.push([e, info]),
        handler: (m) => void good.push(m.partition),
      });
      await ctx.bus.publish(t, { ok: true }, { partition: 1 });
      await ctx.bus.publish(t, { ok: true }, { partition: 0 });
      await waitFor('the good records', () => good.length === 2);
      await waitFor('commit past the poison', async () => (await committedTotal(ctx.bus, group)) === 3);
      await sub.stop();
      assert.equal(errors.length, 1, 'reported once, not delivered again');
      const [err, info] = errors[0]!;
      assert.ok(isEventlineError(err, 'EVENTLINE_ERR_DECODE'), String(err));
      assert.match(err.message, new RegExp(`${t.name}/0@${bad.offset}: the value is not valid json`));
      assert.deepEqual([info.partition, info.offset, info.attempt, info.poison], [0, bad.offset, 1, true]);
      assert.equal(info.deadLetter, deadLetterTopic(group, t.name));
      const [dead] = await ctx.bus.reader.read(info.deadLetter!, { partition: 0, from: 'earliest' });
      assert.deepEqual(dead!.rawValue, Buffer.from('{not json'));
      assert.deepEqual(good.sort(), [0, 1]);
    },
  },
  {
    name: 'stop() finishes the running handler, commits it, and leaves the group',
    async run(ctx) {
      const t = await ctx.topic<{ n: number }>('stop', { partitions: 1 });
      await ctx.bus.publishBatch(t, [{ value: { n: 0 } }, { value: { n: 1 } }]);
      let started = false;
      let finished = false;
      const group = ctx.group('stop');
      const sub = ctx.bus.subscribe({
        group,
        topics: [t],
        fromBeginning: true,
        maxBatchSize: 1,
        handler: async (m) => {
          if (m.value.n === 0) {
            started = true;
            await sleep(300);
            finished = true;
          }
        },
      });
      await waitFor('the handler to start', () => started);
      await sub.stop();
      assert.ok(finished, 'stop waited for the running handler');
      const offsets = await ctx.bus.reader.groupOffsets(group);
      assert.equal(offsets[0]?.offset, 1, 'the finished record was committed, the unstarted one not');
      const d = await ctx.bus.admin.describeGroup(group);
      assert.equal(d.members.length, 0);
      assert.equal(d.state, 'Empty');
      await sub.stopped;
    },
  },
  {
    name: 'the reader reads from an offset, a time, the start or the end',
    async run(ctx) {
      const t = await ctx.topic<{ n: number }>('reader', { partitions: 1 });
      const base = Date.now() - 10_000;
      await ctx.bus.publishBatch(
        t,
        Array.from({ length: 5 }, (_, n) => ({ value: { n }, timestamp: base + n * 1000 })),
      );
      const n = (ms: Message<{ n: number }>[]): number[] => ms.map((m) => m.value.n);
      assert.deepEqual(n(await ctx.bus.reader.read(t, { partition: 0, from: 'earliest', max: 2 })), [0, 1]);
      assert.deepEqual(n(await ctx.bus.reader.read(t, { partition: 0, from: { offset: 3 } })), [3, 4]);
      assert.deepEqual(
        n(await ctx.bus.reader.read(t, { partition: 0, from: { timestamp: base + 1500 } })),
        [2, 3, 4],
      );
      assert.deepEqual(
        n(await ctx.bus.reader.read(t, { partition: 0, from: { timestamp: base + 99_000 } })),
        [],
      );
      assert.deepEqual(n(await ctx.bus.reader.read(t, { partition: 0, from: 'latest' })), []);
      assert.deepEqual(await ctx.bus.reader.offsets(t.name), [{ partition: 0, start: 0, end: 5 }]);
      await assert.rejects(ctx.bus.reader.read(t, { partition: 3, from: 'earliest' }), (e: unknown) =>
        isEventlineError(e, 'EVENTLINE_ERR_UNKNOWN_PARTITION'),
      );
      const follower = new AbortController();
      const followed: number[] = [];
      const done = (async () => {
        for await (const m of ctx.bus.reader.follow(t, { from: 'earliest', signal: follower.signal })) {
          followed.push(m.value.n);
          if (followed.length === 6) follower.abort();
        }
      })();
      await waitFor('the first five', () => followed.length === 5);
      await ctx.bus.publish(t, { n: 5 });
      await done;
      assert.deepEqual(followed, [0, 1, 2, 3, 4, 5]);
    },
  },
];

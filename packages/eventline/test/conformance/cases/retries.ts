import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { bytes } from '../../../src/codec.ts';
import type { Header } from '../../../src/engine/types.ts';
import {
  DLQ_HEADERS,
  deadLetterTopic,
  parkingLotTopic,
  parseDeadLetter,
  REPLAYS_HEADER,
} from '../../../src/runtime/dead-letter.ts';
import { NonRetryableError } from '../../../src/runtime/retry.ts';
import type { ErrorInfo } from '../../../src/runtime/subscription.ts';
import { defineTopic } from '../../../src/topic.ts';
import { waitFor } from '../../helpers.ts';
import type { CaseContext, ConformanceCase } from '../suite.ts';

async function committed(ctx: CaseContext, group: string, partition = 0): Promise<number | undefined> {
  return (await ctx.bus.reader.groupOffsets(group)).find((o) => o.partition === partition)?.offset;
}

const header = (headers: readonly Header[], name: string): string | undefined =>
  headers.find(([n]) => n === name)?.[1].toString('utf8');

export const retryCases: ConformanceCase[] = [
  {
    name: 'retry: attempts are counted, then the record goes to the dead-letter topic byte for byte with its origin',
    async run(ctx) {
      const t = await ctx.topic<{ n: number }>('retry-dlq', { partitions: 2 });
      const raw = defineTopic(t.name, { partitions: 2, value: bytes() });
      const value = Buffer.from('{"n":7}');
      const sent = await ctx.bus.publish(raw, value, {
        key: 'order-7',
        partition: 1,
        headers: [
          ['x-trace', Buffer.from([0, 1, 2, 255])],
          ['x-trace', 'again'],
        ],
      });
      const [original] = await ctx.bus.reader.read(raw, { partition: 1, from: { offset: sent.offset } });
      const group = ctx.group('retry-dlq');
      const attempts: number[] = [];
      const errors: ErrorInfo[] = [];
      const sub = ctx.bus.subscribe({
        group,
        topics: [t],
        fromBeginning: true,
        retry: { attempts: 3, initialDelay: '20ms', jitter: 0 },
        onError: (_e, info) => errors.push(info),
        handler: (_m, c) => {
          attempts.push(c.attempt);
          throw new Error(`payment declined (attempt ${c.attempt})`);
        },
      });
      await waitFor('the dead letter', () => errors.some((e) => e.deadLetter !== undefined));
      await waitFor('the commit past it', async () => (await committed(ctx, group, 1)) === sent.offset + 1);
      await sub.stop();
      assert.deepEqual(attempts, [1, 2, 3]);
      assert.deepEqual(
        errors.map((e) => [e.attempt, e.retryInMs !== undefined, e.deadLetter]),
        [
          [1, true, undefined],
          [2, true, undefined],
          [3, false, deadLetterTopic(group, t.name)],
        ],
      );
      const [stored] = await ctx.bus.reader.read(deadLetterTopic(group, t.name), {
        partition: 0,
        from: 'earliest',
      });
      assert.deepEqual(stored!.rawValue, value);
      assert.deepEqual(stored!.rawKey, Buffer.from('order-7'));
      // The original headers come first, unchanged and in order.
      assert.deepEqual(stored!.rawHeaders.slice(0, original!.rawHeaders.length), original!.rawHeaders);
      const dead = parseDeadLetter({
        ...stored!,
        key: stored!.rawKey,
        value: stored!.rawValue,
        headers: [...stored!.rawHeaders],
      });
      assert.ok(dead);
      assert.deepEqual(dead.original, {
        topic: t.name,
        partition: 1,
        offset: sent.offset,
        timestamp: original!.timestamp,
      });
      assert.equal(dead.group, group);
      assert.equal(dead.attempts, 3);
      assert.equal(dead.error.code, 'Error');
      assert.equal(dead.error.message, 'payment declined (attempt 3)');
      assert.match(dead.error.stack, /payment declined/);
      assert.ok(Date.parse(dead.firstFailure) <= Date.parse(dead.lastFailure));
      assert.equal(header(stored!.rawHeaders, DLQ_HEADERS.key), 'order-7');
    },
  },
  {
    name: 'retry: while a record waits, later records of its key wait behind it and other keys keep flowing',
    async run(ctx) {
      const t = await ctx.topic<{ id: string }>('retry-keys', { partitions: 1 });
      await ctx.bus.publishBatch(
        t,
        ['a1', 'b1', 'a2', 'c1', 'b2', 'a3'].map((id) => ({ value: { id }, key: id[0]! })),
      );
      const handled: string[] = [];
      let failures = 0;
      const group = ctx.group('retry-keys');
      const sub = ctx.bus.subscribe({
        group,
        topics: [t],
        fromBeginning: true,
        retry: { initialDelay: '300ms', jitter: 0 },
        handler: (m) => {
          // a1 fails until the other keys went by: they must not wait for it.
          const othersDone = ['b1', 'c1', 'b2'].every((id) => handled.includes(id));
          if (m.value.id === 'a1' && (failures < 2 || !othersDone)) {
            failures++;
            throw new Error('not yet');
          }
          handled.push(m.value.id);
        },
      });
      await waitFor('all six', () => handled.length === 6);
      await waitFor('the commit to the end', async () => (await committed(ctx, group)) === 6);
      await sub.stop();
      const at = (id: string): number => handled.indexOf(id);
      assert.deepEqual(
        handled.filter((id) => id.startsWith('a')),
        ['a1', 'a2', 'a3'],
        'key a stays in order',
      );
      assert.ok(
        at('b1') < at('a1') && at('c1') < at('a1') && at('b2') < at('a1'),
        `others went first: ${handled}`,
      );
      assert.ok(at('b1') < at('b2'));
    },
  },
  {
    name: 'retry: a waiting record survives a restart: the next subscription continues its attempt count',
    async run(ctx) {
      const t = await ctx.topic<{ id: string }>('retry-restart', { partitions: 1 });
      await ctx.bus.publishBatch(
        t,
        ['a1', 'b1', 'b2'].map((id) => ({ value: { id }, key: id[0]! })),
      );
      const group = ctx.group('retry-restart');
      const seen: [string, number][] = [];
      const options = {
        group,
        topics: [t],
        fromBeginning: true,
        retry: { initialDelay: '1s' as const, jitter: 0 },
        onError: () => {},
        handler: (m: { value: { id: string } }, c: { attempt: number }) => {
          seen.push([m.value.id, c.attempt]);
          if (m.value.id === 'a1' && c.attempt < 3) throw new Error(`attempt ${c.attempt}`);
        },
      };
      const first = ctx.bus.subscribe(options);
      await waitFor('b1, b2 and the first failure', () => seen.length === 3);
      await first.stop();
      // The commit stays at a1; what is past it and finished travels with the commit.
      assert.equal(await committed(ctx, group), 0);
      const second = (await ctx.connect()).subscribe(options);
      await waitFor('a1 handled', () => seen.some(([id, attempt]) => id === 'a1' && attempt === 3));
      await waitFor('the commit to the end', async () => (await committed(ctx, group)) === 3);
      await second.stop();
      assert.deepEqual(
        seen.filter(([id]) => id === 'a1'),
        [
          ['a1', 1],
          ['a1', 2],
          ['a1', 3],
        ],
      );
      assert.deepEqual(
        seen.filter(([id]) => id !== 'a1').map(([id]) => id),
        ['b1', 'b2'],
        'finished records are not handled again after the restart',
      );
    },
  },
  {
    name: 'retry: a NonRetryableError goes to the dead-letter topic at once; a record replayed too often goes to the parking lot',
    async run(ctx) {
      const t = await ctx.topic<{ id: string }>('retry-non', { partitions: 1 });
      await ctx.bus.publish(t, { id: 'fresh' }, { key: 'k' });
      await ctx.bus.publish(t, { id: 'replayed' }, { key: 'k', headers: { [REPLAYS_HEADER]: '3' } });
      await ctx.bus.publish(t, { id: 'fine' }, { key: 'k' });
      const group = ctx.group('retry-non');
      const attempts: [string, number][] = [];
      const errors: ErrorInfo[] = [];
      const sub = ctx.bus.subscribe({
        group,
        topics: [t],
        fromBeginning: true,
        deadLetter: { maxReplays: 3 },
        onError: (_e, info) => errors.push(info),
        handler: (m, c) => {
          attempts.push([m.value.id, c.attempt]);
          if (m.value.id !== 'fine') throw new NonRetryableError('order is malformed', { code: 'BAD_ORDER' });
        },
      });
      await waitFor('the commit to the end', async () => (await committed(ctx, group)) === 3);
      await sub.stop();
      assert.deepEqual(attempts, [
        ['fresh', 1],
        ['replayed', 1],
        ['fine', 1],
      ]);
      assert.deepEqual(
        errors.map((e) => e.deadLetter),
        [deadLetterTopic(group, t.name), parkingLotTopic(group, t.name)],
      );
      const [dead] = await ctx.bus.reader.read(deadLetterTopic(group, t.name), {
        partition: 0,
        from: 'earliest',
      });
      assert.equal(header(dead!.rawHeaders, DLQ_HEADERS.errorCode), 'BAD_ORDER');
      const [parked] = await ctx.bus.reader.read(parkingLotTopic(group, t.name), {
        partition: 0,
        from: 'earliest',
      });
      assert.equal(JSON.parse(parked!.rawValue!.toString()).id, 'replayed');
    },
  },
  {
    name: 'per-key concurrency: keys of one partition run in parallel, each in order; commits stop at the lowest unfinished offset',
    async run(ctx) {
      const t = await ctx.topic<{ key: string; n: number }>('per-key', { partitions: 1 });
      const keys = ['a', 'b', 'c', 'd'];
      await ctx.bus.publishBatch(
        t,
        Array.from({ length: 40 }, (_, i) => ({ value: { key: keys[i % 4]!, n: i }, key: keys[i % 4]! })),
      );
      const group = ctx.group('per-key');
      let release!: () => void;
      const held = new Promise<void>((r) => {
        release = r;
      });
      const order = new Map<string, number[]>();
      let active = 0;
      let most = 0;
      const sub = ctx.bus.subscribe({
        group,
        topics: [t],
        fromBeginning: true,
        concurrency: { perPartition: 4 },
        commitInterval: '10ms',
        handler: async (m) => {
          active++;
          most = Math.max(most, active);
          if (m.value.n === 4)
            await held; // the second record of key a holds its key
          else await sleep(2);
          order.set(m.value.key, [...(order.get(m.value.key) ?? []), m.value.n]);
          active--;
        },
      });
      await waitFor('every key but a to finish', () =>
        ['b', 'c', 'd'].every((k) => order.get(k)?.length === 10),
      );
      await waitFor('the commit to reach the held record', async () => (await committed(ctx, group)) === 4);
      assert.deepEqual(order.get('a'), [0], 'key a waits behind its held record');
      assert.equal(await committed(ctx, group), 4, 'the commit stops at the held record');
      release();
      await waitFor('the commit to the end', async () => (await committed(ctx, group)) === 40);
      await sub.stop();
      assert.ok(most > 1, `records ran in parallel (at most ${most})`);
      for (const [key, ns] of order) {
        assert.deepEqual(
          ns,
          [...ns].sort((x, y) => x - y),
          `key ${key} in order`,
        );
        assert.equal(ns.length, 10);
      }
    },
  },
  {
    name: 'per-key concurrency across rebalances: no partition is handled by two members at once, nothing lost or repeated',
    timeoutMs: 90_000,
    async run(ctx) {
      const t = await ctx.topic<{ id: string }>('per-key-rebalance', { partitions: 4 });
      const group = ctx.group('per-key-rebalance');
      const seen: string[] = [];
      const owners = new Map<number, Set<string>>();
      let overlap = 0;
      const clients = [ctx.bus, await ctx.connect(), await ctx.connect()];
      const subscribe = (i: number) => {
        const member = `m${i}`;
        return clients[i]!.subscribe({
          group,
          topics: [t],
          fromBeginning: true,
          sessionTimeout: '6s',
          concurrency: { perPartition: 3 },
          handler: async (m) => {
            const active = owners.get(m.partition) ?? new Set<string>();
            owners.set(m.partition, active);
            if ([...active].some((o) => o !== member)) overlap++;
            active.add(member);
            await sleep(2);
            seen.push(m.value.id);
            active.delete(member);
          },
        });
      };
      const ids: string[] = [];
      let publishing = true;
      const producer = (async () => {
        for (let i = 0; publishing; i++) {
          const batch = Array.from({ length: 12 }, (_, j) => `r${i}-${j}`);
          await ctx.bus.publishBatch(
            t,
            batch.map((id) => ({ value: { id }, key: `k${id.length % 7}-${id.slice(-1)}` })),
          );
          ids.push(...batch);
          await sleep(5);
        }
      })();
      const first = subscribe(0);
      await waitFor('the first member to own everything', () => first.assignment().length === 4, 30_000);
      const second = subscribe(1);
      const third = subscribe(2);
      await waitFor(
        'three members sharing the partitions',
        () => [first, second, third].every((sub) => sub.assignment().length >= 1),
        30_000,
      );
      await sleep(300);
      await second.stop();
      await waitFor(
        'two members with two partitions each',
        () => first.assignment().length === 2 && third.assignment().length === 2,
        30_000,
      );
      await sleep(300);
      publishing = false;
      await producer;
      await waitFor('every record', () => new Set(seen).size >= ids.length, 30_000);
      await Promise.all([first.stop(), third.stop()]);
      assert.equal(overlap, 0, 'a partition was handled by two members at once');
      assert.equal(new Set(seen).size, ids.length, 'nothing lost');
      assert.equal(seen.length, ids.length, 'graceful rebalances repeat nothing');
    },
  },
  {
    name: 'shutdown: stop() abandons work still running after the grace period; it is not committed',
    async run(ctx) {
      const t = await ctx.topic<{ n: number }>('grace', { partitions: 1 });
      await ctx.bus.publishBatch(t, [{ value: { n: 0 } }, { value: { n: 1 } }]);
      const group = ctx.group('grace');
      let aborted = false;
      const sub = ctx.bus.subscribe({
        group,
        topics: [t],
        fromBeginning: true,
        shutdownGrace: '200ms',
        commitInterval: '10ms',
        handler: async (m, c) => {
          if (m.value.n === 1) {
            c.signal.addEventListener('abort', () => {
              aborted = true;
            });
            await new Promise(() => {}); // never finishes
          }
        },
      });
      await waitFor('the first commit', async () => (await committed(ctx, group)) === 1);
      await sub.stop();
      assert.equal(aborted, true, 'the running handler was told to abandon');
      assert.equal(await committed(ctx, group), 1, 'the abandoned record is not committed');
    },
  },
];

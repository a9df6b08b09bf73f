import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { isEventlineError } from '../../../src/errors.ts';
import type { Subscription } from '../../../src/runtime/subscription.ts';
import { tally, waitFor } from '../../helpers.ts';
import type { ConformanceCase } from '../suite.ts';

type Rec = { id: string };

const SESSION = '3s';

export const groupCases: ConformanceCase[] = [
  {
    name: 'members of a group split the partitions; another group gets every record too',
    async run(ctx) {
      const t = await ctx.topic<Rec>('split', { partitions: 4 });
      const other = await ctx.connect({ clientId: 'second' });
      const groupA = ctx.group('split-a');
      const seenA: [string, string][] = [];
      const seenB: string[] = [];
      const a1 = ctx.bus.subscribe({
        group: groupA,
        topics: [t],
        fromBeginning: true,
        handler: (m) => void seenA.push(['a1', m.value.id]),
      });
      const a2 = other.subscribe({
        group: groupA,
        topics: [t],
        fromBeginning: true,
        handler: (m) => void seenA.push(['a2', m.value.id]),
      });
      const b = ctx.bus.subscribe({
        group: ctx.group('split-b'),
        topics: [t],
        fromBeginning: true,
        handler: (m) => void seenB.push(m.value.id),
      });
      await waitFor('a stable split', () => a1.assignment().length === 2 && a2.assignment().length === 2);
      const owned = [...a1.assignment(), ...a2.assignment()].map((tp) => tp.partition).sort();
      assert.deepEqual(owned, [0, 1, 2, 3], 'every partition has exactly one owner');
      const ids = Array.from({ length: 200 }, (_, i) => `r${i}`);
      await ctx.bus.publishBatch(
        t,
        ids.map((id) => ({ value: { id }, key: id })),
      );
      await waitFor('group A', () => seenA.length >= 200);
      await waitFor('group B', () => seenB.length >= 200);
      await Promise.all([a1.stop(), a2.stop(), b.stop()]);
      assert.deepEqual(
        tally(
          seenA.map(([, id]) => id),
          ids,
        ),
        { missing: [], duplicated: [] },
      );
      assert.deepEqual(tally(seenB, ids), { missing: [], duplicated: [] });
      assert.ok(seenA.some(([m]) => m === 'a1') && seenA.some(([m]) => m === 'a2'), 'both members worked');
    },
  },
  {
    name: 'a member joining and one leaving rebalance the group; no record is lost or handled twice at once',
    timeoutMs: 90_000,
    async run(ctx) {
      const t = await ctx.topic<Rec>('rebalance', { partitions: 6 });
      const group = ctx.group('rebalance');
      const seen: string[] = [];
      const active = new Map<number, number>();
      let overlap = 0;
      const handler = async (m: { partition: number; value: Rec }): Promise<void> => {
        const n = (active.get(m.partition) ?? 0) + 1;
        active.set(m.partition, n);
        if (n > 1) overlap++;
        await sleep(1);
        seen.push(m.value.id);
        active.set(m.partition, (active.get(m.partition) ?? 1) - 1);
      };
      const clients = await Promise.all([ctx.connect(), ctx.connect()]);
      const subscribe = (i: number): Subscription =>
        (i === 0 ? ctx.bus : clients[i - 1]!).subscribe({
          group,
          topics: [t],
          fromBeginning: true,
          sessionTimeout: SESSION,
          handler,
        });
      const first = subscribe(0);
      await waitFor('the first member to own everything', () => first.assignment().length === 6);
      // Publish continuously while members come and go.
      const ids: string[] = [];
      let publishing = true;
      const producer = (async () => {
        for (let i = 0; publishing; i++) {
          const batch = Array.from({ length: 20 }, (_, j) => `r${i}-${j}`);
          await ctx.bus.publishBatch(
            t,
            batch.map((id) => ({ value: { id }, key: id })),
          );
          ids.push(...batch);
          await sleep(5);
        }
      })();
      const second = subscribe(1);
      const third = subscribe(2);
      await waitFor(
        'three members with two partitions each',
        () => [first, second, third].every((s) => s.assignment().length === 2),
        30_000,
      );
      const describe = await ctx.bus.admin.describeGroup(group);
      assert.equal(describe.members.length, 3);
      assert.equal(new Set(describe.partitions.map((p) => p.owner)).size, 3);
      await sleep(300);
      await second.stop();
      await waitFor(
        'two members with three partitions each',
        () => first.assignment().length === 3 && third.assignment().length === 3,
        30_000,
      );
      await sleep(300);
      publishing = false;
      await producer;
      await waitFor('every record', () => new Set(seen).size >= ids.length, 30_000);
      await Promise.all([first.stop(), third.stop()]);
      assert.equal(overlap, 0, 'a partition was handled by two members at once');
      assert.deepEqual(
        tally(seen, ids),
        { missing: [], duplicated: [] },
        'graceful rebalances lose and repeat nothing',
      );
    },
  },
  {
    name: 'offsets cannot be reset while the group is live; once it is empty they move as asked',
    async run(ctx) {
      const t = await ctx.topic<{ n: number }>('reset', { partitions: 2 });
      const base = Date.now() - 100_000;
      // One batch per partition: a batch spanning partitions may leave a transaction marker on Kafka.
      const records = Array.from({ length: 10 }, (_, n) => ({
        value: { n },
        partition: n % 2,
        timestamp: base + n * 1000,
      }));
      for (const p of [0, 1])
        await ctx.bus.publishBatch(
          t,
          records.filter((r) => r.partition === p),
        );
      const group = ctx.group('reset');
      const got: number[] = [];
      const sub = ctx.bus.subscribe({
        group,
        topics: [t],
        fromBeginning: true,
        handler: (m) => void got.push(m.value.n),
      });
      await waitFor('all ten', () => got.length === 10);
      await waitFor(
        'commits',
        async () => (await ctx.bus.reader.groupOffsets(group)).reduce((s, o) => s + o.offset, 0) === 10,
      );
      await assert.rejects(
        ctx.bus.admin.resetOffsets(group, { topic: t.name, to: 'earliest' }),
        (e: unknown) => isEventlineError(e, 'EVENTLINE_ERR_GROUP_NOT_EMPTY') && /live member/.test(e.message),
      );
      await sub.stop();
      const offsets = (o: { partition: number; offset: number }[]): number[][] =>
        o.map((x) => [x.partition, x.offset]).sort((a, b) => a[0]! - b[0]!);
      assert.deepEqual(offsets(await ctx.bus.admin.resetOffsets(group, { topic: t.name, to: 'earliest' })), [
        [0, 0],
        [1, 0],
      ]);
      assert.deepEqual(offsets(await ctx.bus.reader.groupOffsets(group)), [
        [0, 0],
        [1, 0],
      ]);
      const dry = await ctx.bus.admin.resetOffsets(group, { topic: t.name, to: 'latest', dryRun: true });
      assert.deepEqual(offsets(dry), [
        [0, 5],
        [1, 5],
      ]);
      assert.deepEqual(
        offsets(await ctx.bus.reader.groupOffsets(group)),
        [
          [0, 0],
          [1, 0],
        ],
        'a dry run changes nothing',
      );
      // Record n sits in partition n % 2 at offset floor(n / 2), stamped base + n s.
      const byTime = await ctx.bus.admin.resetOffsets(group, {
        topic: t.name,
        to: { timestamp: new Date(base + 6500) },
      });
      assert.deepEqual(offsets(byTime), [
        [0, 4],
        [1, 3],
      ]);
      assert.deepEqual(
        offsets(
          await ctx.bus.admin.resetOffsets(group, { topic: t.name, partitions: [1], to: { offset: 99 } }),
        ),
        [[1, 5]],
        'an offset past the end is clamped to the end',
      );
      got.length = 0;
      const again = ctx.bus.subscribe({ group, topics: [t], handler: (m) => void got.push(m.value.n) });
      await waitFor('records after the reset', () => got.length === 1);
      await sleep(200);
      await again.stop();
      assert.deepEqual(got, [8], 'partition 0 from offset 4, partition 1 at its end');
      await assert.rejects(ctx.bus.admin.describeGroup(ctx.group('never-used')), (e: unknown) =>
        isEventlineError(e, 'EVENTLINE_ERR_UNKNOWN_GROUP'),
      );
      assert.ok((await ctx.bus.admin.listGroups()).includes(group));
    },
  },
];

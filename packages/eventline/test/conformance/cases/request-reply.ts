import assert from 'node:assert/strict';
import { isEventlineError } from '../../../src/errors.ts';
import { createRequester, type Requester, respond } from '../../../src/patterns/request-reply.ts';
import { type Child, spawnNode, waitFor } from '../../helpers.ts';
import type { CaseContext, ConformanceCase } from '../suite.ts';

const RESPONDER = new URL('../processes/responder.ts', import.meta.url);

interface Ask {
  n: number;
}
interface Answer {
  n: number;
  by: string;
}

type Line = { ready?: string; received?: string; replied?: string };

async function withRequester<T>(ctx: CaseContext, fn: (r: Requester) => Promise<T>): Promise<T> {
  const r = createRequester(ctx.bus);
  try {
    await r.ready();
    return await fn(r);
  } finally {
    await r.close();
  }
}

/** How many records a topic holds, over every partition. */
async function count(ctx: CaseContext, topic: string): Promise<number> {
  return (await ctx.bus.reader.offsets(topic)).reduce((s, p) => s + p.end - p.start, 0);
}

/**
 * A responder process takes the request and is killed; a second one (already a member of the
 * group, owning nothing) takes the partition over and answers. `dieAfterReply`: the first one is
 * killed after its reply was published but before its commit.
 */
async function killMidRequest(ctx: CaseContext, dieAfterReply: boolean): Promise<void> {
  const t = await ctx.topic<Ask>('rr-kill', { partitions: 1 });
  const group = ctx.group('rr-kill');
  const start = async (name: string, extra: object): Promise<Child> => {
    const args = { url: ctx.target.url, topic: t.name, group, name, sessionTimeout: '2s', ...extra };
    const child = spawnNode(RESPONDER, args);
    await child.waitForLine<Line>(`${name} ready`, (l) => l.ready === name, 60_000);
    return child;
  };
  const a = await start('a', dieAfterReply ? { dieAfterReply } : { sleepMs: 600_000 });
  // Owning the only partition is what makes `a` the one that gets the request.
  await waitFor(
    'a to own the partition',
    async () => {
      const d = await ctx.bus.admin.describeGroup(group);
      return d.members.some((m) => m.clientId === 'a' && m.assignment.length === 1);
    },
    60_000,
  );
  const b = await start('b', {});
  try {
    await withRequester(ctx, async (requester) => {
      const reply = requester.request<Ask, Answer>(t, { n: 7 }, { timeout: '90s' });
      const received = await a.waitForLine<Line>(
        'a to take the request',
        (l) => l.received !== undefined,
        60_000,
      );
      if (dieAfterReply) await a.exited;
      else a.kill('SIGKILL');
      assert.equal(await a.exited, 'SIGKILL');
      const answer = await reply;
      assert.deepEqual(answer, { n: 7, by: dieAfterReply ? 'a' : 'b' }, 'the first reply wins');
      await b.waitForLine<Line>(
        'b to get the request again',
        (l) => l.received === received.received,
        60_000,
      );
      if (dieAfterReply) {
        await waitFor(
          'the second reply to arrive and be dropped',
          () => requester.stats().duplicateReplies === 1,
          60_000,
        );
      }
      // b commits after replying: nothing more comes. The reply topic holds every reply sent.
      await waitFor(
        'b to commit the request',
        async () => {
          const [o] = await ctx.bus.reader.groupOffsets(group);
          return o?.offset === 1;
        },
        60_000,
      );
      assert.equal(await count(ctx, requester.replyTopic!), dieAfterReply ? 2 : 1);
      const stats = requester.stats();
      assert.equal(stats.replied, 1, 'the request was answered once');
      assert.equal(stats.duplicateReplies, dieAfterReply ? 1 : 0);
      assert.equal(stats.lateReplies, 0);
      assert.equal(stats.timedOut, 0);
    });
  } finally {
    b.kill('SIGTERM');
    await b.exited;
  }
}

export const requestReplyCases: ConformanceCase[] = [
  {
    name: 'request/reply: a round trip, a failure reply with its code, a timeout and a late reply',
    timeoutMs: 120_000,
    async run(ctx) {
      const t = await ctx.topic<Ask>('rr-basic', { partitions: 2 });
      let release = (): void => {};
      const held = new Promise<void>((r) => {
        release = r;
      });
      const responder = respond<Ask, Answer>(ctx.bus, {
        topic: t,
        group: ctx.group('rr-basic'),
        handler: async (m) => {
          if (m.value.n < 0) throw Object.assign(new Error(`negative: ${m.value.n}`), { code: 'NEGATIVE' });
          if (m.value.n === 0) await held; // answers only once the requester gave up
          return { n: m.value.n * 2, by: 'local' };
        },
      });
      await responder.ready();
      await withRequester(ctx, async (requester) => {
        assert.deepEqual(await requester.request<Ask, Answer>(t, { n: 21 }, { timeout: '60s' }), {
          n: 42,
          by: 'local',
        });
        const failure = await requester.request(t, { n: -1 }, { timeout: '60s' }).then(
          () => assert.fail('a failure reply must reject'),
          (e: unknown) => e,
        );
        assert.ok(isEventlineError(failure), String(failure));
        assert.equal(failure.code, 'EVENTLINE_ERR_REMOTE');
        assert.equal(failure.details.code, 'NEGATIVE');
        assert.equal(failure.details.message, 'negative: -1');
        const timeout = await requester.request(t, { n: 0 }, { timeout: '2s' }).then(
          () => assert.fail('a held request must time out'),
          (e: unknown) => e,
        );
        assert.ok(isEventlineError(timeout, 'EVENTLINE_ERR_TIMEOUT'), String(timeout));
        assert.equal(timeout.details.topic, t.name);
        release();
        await waitFor('the late reply to be dropped', () => requester.stats().lateReplies === 1, 60_000);
        const stats = requester.stats();
        assert.deepEqual(
          { sent: stats.sent, replied: stats.replied, failed: stats.failed, timedOut: stats.timedOut },
          { sent: 3, replied: 2, failed: 1, timedOut: 1 },
        );
      });
      await responder.stop();
    },
  },
  {
    name: 'request/reply: two requesters on two clients each get only their own replies',
    timeoutMs: 120_000,
    async run(ctx) {
      const t = await ctx.topic<Ask>('rr-two', { partitions: 3 });
      const responder = respond<Ask, Answer>(ctx.bus, {
        topic: t,
        group: ctx.group('rr-two'),
        concurrency: 3,
        handler: (m) => ({ n: m.value.n, by: 'r' }),
      });
      await responder.ready();
      const other = await ctx.connect({ clientId: 'other' });
      const mine = createRequester(ctx.bus);
      const theirs = createRequester(other);
      try {
        const ask = (r: Requester, base: number) =>
          Promise.all(
            Array.from({ length: 20 }, (_, i) =>
              r.request<Ask, Answer>(t, { n: base + i }, { timeout: '60s' }),
            ),
          );
        const [a, b] = await Promise.all([ask(mine, 0), ask(theirs, 1000)]);
        assert.deepEqual(
          a.map((x) => x.n),
          Array.from({ length: 20 }, (_, i) => i),
        );
        assert.deepEqual(
          b.map((x) => x.n),
          Array.from({ length: 20 }, (_, i) => 1000 + i),
        );
        for (const r of [mine, theirs]) {
          assert.equal(await count(ctx, r.replyTopic!), 20, 'a reply topic holds only its own replies');
          const s = r.stats();
          assert.deepEqual([s.replied, s.lateReplies, s.duplicateReplies], [20, 0, 0]);
        }
      } finally {
        await Promise.all([mine.close(), theirs.close()]);
      }
      await responder.stop();
    },
  },
  {
    name: 'request/reply: a responder killed with SIGKILL mid-request; the survivor sends the one reply',
    needs: 'processes',
    timeoutMs: 180_000,
    run: (ctx) => killMidRequest(ctx, false),
  },
  {
    name: 'request/reply: a responder killed between its reply and its commit; the second reply is dropped',
    needs: 'processes',
    timeoutMs: 180_000,
    run: (ctx) => killMidRequest(ctx, true),
  },
];

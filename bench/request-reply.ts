/**
 * Request/reply across two processes on the embedded engine (one database file): the responder
 * runs in a child process, the requester here; requests are sent one at a time (each awaits its
 * reply). The request topic is declared `fsync: false`, as the requester's reply topic is: a
 * request or a reply is worthless once the process waiting for it is gone, so neither waits for
 * the disk (a process crash still loses nothing). Beside the round trip, the same run measures one
 * awaited publish to an ordinary (fsync'd) topic, splits the round trip at the moment the
 * responder's handler started, and repeats the round trip on tmpfs (`/dev/shm`).
 */
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, defineTopic, silentLogger } from '../packages/eventline/src/index.ts';
import { createRequester } from '../packages/eventline/src/patterns/request-reply.ts';
import { spawnNode } from '../packages/eventline/test/helpers.ts';
import { settle } from './embedded.ts';
import { type Figure, judge, log, percentile, round } from './lib.ts';

const DURABILITY =
  'request and reply topics declared fsync: false (SQLite WAL, synchronous=NORMAL for their commits)';
const now = (): number => performance.timeOrigin + performance.now();

interface Quantiles {
  p50: number;
  p99: number;
}

function quantiles(xs: number[]): Quantiles {
  const s = [...xs].sort((a, b) => a - b);
  return { p50: round(percentile(s, 50), 3), p99: round(percentile(s, 99), 3) };
}

interface RoundTrips {
  total: Quantiles;
  /** From sending until the responder's handler started: the request's commit, fsync and wake-up. */
  there: Quantiles;
  /** From the handler's start until the reply was in hand: the reply's commit, fsync and wake-up. */
  back: Quantiles;
  /** One awaited publish in this process. */
  publish: Quantiles;
  late: number;
  duplicates: number;
}

async function roundTrips(base: string, warmup: number, count: number): Promise<RoundTrips> {
  const dir = mkdtempSync(join(base, 'eventline-bench-rr-'));
  const url = `sqlite:${join(dir, 'events.db')}`;
  const bus = await connect(url, { logger: silentLogger });
  // Requests and replies are worthless once the requester is gone: neither waits for the disk.
  const requests = defineTopic<{ n: number }>('bench.requests', { retention: 'forever', fsync: false });
  const probe = defineTopic<{ n: number }>('bench.publish-probe', { retention: 'forever' });
  await bus.ensureTopics([requests, probe]);
  const responder = spawnNode(new URL('./processes/responder.ts', import.meta.url), {
    url,
    topic: requests.name,
    group: 'bench-responders',
  });
  const requester = createRequester(bus);
  try {
    await responder.waitForLine<{ ready?: boolean }>('the responder', (l) => l.ready === true, 60_000);
    await requester.ready();
    await settle();
    const total: number[] = [];
    const there: number[] = [];
    const back: number[] = [];
    for (let i = 0; i < warmup + count; i++) {
      const t0 = now();
      const reply = await requester.request<{ n: number }, { n: number; at: number }>(
        requests,
        { n: i },
        { timeout: '10s' },
      );
      const t2 = now();
      if (reply.n !== i) throw new Error(`reply ${reply.n} to request ${i}`);
      if (i < warmup) continue;
      total.push(t2 - t0);
      there.push(reply.at - t0);
      back.push(t2 - reply.at);
    }
    const publishes: number[] = [];
    for (let i = 0; i < warmup + count; i++) {
      const t0 = now();
      await bus.publish(probe, { n: i });
      if (i >= warmup) publishes.push(now() - t0);
    }
    const stats = requester.stats();
    return {
      total: quantiles(total),
      there: quantiles(there),
      back: quantiles(back),
      publish: quantiles(publishes),
      late: stats.lateReplies,
      duplicates: stats.duplicateReplies,
    };
  } finally {
    await requester.close();
    responder.kill('SIGTERM');
    await responder.exited;
    await bus.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

function describe(r: RoundTrips): string {
  return (
    `round trip p50 ${r.total.p50} / p99 ${r.total.p99} ms; request leg (send to handler start) ` +
    `p50 ${r.there.p50} / p99 ${r.there.p99} ms; reply leg (handler start to reply in hand) ` +
    `p50 ${r.back.p50} / p99 ${r.back.p99} ms; one awaited publish p50 ${r.publish.p50} / p99 ` +
    `${r.publish.p99} ms; late replies ${r.late}, duplicates ${r.duplicates}`
  );
}

export async function runRequestReply(options: { quick: boolean }): Promise<Figure[]> {
  const warmup = options.quick ? 300 : 1000;
  const count = options.quick ? 2000 : 10_000;
  log(`request/reply across processes: ${warmup} warm-up requests, then ${count}, one at a time`);
  const disk = await roundTrips(tmpdir(), warmup, count);
  const note = `sequential, ${count} requests after ${warmup} warm-up; ${describe(disk)}`;
  log(note);
  const figures: Figure[] = [
    judge({
      name: 'request/reply across two processes, p50 (ms)',
      value: disk.total.p50,
      unit: 'ms',
      durability: DURABILITY,
      target: { op: '<=', value: 1 },
      note,
    }),
    judge({
      name: 'request/reply across two processes, p99 (ms)',
      value: disk.total.p99,
      unit: 'ms',
      durability: DURABILITY,
      target: { op: '<=', value: 3 },
    }),
    {
      name: 'one awaited publish (a commit and its fsync), p50 (ms)',
      value: disk.publish.p50,
      unit: 'ms',
      durability: DURABILITY,
      note: `p99 ${disk.publish.p99} ms; a round trip holds two such commits (the request and the reply)`,
    },
  ];
  if (existsSync('/dev/shm')) {
    const shm = await roundTrips('/dev/shm', warmup, count);
    log(`on tmpfs: ${describe(shm)}`);
    figures.push({
      name: 'request/reply across two processes on tmpfs (fsync free), p50 (ms)',
      value: shm.total.p50,
      unit: 'ms',
      durability: 'none: tmpfs (for reference: what the two fsyncs cost)',
      note: describe(shm),
    });
  }
  return figures;
}

if (import.meta.main) {
  const figures = await runRequestReply({ quick: process.argv.includes('--quick') });
  process.stdout.write(`${JSON.stringify(figures, null, 2)}\n`);
}

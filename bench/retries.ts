/**
 * What the retry machinery costs a consumer: throughput of one consumer group over the same
 * records on the embedded engine, with retries and dead letters on (the default) against retries
 * and dead letters off, alternating (ABAB…) in one run. Beside them, for the record: 1% of records
 * failing once, and per-key concurrency (8 records of a partition at once).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  connect,
  defineTopic,
  type Eventline,
  type SubscribeOptions,
  silentLogger,
} from '../packages/eventline/src/index.ts';
import { alternate, type Figure, judge, log, median, round } from './lib.ts';

type Options = Omit<SubscribeOptions<ReturnType<typeof bench>>, 'group' | 'topics' | 'handler'>;

const bench = () => defineTopic<{ n: number }>('bench.retries', { partitions: 4, retention: 'forever' });

let groups = 0;

/** Consumes every record once with a fresh group; returns records/s. */
async function consume(bus: Eventline, n: number, options: Options, failEvery = 0): Promise<number> {
  const t = bench();
  let seen = 0;
  const failed = new Set<number>();
  const finished = Promise.withResolvers<void>();
  const t0 = performance.now();
  const sub = bus.subscribe({
    ...options,
    group: `bench-${groups++}`,
    topics: [t],
    fromBeginning: true,
    onError: () => {},
    handler: (m) => {
      const i = m.value.n;
      if (failEvery > 0 && i % failEvery === 0 && !failed.has(i)) {
        failed.add(i);
        throw new Error('fails once');
      }
      if (++seen === n) finished.resolve();
    },
  });
  await finished.promise;
  const rate = n / ((performance.now() - t0) / 1000);
  await sub.stop();
  return rate;
}

export async function runRetries(options: { quick: boolean }): Promise<Figure[]> {
  const n = options.quick ? 50_000 : 200_000;
  const reps = options.quick ? 3 : 5;
  const dir = mkdtempSync(join(tmpdir(), 'eventline-bench-retries-'));
  const bus = await connect(`sqlite:${join(dir, 'events.db')}`, { logger: silentLogger });
  try {
    const t = bench();
    await bus.ensureTopics([t]);
    for (let done = 0; done < n; done += 1000) {
      await bus.publishBatch(
        t,
        Array.from({ length: 1000 }, (_, i) => ({ value: { n: done + i }, key: `key-${(done + i) % 1000}` })),
      );
    }
    await consume(bus, n, {});
    log(`retries: consume ${n} records, retries and dead letters on vs off, x${reps}`);
    const onOff = await alternate(
      reps,
      () => consume(bus, n, {}),
      () => consume(bus, n, { retry: { attempts: 1 }, deadLetter: false }),
    );
    log('retries: 1% of records failing once, and 8 records of a partition at once');
    const failing: number[] = [];
    const perKey: number[] = [];
    for (let r = 0; r < Math.min(reps, 3); r++) {
      failing.push(await consume(bus, n, { retry: { initialDelay: '1ms', jitter: 0 } }, 100));
      perKey.push(await consume(bus, n, { concurrency: { perPartition: 8 } }));
    }
    return [
      judge({
        name: 'consume with retries and dead letters on, no failures',
        value: round(onOff.a),
        unit: 'records/s',
        ratio: { to: 'retries and dead letters off', value: round(onOff.a / onOff.b, 2), target: 0.9 },
        runs: onOff.aRuns.map((x) => round(x)),
        note: `off: ${round(onOff.b)} records/s; the machinery is only entered when a record fails`,
      }),
      {
        name: 'consume with 1% of records failing once (retried after 1 ms)',
        value: round(median(failing)),
        unit: 'records/s',
        runs: failing.map((x) => round(x)),
      },
      {
        name: 'consume with concurrency { perPartition: 8 } (per-key lanes)',
        value: round(median(perKey)),
        unit: 'records/s',
        runs: perKey.map((x) => round(x)),
      },
    ];
  } finally {
    await bus.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * What deduplication costs a consumer on the embedded engine: consume throughput with and without
 * `dedup` (SQLite store on its own file), over the same records in the same run, alternating
 * ABAB… (after one uncounted run of each) and comparing medians. Each run reads the topic from the
 * beginning in a fresh group, with a fresh store file, so every record is looked up and marked
 * once. Measured for a per-record `handler` and for a `batchHandler`.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  bytes,
  connect,
  defineTopic,
  type Eventline,
  silentLogger,
} from '../packages/eventline/src/index.ts';
import { sqliteDedupStore } from '../packages/eventline/src/runtime/dedup-sqlite.ts';
import { settle } from './embedded.ts';
import { alternate, type Figure, judge, log, round } from './lib.ts';

const VALUE = randomBytes(1024);
const BATCH = 1000;

type Shape = 'handler' | 'batchHandler';

/** Consumes the whole topic once in a fresh group; returns records per second. */
async function consume(
  bus: Eventline,
  topic: string,
  n: number,
  shape: Shape,
  dir: string | undefined,
): Promise<number> {
  const store =
    dir === undefined
      ? undefined
      : sqliteDedupStore({ path: join(dir, `${randomBytes(4).toString('hex')}.db`) });
  let seen = 0;
  const finished = Promise.withResolvers<void>();
  const count = (k: number): void => {
    seen += k;
    if (seen === n) finished.resolve();
  };
  const t0 = performance.now();
  const sub = bus.subscribe({
    group: `bench-${randomBytes(4).toString('hex')}`,
    topics: [topic],
    fromBeginning: true,
    ...(store === undefined ? {} : { dedup: { store } }),
    ...(shape === 'handler'
      ? { handler: () => count(1) }
      : { batchHandler: (ms: unknown[]) => count(ms.length) }),
  });
  await finished.promise;
  const rate = n / ((performance.now() - t0) / 1000);
  await sub.stop();
  await store?.close();
  return rate;
}

export async function runDedup(options: { quick: boolean }): Promise<Figure[]> {
  const n = options.quick ? 20_000 : 100_000;
  const reps = options.quick ? 3 : 5;
  const dir = mkdtempSync(join(tmpdir(), 'eventline-bench-dedup-'));
  const bus = await connect(`sqlite:${join(dir, 'events.db')}`, { logger: silentLogger });
  const figures: Figure[] = [];
  try {
    const t = defineTopic('bench.dedup', { value: bytes(), retention: 'forever' });
    await bus.ensureTopics([t]);
    for (let done = 0; done < n; done += BATCH) {
      await bus.publishBatch(
        t,
        Array.from({ length: BATCH }, (_, i) => ({ value: VALUE, key: `key-${(done + i) % 1000}` })),
      );
    }
    for (const shape of ['batchHandler', 'handler'] as const) {
      await settle();
      log(`dedup: ${n} records, ${shape}, with and without a SQLite dedup store`);
      // One run of each first, not counted: the first run of a code path pays for its compilation.
      await consume(bus, t.name, n, shape, dir);
      await consume(bus, t.name, n, shape, undefined);
      const r = await alternate(
        reps,
        () => consume(bus, t.name, n, shape, dir),
        () => consume(bus, t.name, n, shape, undefined),
      );
      figures.push(
        judge({
          name: `consume with dedup, ${shape} (records/s)`,
          value: round(r.a),
          unit: 'records/s',
          durability:
            'marks: SQLite WAL, synchronous=NORMAL (survive a process crash, like the offset commits)',
          ratio: { to: `consume without dedup, ${shape}`, value: round(r.a / r.b, 2), target: 0.75 },
          runs: r.aRuns.map((x) => round(x)),
          note: `baseline ${round(r.b)} records/s (runs ${r.bRuns.map((x) => round(x)).join(', ')})`,
        }),
      );
    }
  } finally {
    await bus.close();
    rmSync(dir, { recursive: true, force: true });
  }
  return figures;
}

if (import.meta.main) {
  process.stdout.write(
    `${JSON.stringify(await runDedup({ quick: process.argv.includes('--quick') }), null, 2)}\n`,
  );
}

/**
 * Benchmarks of the embedded engine against a raw node:sqlite baseline doing the same work in the
 * same run: batched publish, group commit under 64 concurrent publishers, consume, end-to-end
 * latency (open loop, one process and two), and a fresh process's first durable publish.
 *
 * Every Eventline figure is at the engine's only durability level: the WAL is fsync'd before a
 * publish resolves (SQLite WAL mode, synchronous=FULL). The baseline uses the same settings.
 */
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { DatabaseSync } from 'node:sqlite';
import {
  bytes,
  connect,
  defineTopic,
  type Eventline,
  silentLogger,
} from '../packages/eventline/src/index.ts';
import { alternate, type Figure, judge, log, median, percentile, round } from './lib.ts';

const DURABILITY = 'fsync per commit (SQLite WAL, synchronous=FULL)';
const VALUE = randomBytes(1024);
const BATCH = 1000;
/** About the size of the CloudEvents headers Eventline writes, so the baseline stores as much. */
const HEADERS = randomBytes(190);

/**
 * Lets the disk finish the previous test's writes (the OS writes dirty pages back lazily), so one
 * test's leftovers are not billed to the next.
 */
export async function settle(): Promise<void> {
  spawnSync('sync');
  await new Promise((r) => setTimeout(r, 1500));
}

function freshDir(): string {
  return mkdtempSync(join(tmpdir(), 'eventline-bench-'));
}

async function withBus<T>(fn: (bus: Eventline, url: string) => Promise<T>): Promise<T> {
  const dir = freshDir();
  const url = `sqlite:${join(dir, 'events.db')}`;
  const bus = await connect(url, { logger: silentLogger });
  try {
    return await fn(bus, url);
  } finally {
    await bus.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

const topic = (name: string) => defineTopic(name, { value: bytes(), retention: 'forever' });

function items(from: number, n: number) {
  return Array.from({ length: n }, (_, i) => ({ value: VALUE, key: `key-${(from + i) % 1000}` }));
}

// ---- raw node:sqlite baseline ---------------------------------------------------------------

function rawOpen(dir: string): DatabaseSync {
  const db = new DatabaseSync(join(dir, 'raw.db'));
  db.exec('PRAGMA page_size = 16384');
  db.exec('PRAGMA journal_mode = WAL');
  db.exec('PRAGMA synchronous = FULL');
  db.exec('PRAGMA wal_autocheckpoint = 0');
  db.exec('PRAGMA cache_size = -32768');
  db.exec(
    'CREATE TABLE IF NOT EXISTS log (off INTEGER PRIMARY KEY, ts INTEGER NOT NULL, key BLOB, value BLOB, headers BLOB)',
  );
  return db;
}

function rawInsert(db: DatabaseSync, n: number): void {
  const insert = db.prepare('INSERT INTO log (off, ts, key, value, headers) VALUES (?, ?, ?, ?, ?)');
  let off = 0;
  for (let done = 0; done < n; done += BATCH) {
    db.exec('BEGIN');
    for (let i = 0; i < BATCH; i++, off++)
      insert.run(off, Date.now(), Buffer.from(`key-${off % 1000}`), VALUE, HEADERS);
    db.exec('COMMIT');
  }
}

async function rawPublish(n: number): Promise<number> {
  const dir = freshDir();
  const db = rawOpen(dir);
  try {
    const t0 = performance.now();
    rawInsert(db, n);
    return n / ((performance.now() - t0) / 1000);
  } finally {
    db.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

async function rawScan(n: number): Promise<number> {
  const dir = freshDir();
  const db = rawOpen(dir);
  try {
    rawInsert(db, n);
    const select = db.prepare(
      'SELECT off, ts, key, value, headers FROM log WHERE off > ? ORDER BY off LIMIT 1000',
    );
    let seen = 0;
    let bytesSeen = 0;
    const t0 = performance.now();
    for (let after = -1; ; ) {
      const rows = select.all(after) as { off: number; value: Uint8Array }[];
      if (rows.length === 0) break;
      for (const r of rows) bytesSeen += r.value.length;
      seen += rows.length;
      after = Number(rows[rows.length - 1]!.off);
    }
    const rate = seen / ((performance.now() - t0) / 1000);
    if (seen !== n || bytesSeen !== n * VALUE.length) throw new Error('raw scan read the wrong records');
    return rate;
  } finally {
    db.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

// ---- Eventline --------------------------------------------------------------------------------

export async function eventlinePublish(n: number): Promise<number> {
  return withBus(async (bus) => {
    const t = topic('bench.publish');
    await bus.ensureTopics([t]);
    const t0 = performance.now();
    for (let done = 0; done < n; done += BATCH) await bus.publishBatch(t, items(done, BATCH));
    return n / ((performance.now() - t0) / 1000);
  });
}

async function eventlineConcurrent(n: number, publishers: number): Promise<number> {
  return withBus(async (bus) => {
    const t = topic('bench.concurrent');
    await bus.ensureTopics([t]);
    let next = 0;
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: publishers }, async () => {
        while (next < n) {
          const i = next++;
          await bus.publish(t, VALUE, { key: `key-${i % 1000}` });
        }
      }),
    );
    return n / ((performance.now() - t0) / 1000);
  });
}

export async function eventlineConsume(n: number): Promise<number> {
  return withBus(async (bus) => {
    const t = topic('bench.consume');
    await bus.ensureTopics([t]);
    for (let done = 0; done < n; done += BATCH) await bus.publishBatch(t, items(done, BATCH));
    let seen = 0;
    let bytesSeen = 0;
    const finished = Promise.withResolvers<void>();
    const t0 = performance.now();
    const sub = bus.subscribe({
      group: 'bench',
      topics: [t],
      fromBeginning: true,
      handler: (m) => {
        bytesSeen += m.value.length;
        if (++seen === n) finished.resolve();
      },
    });
    await finished.promise;
    const rate = n / ((performance.now() - t0) / 1000);
    await sub.stop();
    if (bytesSeen !== n * VALUE.length) throw new Error('consume read the wrong records');
    return rate;
  });
}

interface Latency {
  p50: number;
  p99: number;
  p999: number;
  max: number;
  achievedRate: number;
  count: number;
}

function summarize(latencies: number[], seconds: number): Latency {
  const s = [...latencies].sort((a, b) => a - b);
  return {
    p50: round(percentile(s, 50), 3),
    p99: round(percentile(s, 99), 3),
    p999: round(percentile(s, 99.9), 3),
    max: round(s[s.length - 1] ?? Number.NaN, 3),
    achievedRate: round(latencies.length / seconds),
    count: latencies.length,
  };
}

function child(script: string, arg: object): { lines: AsyncIterator<string>; exited: Promise<unknown> } {
  const proc = spawn(process.execPath, [new URL(script, import.meta.url).pathname, JSON.stringify(arg)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  return {
    lines: createInterface({ input: proc.stdout! })[Symbol.asyncIterator](),
    exited: new Promise((r) => proc.once('exit', r)),
  };
}

async function nextLine(lines: AsyncIterator<string>, what: string): Promise<string> {
  const r = await lines.next();
  if (r.done) throw new Error(`latency process exited before ${what}`);
  return r.value;
}

/**
 * End-to-end latency in fresh processes (so no garbage from earlier tests is collected during the
 * measurement), after a one-second warm-up that is not counted: `one` runs publisher and consumer
 * in one process, `two` in two processes.
 */
async function latency(mode: 'one' | 'two', rate: number, seconds: number): Promise<Latency> {
  return withBus(async (bus, url) => {
    const t = topic(`bench.latency.${mode}`);
    await bus.ensureTopics([t]);
    const common = { url, topic: t.name, rate, seconds, warmup: 1 };
    const consumer = child('./processes/latency-consumer.ts', {
      ...common,
      mode: mode === 'one' ? 'both' : 'consume',
    });
    await nextLine(consumer.lines, 'ready');
    if (mode === 'two') await child('./processes/latency-consumer.ts', { ...common, mode: 'publish' }).exited;
    const { latencies } = JSON.parse(await nextLine(consumer.lines, 'its result')) as { latencies: number[] };
    await consumer.exited;
    return summarize(latencies, seconds);
  });
}

/**
 * Spawns fresh processes that connect and publish one record. The first run starts with an empty
 * Node compile cache (cold: every TypeScript file is stripped and compiled); later runs reuse it,
 * as a deployed service does from its second start on (NODE_COMPILE_CACHE, see docs/performance.md).
 */
async function freshProcessPublish(
  runs: number,
): Promise<{ coldMs: number; warmMs: number; warmWallMs: number }> {
  const dir = freshDir();
  const url = `sqlite:${join(dir, 'events.db')}`;
  const setup = await connect(url, { logger: silentLogger });
  await setup.ensureTopics([topic('bench.fresh')]);
  await setup.close();
  const inProcess: number[] = [];
  const wall: number[] = [];
  try {
    for (let i = 0; i <= runs; i++) {
      const t0 = performance.now();
      const child = spawn(
        process.execPath,
        [
          new URL('./processes/publish-one.ts', import.meta.url).pathname,
          JSON.stringify({ url, topic: 'bench.fresh' }),
        ],
        {
          stdio: ['ignore', 'pipe', 'inherit'],
          env: { ...process.env, NODE_COMPILE_CACHE: join(dir, 'compile-cache') },
        },
      );
      const line = await createInterface({ input: child.stdout! })[Symbol.asyncIterator]().next();
      wall.push(performance.now() - t0);
      inProcess.push((JSON.parse(line.value as string) as { durableAtMs: number }).durableAtMs);
      await new Promise((r) => child.once('exit', r));
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  return {
    coldMs: round(inProcess[0]!, 1),
    warmMs: round(median(inProcess.slice(1)), 1),
    warmWallMs: round(median(wall.slice(1)), 1),
  };
}

export async function runEmbedded(options: { quick: boolean }): Promise<Figure[]> {
  const reps = options.quick ? 1 : 3;
  const n = options.quick ? 50_000 : 200_000;
  const figures: Figure[] = [];

  log(`publish batched: ${n} records of 1 KiB in batches of ${BATCH}, ${reps} alternating runs`);
  const publish = await alternate(
    reps,
    () => eventlinePublish(n),
    () => rawPublish(n),
  );
  figures.push(
    judge({
      name: 'publish batched (records/s)',
      value: round(publish.a),
      unit: 'records/s',
      durability: DURABILITY,
      target: { op: '>=', value: 150_000 },
      ratio: {
        to: 'raw node:sqlite inserts, row per record',
        value: round(publish.a / publish.b, 2),
        target: 0.7,
      },
      runs: publish.aRuns.map((x) => round(x)),
      note: `baseline ${round(publish.b)} records/s (runs ${publish.bRuns.map((x) => round(x)).join(', ')})`,
    }),
  );

  await settle();
  log('group commit: 64 concurrent publishers awaiting each publish');
  const concurrentRuns: number[] = [];
  for (let i = 0; i < reps; i++)
    concurrentRuns.push(await eventlineConcurrent(options.quick ? 20_000 : 100_000, 64));
  figures.push(
    judge({
      name: '64 concurrent awaiting publishers (records/s)',
      value: round(median(concurrentRuns)),
      unit: 'records/s',
      durability: DURABILITY,
      target: { op: '>=', value: 50_000 },
      runs: concurrentRuns.map((x) => round(x)),
    }),
  );

  await settle();
  log(`consume: ${n} records through a consumer group vs a raw scan`);
  const consume = await alternate(
    reps,
    () => eventlineConsume(n),
    () => rawScan(n),
  );
  figures.push(
    judge({
      name: 'consume (records/s)',
      value: round(consume.a),
      unit: 'records/s',
      durability: 'offsets committed as batches complete',
      target: { op: '>=', value: 250_000 },
      ratio: {
        to: 'raw node:sqlite scan, pages of 1000 rows',
        value: round(consume.a / consume.b, 2),
        target: 0.7,
      },
      runs: consume.aRuns.map((x) => round(x)),
      note: `baseline ${round(consume.b)} records/s (runs ${consume.bRuns.map((x) => round(x)).join(', ')})`,
    }),
  );

  const seconds = 5;
  await settle();
  log(`end-to-end latency at 5000 records/s for ${seconds} s, one process`);
  const one = await latency('one', 5000, seconds);
  figures.push(
    judge({
      name: 'end-to-end latency p99, one process, 5000 records/s open loop (ms)',
      value: one.p99,
      unit: 'ms',
      durability: DURABILITY,
      target: { op: '<=', value: 5 },
      note: JSON.stringify(one),
    }),
  );
  await settle();
  log(`end-to-end latency at 5000 records/s for ${seconds} s, consumer in another process`);
  const two = await latency('two', 5000, seconds);
  figures.push(
    judge({
      name: 'end-to-end latency p99, across processes, 5000 records/s open loop (ms)',
      value: two.p99,
      unit: 'ms',
      durability: DURABILITY,
      target: { op: '<=', value: 15 },
      note: JSON.stringify(two),
    }),
  );

  await settle();
  log('fresh process: start to first durable record');
  const fresh = await freshProcessPublish(options.quick ? 3 : 10);
  figures.push(
    judge({
      name: 'fresh process start to first durable record (ms)',
      value: fresh.warmMs,
      unit: 'ms',
      durability: DURABILITY,
      target: { op: '<=', value: 150 },
      note:
        `median, measured inside the process from its start (performance.now()), with Node's compile cache warm; ` +
        `cold (first start, empty cache): ${fresh.coldMs} ms; spawn to ack seen by the parent: ${fresh.warmWallMs} ms`,
    }),
  );
  return figures;
}

/**
 * View benchmarks on the embedded engine, peer in the same run: `view.get` on random keys of a
 * view holding 100k keys, against a plain `Map.get` holding the same values (the floor any
 * in-memory cache can reach in JavaScript). Also: how long a view takes to become ready from the
 * log, and from its snapshot.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from '../packages/eventline/src/client.ts';
import { silentLogger } from '../packages/eventline/src/observability/logger.ts';
import { createView } from '../packages/eventline/src/patterns/view.ts';
import { defineTopic } from '../packages/eventline/src/topic.ts';
import { type Figure, judge, log, median, percentile, round } from './lib.ts';

interface Product {
  sku: string;
  name: string;
  cents: number;
}

/** Per-call latencies in ns, each call timed on its own with hrtime (the timer's cost included). */
function perCall(get: (key: string) => unknown, keys: string[], picks: Uint32Array): number[] {
  const ns = new Array<number>(picks.length);
  let sink = 0;
  for (let i = 0; i < picks.length; i++) {
    const key = keys[picks[i]!]!;
    const t0 = process.hrtime.bigint();
    const v = get(key);
    const t1 = process.hrtime.bigint();
    if (v !== undefined) sink++;
    ns[i] = Number(t1 - t0);
  }
  if (sink !== picks.length) throw new Error(`only ${sink} of ${picks.length} keys were found`);
  return ns.sort((a, b) => a - b);
}

/** Mean ns per call over blocks of 1000 calls: no timer in the loop. */
function batched(get: (key: string) => unknown, keys: string[], picks: Uint32Array): number {
  let sink = 0;
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < picks.length; i++) if (get(keys[picks[i]!]!) !== undefined) sink++;
  const ns = Number(process.hrtime.bigint() - t0);
  if (sink !== picks.length) throw new Error('keys were missing');
  return ns / picks.length;
}

/** What two back-to-back hrtime reads cost: the floor of every per-call figure. */
function timerFloor(n: number): number {
  const ns = new Array<number>(n);
  for (let i = 0; i < n; i++) {
    const t0 = process.hrtime.bigint();
    ns[i] = Number(process.hrtime.bigint() - t0);
  }
  return median(ns);
}

export async function runViews(options: { quick: boolean }): Promise<Figure[]> {
  const keyCount = 100_000;
  const lookups = options.quick ? 200_000 : 1_000_000;
  const reps = options.quick ? 3 : 7;
  const dir = mkdtempSync(join(tmpdir(), 'eventline-bench-views-'));
  const bus = await connect('sqlite::memory:', { logger: silentLogger });
  const figures: Figure[] = [];
  try {
    const topic = defineTopic<Product>('bench-view-products', {
      partitions: 4,
      cleanupPolicy: 'compact',
      key: (p) => p.sku,
    });
    await bus.ensureTopics([topic]);
    const keys = Array.from({ length: keyCount }, (_, i) => `sku-${i.toString(36).padStart(6, '0')}`);
    log(`views: publishing ${keyCount} keys`);
    for (let i = 0; i < keyCount; i += 5000) {
      await bus.publishBatch(
        topic,
        keys.slice(i, i + 5000).map((sku, j) => ({ value: { sku, name: `Product ${i + j}`, cents: i + j } })),
      );
    }

    const path = join(dir, 'products.db');
    let t0 = performance.now();
    const first = createView(bus, topic, { persist: { path } });
    await first.ready();
    const fromLog = performance.now() - t0;
    await first.close();
    t0 = performance.now();
    const view = createView(bus, topic, { persist: { path } });
    await view.ready();
    const fromSnapshot = performance.now() - t0;
    if (view.stats().restored !== keyCount || view.stats().applied !== 0) {
      throw new Error(`the snapshot restored ${view.stats().restored}, applied ${view.stats().applied}`);
    }
    const map = new Map<string, Product>(view.entries());

    // A fixed random sequence of keys, the same for both sides.
    const picks = new Uint32Array(lookups);
    for (let i = 0; i < lookups; i++) picks[i] = Math.floor(Math.random() * keyCount);
    const viewGet = (k: string) => view.get(k);
    const mapGet = (k: string) => map.get(k);
    // Warm both paths up so neither pays for compilation in the measured runs.
    perCall(viewGet, keys, picks.subarray(0, 50_000));
    perCall(mapGet, keys, picks.subarray(0, 50_000));

    const runs = {
      viewP50: [] as number[],
      viewP99: [] as number[],
      mapP50: [] as number[],
      mapP99: [] as number[],
    };
    const mean = { view: [] as number[], map: [] as number[] };
    for (let r = 0; r < reps; r++) {
      const v = perCall(viewGet, keys, picks);
      const m = perCall(mapGet, keys, picks);
      runs.viewP50.push(percentile(v, 50) / 1000);
      runs.viewP99.push(percentile(v, 99) / 1000);
      runs.mapP50.push(percentile(m, 50) / 1000);
      runs.mapP99.push(percentile(m, 99) / 1000);
      mean.view.push(batched(viewGet, keys, picks));
      mean.map.push(batched(mapGet, keys, picks));
    }
    const floor = timerFloor(100_000);
    const note =
      `each get timed on its own with process.hrtime.bigint (two timer reads cost about ${round(floor)} ns, ` +
      'included in every sample, so these are upper bounds); ' +
      `${lookups} random keys of ${keyCount} per run, median of ${reps} runs, the Map side by side in the same runs`;
    const p99 = median(runs.viewP99);
    figures.push(
      judge({
        name: `view get p99, ${keyCount / 1000}k keys (µs)`,
        value: round(p99, 3),
        unit: 'µs',
        target: { op: '<=', value: 5 },
        ratio: { to: 'plain Map.get p99 on the same keys', value: round(median(runs.mapP99) / p99, 2) },
        note,
        runs: runs.viewP99.map((x) => round(x, 3)),
      }),
      judge({
        name: `view get p50, ${keyCount / 1000}k keys (µs)`,
        value: round(median(runs.viewP50), 3),
        unit: 'µs',
        ratio: {
          to: 'plain Map.get p50 on the same keys',
          value: round(median(runs.mapP50) / median(runs.viewP50), 2),
        },
        note,
      }),
      judge({
        name: 'plain Map.get p99 (peer, µs)',
        value: round(median(runs.mapP99), 3),
        unit: 'µs',
        runs: runs.mapP99.map((x) => round(x, 3)),
      }),
      judge({
        name: 'view get mean, no timer in the loop (ns)',
        value: round(median(mean.view), 1),
        unit: 'ns',
        ratio: { to: 'plain Map.get mean', value: round(median(mean.map) / median(mean.view), 2) },
        note: `${lookups} gets timed as one block; the Map's mean: ${round(median(mean.map), 1)} ns`,
      }),
      judge({
        name: `view ready from the log, ${keyCount / 1000}k keys over 4 partitions (ms)`,
        value: round(fromLog),
        unit: 'ms',
        note: 'includes decoding every record and writing the first snapshot',
      }),
      judge({
        name: `view ready from its snapshot, ${keyCount / 1000}k keys (ms)`,
        value: round(fromSnapshot),
        unit: 'ms',
        ratio: { to: 'ready from the log', value: round(fromLog / fromSnapshot, 2) },
      }),
    );
    await view.close();
  } finally {
    await bus.close();
    rmSync(dir, { recursive: true, force: true });
  }
  return figures;
}

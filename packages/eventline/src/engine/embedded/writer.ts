import type { DatabaseSync } from 'node:sqlite';
import type { AppendRecord, AppendResult } from '../types.ts';
import { type AppendChunk, type AppendUnit, writeUnits } from './append-tx.ts';
import { encodeAppend } from './batch-format.ts';
import type { EmbeddedLog } from './log.ts';
import type { ChangeNotifier } from './notifier.ts';
import { writeTransaction } from './sqlite.ts';

/** Records per stored batch row, and bytes per row: bounds the blob a fetch must read. */
const MAX_BATCH_RECORDS = 2000;
const MAX_BATCH_BYTES = 1024 * 1024;

interface PendingAppend {
  topic: string;
  records: AppendRecord[];
  resolve(results: AppendResult[]): void;
  reject(err: unknown): void;
}

/** Where each record of a unit went: per chunk, the appends and record indexes in order. */
interface UnitRoute {
  requests: PendingAppend[];
  results: Map<PendingAppend, AppendResult[]>;
  chunks: { partition: number; owners: PendingAppend[]; indexes: number[] }[];
}

export interface AppendWriterOptions {
  db: DatabaseSync;
  path: string;
  lockTimeoutMs: number;
  notifier: ChangeNotifier;
  log: EmbeddedLog;
}

/**
 * Turns appends into durable batch rows with group commit: every append requested in one turn of
 * the event loop is validated (each on its own), encoded into one unit per topic with one batch
 * row per partition, and committed in one transaction, so many callers share one fsync.
 *
 * The transaction runs on this thread. A writer thread was measured too: on two cores it made both
 * throughput and tail latency worse (see docs/performance.md), so it is not used.
 */
export class AppendWriter {
  readonly #o: AppendWriterOptions;
  #queue: PendingAppend[] = [];
  #scheduled = false;
  #flushing: Promise<void> | undefined;
  #nextUnit = 0;
  #idle: (() => void)[] = [];

  constructor(options: AppendWriterOptions) {
    this.#o = options;
  }

  append(topic: string, records: AppendRecord[]): Promise<AppendResult[]> {
    return new Promise((resolve, reject) => {
      this.#queue.push({ topic, records, resolve, reject });
      this.#schedule();
    });
  }

  #schedule(): void {
    if (this.#scheduled) return;
    this.#scheduled = true;
    setImmediate(() => this.#tick());
  }

  #tick(): void {
    this.#scheduled = false;
    // One flush at a time; what arrives meanwhile goes into the next.
    if (this.#flushing !== undefined || this.#queue.length === 0) {
      this.#checkIdle();
      return;
    }
    const queue = this.#queue;
    this.#queue = [];
    const units: AppendUnit[] = [];
    const routes = new Map<number, UnitRoute>();
    for (const [topic, requests] of Map.groupBy(queue, (p) => p.topic)) {
      const built = this.#buildUnit(topic, requests);
      if (built === undefined) continue;
      units.push(built.unit);
      routes.set(built.unit.id, built.route);
    }
    if (units.length === 0) {
      this.#checkIdle();
      return;
    }
    this.#flushing = this.#commit(units, routes).finally(() => {
      this.#flushing = undefined;
      if (this.#queue.length > 0) this.#schedule();
      else this.#checkIdle();
    });
  }

  /** Validates one topic's appends (each failing alone), then encodes them into chunks. */
  #buildUnit(topic: string, requests: PendingAppend[]): { unit: AppendUnit; route: UnitRoute } | undefined {
    let meta: ReturnType<EmbeddedLog['requireTopic']>;
    try {
      meta = this.#o.log.requireTopic(topic);
    } catch (err) {
      for (const p of requests) p.reject(err);
      return undefined;
    }
    const route: UnitRoute = { requests: [], results: new Map(), chunks: [] };
    const byPartition = new Map<
      number,
      { records: AppendRecord[]; owners: PendingAppend[]; indexes: number[] }
    >();
    for (const p of requests) {
      try {
        this.#o.log.validate(meta, p.records);
      } catch (err) {
        p.reject(err);
        continue;
      }
      route.requests.push(p);
      route.results.set(p, new Array(p.records.length));
      for (let i = 0; i < p.records.length; i++) {
        const r = p.records[i]!;
        let g = byPartition.get(r.partition);
        if (g === undefined) {
          g = { records: [], owners: [], indexes: [] };
          byPartition.set(r.partition, g);
        }
        g.records.push(r);
        g.owners.push(p);
        g.indexes.push(i);
      }
    }
    if (route.requests.length === 0) return undefined;
    const chunks: AppendChunk[] = [];
    for (const [partition, g] of byPartition) {
      for (let start = 0; start < g.records.length; ) {
        let end = start;
        let bytes = 0;
        let maxTs = Number.MIN_SAFE_INTEGER;
        while (end < g.records.length && end - start < MAX_BATCH_RECORDS && bytes < MAX_BATCH_BYTES) {
          const r = g.records[end]!;
          bytes += (r.key?.length ?? 0) + (r.value?.length ?? 0);
          if (r.timestamp > maxTs) maxTs = r.timestamp;
          end++;
        }
        const firstTs = g.records[start]!.timestamp;
        chunks.push({
          partition,
          count: end - start,
          firstTs,
          maxTs,
          payload: encodeAppend(g.records, start, end, firstTs),
        });
        route.chunks.push({
          partition,
          owners: g.owners.slice(start, end),
          indexes: g.indexes.slice(start, end),
        });
        start = end;
      }
    }
    return {
      unit: { id: ++this.#nextUnit, topic, topicId: meta.id, chunks, fsync: meta.config.fsync !== false },
      route,
    };
  }

  async #commit(units: AppendUnit[], routes: Map<number, UnitRoute>): Promise<void> {
    let outcomes: ReturnType<typeof writeUnits>;
    try {
      // A commit waits for the disk unless every topic in it was declared `fsync: false`; such a
      // commit's WAL frames are made durable by the next fsync'd commit or checkpoint. Every other
      // write on this connection keeps waiting for the disk.
      const lazy = !units.some((u) => u.fsync);
      if (lazy) this.#o.db.exec('PRAGMA synchronous = NORMAL');
      try {
        outcomes = await writeTransaction(
          this.#o.db,
          { lockTimeoutMs: this.#o.lockTimeoutMs, what: `appending to ${this.#o.path}` },
          () => writeUnits(this.#o.db, units),
        );
      } finally {
        if (lazy) this.#o.db.exec('PRAGMA synchronous = FULL');
      }
    } catch (err) {
      for (const route of routes.values()) for (const p of route.requests) p.reject(err);
      return;
    }
    let stored = false;
    for (const o of outcomes) {
      const route = routes.get(o.id)!;
      if (o.bases === undefined) {
        for (const p of route.requests) p.reject(o.error);
        continue;
      }
      stored = true;
      route.chunks.forEach((chunk, k) => {
        const base = o.bases![k]!;
        for (let j = 0; j < chunk.owners.length; j++) {
          route.results.get(chunk.owners[j]!)![chunk.indexes[j]!] = {
            partition: chunk.partition,
            offset: base + j,
          };
        }
      });
      for (const p of route.requests) p.resolve(route.results.get(p)!);
    }
    if (stored) this.#o.notifier.notify();
  }

  #checkIdle(): void {
    if (this.#queue.length > 0 || this.#scheduled || this.#flushing !== undefined) return;
    const idle = this.#idle;
    this.#idle = [];
    for (const fn of idle) fn();
  }

  /** Resolves once every append requested so far has been stored or has failed. */
  drain(): Promise<void> {
    return new Promise((resolve) => {
      this.#idle.push(resolve);
      this.#checkIdle();
    });
  }
}

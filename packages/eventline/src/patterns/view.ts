/**
 * Views: a topic (usually compacted) materialised into memory, last value per key, kept current by
 * following every partition live. Reads are plain Map lookups; the log is the only source of truth.
 * No consumer group is involved: every view reads every partition from its start (or from the
 * offsets of its snapshot).
 */
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { DatabaseSync, type StatementSync } from 'node:sqlite';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Eventline } from '../client.ts';
import { asBuffer, finishTransaction, read, wrapSqliteError } from '../engine/embedded/sqlite.ts';
import type { Engine, StoredRecord } from '../engine/types.ts';
import { EventlineError, fail, isEventlineError } from '../errors.ts';
import { decodeMessage } from '../message.ts';
import { FallbackLog } from '../observability/log-lines.ts';
import { prepareDecode, type TopicCodecs } from '../runtime/codecs.ts';
import type { Topic } from '../topic.ts';
import { type Duration, parseDuration } from '../util/units.ts';

/** What changed in a view: one applied record that set or deleted a key. */
export interface ViewChange<V, K = string> {
  key: K;
  /** The new value; `undefined` when the key was deleted (a tombstone). */
  value: V | undefined;
  /** The value before; `undefined` when the key was new. */
  previous: V | undefined;
  partition: number;
  offset: number;
  /** The record's timestamp (ms since the epoch). */
  timestamp: number;
}

/** Where a problem happened: a record (`partition`, `offset`) or the view as a whole. */
export interface ViewErrorInfo {
  topic: string;
  partition?: number;
  offset?: number;
  /** True for a record that will never decode: it was counted and skipped. */
  poison?: boolean;
}

export interface ViewPersistOptions {
  /** The snapshot file (SQLite). Its folder is created. One view per file: a second opener is refused. */
  path: string;
  /** How often changes are written to the snapshot (also once on becoming ready, and at close). Default `'5s'`. */
  interval?: Duration;
}

export interface ViewOptions<V, K = string> {
  /**
   * Keys the view by a field of the value instead of the record key (for records published without
   * one). A tombstone has no value: it deletes the entry named by its record key.
   */
  keyOf?: (value: V) => K;
  /** Keeps a snapshot so a restart loads it and reads only the records after it. */
  persist?: ViewPersistOptions;
  /**
   * Used by `getOrLoad` while the view is not ready (and only then); every use is counted in
   * `stats().fallbackUses`.
   */
  fallback?: (key: K) => Promise<V | undefined>;
  /** A listener registered before the first record is applied. Same as calling `onChange`. */
  onChange?: (change: ViewChange<V, K>) => void;
  /**
   * Told about records that cannot be decoded (counted and skipped), engine errors (retried) and
   * snapshot failures (retried at the next interval). Default: the client's logger.
   */
  onError?: (error: Error, info: ViewErrorInfo) => void;
}

export interface ViewReadyOptions {
  signal?: AbortSignal;
  /** Rejects with EVENTLINE_ERR_TIMEOUT after this long. Default: no limit. */
  timeout?: Duration;
}

export interface ViewStats {
  /** Keys held. */
  size: number;
  /** Lookups answered by the fallback loader. */
  fallbackUses: number;
  /** Records applied from the log (sets and tombstones), not counting entries restored from a snapshot. */
  applied: number;
  /** Entries loaded from the snapshot at start. */
  restored: number;
  /** Records skipped because they could not be decoded (or `keyOf` threw). */
  decodeErrors: number;
  ready: boolean;
  /** Age of the newest applied record; undefined while the view has applied none. */
  stalenessMs: number | undefined;
}

/**
 * `loading`: reading what the topic held when the view started; `ready`: caught up and following;
 * `failed`: stopped by an error retrying cannot fix (see `ready()`), or the engine was closed under
 * it; `closed`.
 */
export type ViewStatus = 'loading' | 'ready' | 'failed' | 'closed';

export interface ViewState {
  status: ViewStatus;
  /** When it entered this status (ms since the epoch). */
  since: number;
  /** The error that failed it, or the last error while reading fails on every attempt. */
  error?: Error;
  /** Set while reading the topic fails on every attempt: when the first of those failures happened. */
  failingSince?: number;
}

/** A read-only, in-memory replica of a topic: last value per key. */
export interface View<V, K = string> extends Iterable<[K, V]> {
  readonly topic: string;
  /** The value of a key, or undefined. A synchronous Map lookup. */
  get(key: K): V | undefined;
  has(key: K): boolean;
  readonly size: number;
  entries(): IterableIterator<[K, V]>;
  keys(): IterableIterator<K>;
  values(): IterableIterator<V>;
  /**
   * The value of a key. While the view is not ready it asks the `fallback` loader (counted) or,
   * without one, waits until ready. Once ready it is `get`. Rejects with EVENTLINE_ERR_CLOSED when
   * the view closes before it is ready, and with whatever the fallback throws.
   */
  getOrLoad(key: K): Promise<V | undefined>;
  /** Calls `listener` for every applied change; returns a function that unsubscribes it. */
  onChange(listener: (change: ViewChange<V, K>) => void): () => void;
  /**
   * Resolves once every record that existed when the view started has been applied. Rejects with
   * EVENTLINE_ERR_CLOSED when the view closes first, EVENTLINE_ERR_TIMEOUT after `timeout`, the
   * signal's reason when it aborts, or the error that stopped the view from starting
   * (EVENTLINE_ERR_UNKNOWN_TOPIC; EVENTLINE_ERR_INVALID_ARGUMENT for a snapshot of another topic).
   * Passing errors (EVENTLINE_ERR_ENGINE_UNAVAILABLE, a snapshot file another process still holds:
   * EVENTLINE_ERR_ENGINE_BUSY) are reported to `onError` and retried.
   */
  ready(options?: ViewReadyOptions): Promise<void>;
  readonly isReady: boolean;
  /** Milliseconds since the timestamp of the newest applied record; undefined before any. */
  staleness(): number | undefined;
  /** Timestamp of the newest applied (or restored) record. */
  readonly newestTimestamp: number | undefined;
  /**
   * Offsets between the first record the view has not applied and the end, summed over partitions
   * (0 when caught up; Kafka transaction markers and compacted gaps past the last record count as
   * nothing). Asks the engine.
   */
  lag(): Promise<number>;
  stats(): ViewStats;
  /** What the view is doing now, for health checks (`bus.health()`). */
  state(): ViewState;
  /** Writes pending changes to the snapshot now (a no-op without `persist`). */
  flush(): Promise<void>;
  /** Stops following, writes the snapshot, releases it. Idempotent. */
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

interface Entry<V, K> {
  key: K;
  value: V;
  partition: number;
  offset: number;
  timestamp: number;
  /** Bytes as stored, kept only for the snapshot. */
  rawKey: Buffer | null;
  rawValue: Buffer | null;
}

interface PartitionState {
  partition: number;
  position: number;
  /** Ready once the position reaches this (the end offset seen at start), or nothing more is readable. */
  target: number;
  caughtUp: boolean;
  /** A passing decode failure (registry unreachable) holds the partition until then. */
  retryAt: number;
}

const FETCH_MAX = 2000;
const PARTITION_CHECK_MS = 5000;
// A view is what readiness waits for after an outage: retry often enough to come back within seconds.
const MAX_BACKOFF_MS = 5_000;

/**
 * The Map key of a view key: primitives as they are; bytes and objects by their content, so two
 * equal keys decoded from two records find the same entry.
 */
function idOf(key: unknown): unknown {
  if (typeof key !== 'object' || key === null) return key;
  if (key instanceof Uint8Array)
    return `\u0001${Buffer.from(key.buffer, key.byteOffset, key.byteLength).toString('latin1')}`;
  return `\u0002${JSON.stringify(key)}`;
}

/**
 * Materialises `topic` into memory; see {@link View}. The view starts at once; await `ready()`
 * before trusting `get`. A topic given by name gives Buffer values and string keys.
 *
 * Throws EVENTLINE_ERR_INVALID_TOPIC_NAME and EVENTLINE_ERR_INVALID_ARGUMENT (options). Problems
 * found once running (an unknown topic, a closed client) reject `ready()`.
 */
export function createView<V, K>(bus: Eventline, topic: Topic<V, K>, options?: ViewOptions<V, K>): View<V, K>;
export function createView(
  bus: Eventline,
  topic: string,
  options?: ViewOptions<Buffer, string>,
): View<Buffer, string>;
export function createView<V, K>(
  bus: Eventline,
  topic: Topic<V, K> | string,
  options: ViewOptions<V, K> = {},
): View<V, K> {
  const codecs = bus.codecsOf(topic as Topic<unknown, unknown> | string);
  return new ViewRunner<V, K>(bus, codecs, options);
}

class ViewRunner<V, K> implements View<V, K> {
  readonly topic: string;
  readonly #engine: Engine;
  readonly #codecs: TopicCodecs;
  readonly #keyOf: ((value: V) => K) | undefined;
  readonly #fallback: ((key: K) => Promise<V | undefined>) | undefined;
  readonly #onError: (error: Error, info: ViewErrorInfo) => void;
  readonly #listeners = new Set<(change: ViewChange<V, K>) => void>();
  readonly #entries = new Map<unknown, Entry<V, K>>();
  readonly #partitions = new Map<number, PartitionState>();
  readonly #abort = new AbortController();
  readonly #ready = Promise.withResolvers<void>();
  #isReady = false;
  #closing: Promise<void> | undefined;
  #newest: number | undefined;
  #applied = 0;
  #restored = 0;
  #decodeErrors = 0;
  #fallbackUses = 0;
  readonly #fallbackLog: FallbackLog;
  #statusSince = Date.now();
  #failure: Error | undefined;
  #lastError: Error | undefined;
  #failingSince: number | undefined;
  readonly #snapshot: Snapshot | undefined;
  readonly #snapshotEveryMs: number;
  readonly #loop: Promise<void>;

  constructor(bus: Eventline, codecs: TopicCodecs, options: ViewOptions<V, K>) {
    this.topic = codecs.name;
    this.#engine = bus.engine;
    this.#codecs = codecs;
    for (const name of ['keyOf', 'fallback', 'onChange', 'onError'] as const) {
      if (options[name] !== undefined && typeof options[name] !== 'function') {
        fail('EVENTLINE_ERR_INVALID_ARGUMENT', `view of ${this.topic}: ${name} must be a function`);
      }
    }
    if (
      options.persist !== undefined &&
      (typeof options.persist.path !== 'string' || options.persist.path === '')
    ) {
      fail(
        'EVENTLINE_ERR_INVALID_ARGUMENT',
        `view of ${this.topic}: persist.path must be a non-empty string`,
      );
    }
    this.#keyOf = options.keyOf;
    this.#fallback = options.fallback;
    this.#fallbackLog = new FallbackLog(bus.logger, this.topic);
    this.#snapshotEveryMs = parseDuration(options.persist?.interval ?? '5s', 'persist.interval');
    this.#snapshot = options.persist ? new Snapshot(options.persist.path, this.topic) : undefined;
    if (options.onChange) this.#listeners.add(options.onChange);
    this.#onError =
      options.onError ??
      ((err, info) => bus.logger.warn({ err, ...info }, `view of ${this.topic}: ${err.message}`));
    // Nobody may be waiting on ready(): a failure is reported there when someone asks.
    this.#ready.promise.catch(() => {});
    this.#loop = this.#run();
  }

  // ---- reads ----------------------------------------------------------------------------------

  get(key: K): V | undefined {
    return this.#entries.get(typeof key === 'object' && key !== null ? idOf(key) : key)?.value;
  }

  has(key: K): boolean {
    return this.#entries.has(typeof key === 'object' && key !== null ? idOf(key) : key);
  }

  get size(): number {
    return this.#entries.size;
  }

  *entries(): IterableIterator<[K, V]> {
    for (const e of this.#entries.values()) yield [e.key, e.value];
  }

  *keys(): IterableIterator<K> {
    for (const e of this.#entries.values()) yield e.key;
  }

  *values(): IterableIterator<V> {
    for (const e of this.#entries.values()) yield e.value;
  }

  [Symbol.iterator](): IterableIterator<[K, V]> {
    return this.entries();
  }

  async getOrLoad(key: K): Promise<V | undefined> {
    if (!this.#isReady) {
      if (this.#fallback === undefined) await this.#ready.promise;
      else {
        this.#fallbackUses++;
        this.#fallbackLog.used();
        return this.#fallback(key);
      }
    }
    return this.get(key);
  }

  onChange(listener: (change: ViewChange<V, K>) => void): () => void {
    if (typeof listener !== 'function')
      fail('EVENTLINE_ERR_INVALID_ARGUMENT', 'onChange: listener must be a function');
    this.#listeners.add(listener);
    return () => {
      this.#listeners.delete(listener);
    };
  }

  ready(options: ViewReadyOptions = {}): Promise<void> {
    const { signal } = options;
    const timeoutMs = options.timeout === undefined ? undefined : parseDuration(options.timeout, 'timeout');
    if (this.#isReady || (signal === undefined && timeoutMs === undefined)) return this.#ready.promise;
    if (signal?.aborted) return Promise.reject(signal.reason);
    return new Promise<void>((resolve, reject) => {
      const timer =
        timeoutMs === undefined
          ? undefined
          : setTimeout(
              () =>
                settle(() =>
                  reject(
                    new EventlineError(
                      'EVENTLINE_ERR_TIMEOUT',
                      `view of ${this.topic} was not ready after ${timeoutMs} ms (${this.#behind()})`,
                    ),
                  ),
                ),
              timeoutMs,
            );
      const onAbort = (): void => settle(() => reject(signal!.reason));
      const settle = (fn: () => void): void => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        fn();
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.#ready.promise.then(
        () => settle(resolve),
        (err: unknown) => settle(() => reject(err)),
      );
    });
  }

  get isReady(): boolean {
    return this.#isReady;
  }

  staleness(): number | undefined {
    return this.#newest === undefined ? undefined : Math.max(0, Date.now() - this.#newest);
  }

  get newestTimestamp(): number | undefined {
    return this.#newest;
  }

  async lag(): Promise<number> {
    let lag = 0;
    for (const b of await this.#engine.listOffsets(this.topic)) {
      const position = this.#partitions.get(b.partition)?.position ?? b.start;
      if (b.end <= position) continue;
      // What lies past the position may be only Kafka transaction markers or compacted gaps.
      const next = await this.#engine.fetch(this.topic, b.partition, position, { maxRecords: 1 });
      if (next.length > 0) lag += b.end - next[0]!.offset;
    }
    return lag;
  }

  stats(): ViewStats {
    return {
      size: this.#entries.size,
      fallbackUses: this.#fallbackUses,
      applied: this.#applied,
      restored: this.#restored,
      decodeErrors: this.#decodeErrors,
      ready: this.#isReady,
      stalenessMs: this.staleness(),
    };
  }

  state(): ViewState {
    const status: ViewStatus =
      this.#failure !== undefined
        ? 'failed'
        : this.#closing !== undefined
          ? 'closed'
          : this.#isReady
            ? 'ready'
            : 'loading';
    const error = this.#failure ?? (this.#failingSince === undefined ? undefined : this.#lastError);
    return {
      status,
      since: this.#statusSince,
      ...(error === undefined ? {} : { error }),
      ...(this.#failingSince === undefined ? {} : { failingSince: this.#failingSince }),
    };
  }

  /** A read of the topic failed (`err`), or succeeded (undefined). */
  #attempted(err?: unknown): void {
    if (err === undefined) this.#failingSince = undefined;
    else {
      this.#lastError = err instanceof Error ? err : new Error(String(err));
      this.#failingSince ??= Date.now();
    }
  }

  async flush(): Promise<void> {
    if (this.#snapshot?.isOpen) this.#writeSnapshot();
  }

  close(): Promise<void> {
    if (this.#closing === undefined && this.#failure === undefined) this.#statusSince = Date.now();
    this.#closing ??= (async () => {
      this.#abort.abort();
      await this.#loop;
      if (!this.#isReady) {
        this.#ready.reject(
          new EventlineError('EVENTLINE_ERR_CLOSED', `view of ${this.topic} was closed before it was ready`),
        );
      }
      if (this.#snapshot?.isOpen) {
        this.#writeSnapshot();
        this.#snapshot.close();
      }
    })();
    return this.#closing;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }

  // ---- following the log ----------------------------------------------------------------------

  async #run(): Promise<void> {
    // Let the caller register listeners before anything (the snapshot too) is applied.
    await Promise.resolve();
    const signal = this.#abort.signal;
    for (let backoff = 100; ; backoff = Math.min(MAX_BACKOFF_MS, backoff * 2)) {
      try {
        await this.#start();
        break;
      } catch (err) {
        // Passing troubles (an engine or a snapshot file still held by a process going away) are
        // retried; anything else means this view cannot work.
        if (!signal.aborted && isEventlineError(err) && err.retryable) {
          this.#report(err, {});
          this.#attempted(err);
          this.#snapshot?.close();
          await sleepUnless(backoff, signal);
          continue;
        }
        this.#ready.reject(
          signal.aborted
            ? new EventlineError(
                'EVENTLINE_ERR_CLOSED',
                `view of ${this.topic} was closed before it was ready`,
              )
            : err,
        );
        if (!signal.aborted) this.#fail(err);
        this.#snapshot?.close();
        this.#abort.abort();
        return;
      }
    }
    const watch = this.#engine.watch();
    let checkedPartitions = Date.now();
    let snapshotAt = Date.now();
    let backoff = 0;
    while (!signal.aborted) {
      let got: number;
      try {
        if (Date.now() - checkedPartitions > PARTITION_CHECK_MS) {
          checkedPartitions = Date.now();
          await this.#addPartitions();
        }
        got = await this.#round();
        backoff = 0;
        this.#attempted();
      } catch (err) {
        if (signal.aborted) break;
        if (isEventlineError(err, 'EVENTLINE_ERR_CLOSED')) {
          // The client closed under the view: stop, keep what was applied.
          this.#fail(err);
          void this.close();
          break;
        }
        this.#report(err, {});
        this.#attempted(err);
        backoff = Math.min(MAX_BACKOFF_MS, backoff === 0 ? 100 : backoff * 2);
        await sleepUnless(backoff, signal);
        continue;
      }
      if (!this.#isReady && [...this.#partitions.values()].every((p) => p.caughtUp)) this.#becomeReady();
      if (this.#snapshot?.isOpen && Date.now() - snapshotAt >= this.#snapshotEveryMs) {
        snapshotAt = Date.now();
        this.#writeSnapshot();
      }
      if (got === 0) await watch.wait(this.#nextRetryIn(), signal);
    }
  }

  /** Loads the snapshot and sets each partition's position and readiness target. */
  async #start(): Promise<void> {
    const bounds = await this.#engine.listOffsets(this.topic);
    const restored = this.#snapshot?.open();
    let positions = restored?.positions;
    // A snapshot from before the log was truncated or recreated cannot be trusted: rebuild.
    if (positions !== undefined) {
      for (const b of bounds) {
        const at = positions.get(b.partition);
        if (at !== undefined && (at > b.end || at < b.start)) {
          this.#report(
            new Error(
              `the snapshot ${this.#snapshot!.path} is at offset ${at} of partition ${b.partition}, outside the log (${b.start}..${b.end}); rebuilding from the log`,
            ),
            { partition: b.partition },
          );
          this.#snapshot!.clear();
          positions = undefined;
          break;
        }
      }
    }
    if (positions !== undefined && restored !== undefined) {
      const pending = prepareDecode(this.#codecs, restored.records);
      if (pending !== undefined && (await untilAborted(pending, this.#abort.signal)) === undefined) return;
      for (const r of restored.records) this.#apply(r, true);
    }
    for (const b of bounds) {
      const position = positions?.get(b.partition) ?? b.start;
      this.#partitions.set(b.partition, {
        partition: b.partition,
        position,
        target: b.end,
        caughtUp: position >= b.end,
        retryAt: 0,
      });
    }
    if ([...this.#partitions.values()].every((p) => p.caughtUp)) this.#becomeReady();
  }

  /** Partitions added to the topic while following start at their start and are caught up at once. */
  async #addPartitions(): Promise<void> {
    if ((await this.#engine.partitionCount(this.topic)) <= this.#partitions.size) return;
    for (const b of await this.#engine.listOffsets(this.topic)) {
      if (this.#partitions.has(b.partition)) continue;
      this.#partitions.set(b.partition, {
        partition: b.partition,
        position: b.start,
        target: b.start,
        caughtUp: true,
        retryAt: 0,
      });
    }
  }

  /** One fetch from every partition (in parallel: on Kafka each is a round trip); returns records read. */
  async #round(): Promise<number> {
    const now = Date.now();
    const states = [...this.#partitions.values()].filter((p) => p.retryAt <= now);
    const signal = this.#abort.signal;
    const fetched = await untilAborted(
      Promise.all(
        states.map((p) => this.#engine.fetch(this.topic, p.partition, p.position, { maxRecords: FETCH_MAX })),
      ),
      signal,
    );
    if (fetched === undefined) return 0;
    const pending = fetched.map((records) => prepareDecode(this.#codecs, records));
    if (
      pending.some((p) => p !== undefined) &&
      (await untilAborted(Promise.all(pending), signal)) === undefined
    ) {
      return 0;
    }
    let got = 0;
    for (let i = 0; i < states.length; i++) {
      if (this.#abort.signal.aborted) break;
      const st = states[i]!;
      const records = fetched[i]!;
      got += records.length;
      // Nothing readable from here on: whatever existed at start (markers and gaps aside) is applied.
      if (records.length === 0) st.caughtUp = true;
      for (const r of records) {
        if (r.offset < st.position) continue;
        if (!this.#apply(r, false)) {
          st.retryAt = Date.now() + 1000;
          break;
        }
        st.position = r.offset + 1;
      }
      if (st.position >= st.target) st.caughtUp = true;
    }
    return got;
  }

  #nextRetryIn(): number {
    let next = 1000;
    const now = Date.now();
    for (const p of this.#partitions.values()) if (p.retryAt > now) next = Math.min(next, p.retryAt - now);
    return next;
  }

  /**
   * Applies one record. Returns false when it must be tried again later (a passing decode failure);
   * a record that will never decode is counted, reported and passed over.
   */
  #apply(r: StoredRecord, restoring: boolean): boolean {
    let key: K | null;
    let value: V | null;
    try {
      const m = decodeMessage(r, this.#codecs.value, this.#codecs.key);
      value = m.value as V | null;
      key = value !== null && this.#keyOf !== undefined ? this.#keyOf(value) : (m.key as K | null);
    } catch (err) {
      const passing = isEventlineError(err, 'EVENTLINE_ERR_DECODE') && err.retryable;
      if (passing && !restoring) {
        this.#report(err, { partition: r.partition, offset: r.offset });
        return false;
      }
      this.#decodeErrors++;
      this.#report(err, { partition: r.partition, offset: r.offset, poison: true });
      return true;
    }
    if (key === null || key === undefined) {
      this.#decodeErrors++;
      this.#report(
        new EventlineError(
          'EVENTLINE_ERR_INVALID_RECORD',
          `${r.topic}/${r.partition}@${r.offset}: the record has no key${this.#keyOf ? ' and keyOf gave none' : ''}; a view needs one`,
        ),
        { partition: r.partition, offset: r.offset, poison: true },
      );
      return true;
    }
    if (restoring) this.#restored++;
    else this.#applied++;
    if (this.#newest === undefined || r.timestamp > this.#newest) this.#newest = r.timestamp;
    const id = idOf(key);
    const before = this.#entries.get(id);
    if (value === null) {
      if (before === undefined) return true;
      this.#entries.delete(id);
      this.#snapshot?.dirty.set(id, null);
    } else {
      const persisting = this.#snapshot !== undefined;
      const entry: Entry<V, K> = {
        key,
        value,
        partition: r.partition,
        offset: r.offset,
        timestamp: r.timestamp,
        // Fetched buffers may be views into a larger block: copy what is kept (rows read back
        // from the snapshot are already buffers of their own).
        rawKey: persisting && r.key !== null ? (restoring ? r.key : Buffer.from(r.key)) : null,
        rawValue: persisting && r.value !== null ? (restoring ? r.value : Buffer.from(r.value)) : null,
      };
      this.#entries.set(id, entry);
      if (!restoring) this.#snapshot?.dirty.set(id, entry);
    }
    if (this.#listeners.size > 0) {
      this.#emit({
        key,
        value: value ?? undefined,
        previous: before?.value,
        partition: r.partition,
        offset: r.offset,
        timestamp: r.timestamp,
      });
    }
    return true;
  }

  #emit(change: ViewChange<V, K>): void {
    for (const listener of this.#listeners) {
      try {
        listener(change);
      } catch (err) {
        this.#report(err, { partition: change.partition, offset: change.offset });
      }
    }
  }

  #fail(err: unknown): void {
    this.#failure = err instanceof Error ? err : new Error(String(err));
    this.#statusSince = Date.now();
  }

  #becomeReady(): void {
    this.#isReady = true;
    this.#fallbackLog.ready();
    this.#statusSince = Date.now();
    this.#ready.resolve();
    // The first full load is the expensive part of a restart: keep it at once.
    if (this.#snapshot?.isOpen) this.#writeSnapshot();
  }

  #writeSnapshot(): void {
    try {
      this.#snapshot!.write(this.#partitions.values());
    } catch (err) {
      this.#report(err, {});
    }
  }

  #behind(): string {
    const behind = [...this.#partitions.values()].filter((p) => !p.caughtUp);
    return behind.length === 0
      ? 'not started'
      : behind.map((p) => `partition ${p.partition} at ${p.position} of ${p.target}`).join(', ');
  }

  #report(err: unknown, info: Omit<ViewErrorInfo, 'topic'>): void {
    try {
      this.#onError(err instanceof Error ? err : new Error(String(err)), { topic: this.topic, ...info });
    } catch {
      // an error reporter that throws must not stop the view
    }
  }
}

/** Settles with the promise's value, or with undefined as soon as the signal aborts (close never waits on a stuck read). */
function untilAborted<T>(promise: Promise<T>, signal: AbortSignal): Promise<T | undefined> {
  if (signal.aborted) return Promise.resolve(undefined);
  return new Promise<T | undefined>((resolve, reject) => {
    const onAbort = (): void => resolve(undefined);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (err: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(err);
      },
    );
  });
}

/** Waits `ms`, or less when the signal aborts. */
function sleepUnless(ms: number, signal: AbortSignal): Promise<void> {
  return sleep(ms, undefined, { signal }).catch(() => {});
}

/** The Map key of a view key, as stored in the snapshot's primary key. */
function storedId(id: unknown): string {
  return typeof id === 'string' ? id : `\u0000${typeof id}:${String(id)}`;
}

const SNAPSHOT_VERSION = '1';
const NO_HEADERS: readonly never[] = [];

/**
 * A view's snapshot: raw key and value bytes per key, and the next offset of each partition,
 * written together in one transaction so they always agree. Only changed keys are written.
 */
class Snapshot {
  readonly path: string;
  readonly #topic: string;
  #db: DatabaseSync | undefined;
  #upsert: StatementSync | undefined;
  #remove: StatementSync | undefined;
  #setOffset: StatementSync | undefined;
  /** The positions last written, to skip writes that would change nothing. */
  #writtenAt = '';
  /** Keys changed since the last write; null means deleted. */
  readonly dirty = new Map<unknown, Entry<unknown, unknown> | null>();

  constructor(path: string, topic: string) {
    this.path = path;
    this.#topic = topic;
  }

  get isOpen(): boolean {
    return this.#db !== undefined;
  }

  /** Opens (or creates) the file; returns its records and positions, if it has any. */
  open(): { positions: Map<number, number>; records: StoredRecord[] } | undefined {
    const where = `opening the view snapshot ${this.path}`;
    try {
      mkdirSync(dirname(this.path), { recursive: true });
    } catch (err) {
      throw new EventlineError('EVENTLINE_ERR_ENGINE_UNAVAILABLE', `${where}: cannot create its folder`, {
        cause: err,
      });
    }
    const db = read(where, () => new DatabaseSync(this.path));
    this.#db = db;
    try {
      read(where, () => {
        // Exclusive: two views writing one snapshot would each overwrite the other's offsets.
        db.exec('PRAGMA locking_mode = EXCLUSIVE');
        db.exec('PRAGMA journal_mode = WAL');
        db.exec('PRAGMA synchronous = NORMAL');
        db.exec(`CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
          CREATE TABLE IF NOT EXISTS offsets (partition INTEGER PRIMARY KEY, next INTEGER NOT NULL);
          CREATE TABLE IF NOT EXISTS entries (id TEXT PRIMARY KEY, key BLOB, value BLOB NOT NULL,
            partition INTEGER NOT NULL, offset INTEGER NOT NULL, timestamp INTEGER NOT NULL) WITHOUT ROWID;`);
      });
      const meta = new Map(
        (db.prepare('SELECT name, value FROM meta').all() as { name: string; value: string }[]).map((r) => [
          r.name,
          r.value,
        ]),
      );
      const topic = meta.get('topic');
      if (topic !== undefined && topic !== this.#topic) {
        fail(
          'EVENTLINE_ERR_INVALID_ARGUMENT',
          `the view snapshot ${this.path} belongs to topic ${topic}, not ${this.#topic}; give each view its own file`,
        );
      }
      if (meta.get('version') !== undefined && meta.get('version') !== SNAPSHOT_VERSION) {
        fail(
          'EVENTLINE_ERR_INVALID_ARGUMENT',
          `the view snapshot ${this.path} has an unknown format version`,
        );
      }
      db.exec('BEGIN');
      finishTransaction(db, where, () => {
        const set = db.prepare('INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)');
        set.run('topic', this.#topic);
        set.run('version', SNAPSHOT_VERSION);
      });
      this.#upsert = db.prepare(
        'INSERT OR REPLACE INTO entries (id, key, value, partition, offset, timestamp) VALUES (?, ?, ?, ?, ?, ?)',
      );
      this.#remove = db.prepare('DELETE FROM entries WHERE id = ?');
      this.#setOffset = db.prepare('INSERT OR REPLACE INTO offsets (partition, next) VALUES (?, ?)');
      return read(where, () => {
        const rows = db.prepare('SELECT partition, next FROM offsets').all() as {
          partition: number;
          next: number;
        }[];
        if (rows.length === 0) return undefined;
        const positions = new Map(rows.map((r) => [r.partition, r.next]));
        const records: StoredRecord[] = [];
        // Key order (the table's own): sorting by offset would cost a temporary b-tree.
        const stmt = db.prepare('SELECT key, value, partition, offset, timestamp FROM entries');
        stmt.setReturnArrays(true);
        for (const row of stmt.iterate() as Iterable<
          [Uint8Array | null, Uint8Array, number, number, number]
        >) {
          records.push({
            topic: this.#topic,
            partition: row[2],
            offset: row[3],
            timestamp: row[4],
            key: row[0] === null ? null : asBuffer(row[0]),
            value: asBuffer(row[1]),
            headers: NO_HEADERS,
          });
        }
        return { positions, records };
      });
    } catch (err) {
      this.close();
      throw err;
    }
  }

  /** Forgets everything (the snapshot no longer matches the log). */
  clear(): void {
    const db = this.#db!;
    db.exec('BEGIN');
    finishTransaction(db, `clearing the view snapshot ${this.path}`, () => {
      db.exec('DELETE FROM entries; DELETE FROM offsets;');
    });
  }

  write(partitions: Iterable<PartitionState>): void {
    const db = this.#db;
    if (db === undefined) return;
    const states = [...partitions];
    const at = states.map((p) => `${p.partition}:${p.position}`).join(',');
    if (this.dirty.size === 0 && at === this.#writtenAt) return;
    db.exec('BEGIN');
    finishTransaction(db, `writing the view snapshot ${this.path}`, () => {
      for (const [id, entry] of this.dirty) {
        if (entry === null) this.#remove!.run(storedId(id));
        else {
          this.#upsert!.run(
            storedId(id),
            entry.rawKey,
            entry.rawValue,
            entry.partition,
            entry.offset,
            entry.timestamp,
          );
        }
      }
      for (const p of states) this.#setOffset!.run(p.partition, p.position);
    });
    this.dirty.clear();
    this.#writtenAt = at;
  }

  close(): void {
    const db = this.#db;
    this.#db = undefined;
    if (db === undefined) return;
    try {
      db.close();
    } catch (err) {
      throw wrapSqliteError(err, `closing the view snapshot ${this.path}`);
    }
  }
}

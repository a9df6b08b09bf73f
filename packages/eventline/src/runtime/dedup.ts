import type { StoredRecord } from '../engine/types.ts';
import { redactUrl } from '../engine/url.ts';
import type { Message } from '../message.ts';
import { type Duration, parseDuration } from '../util/units.ts';

/**
 * Where a consumer group remembers the event ids (`ce_id`) it has processed. Implementations:
 * `sqliteDedupStore` (the embedded engine's natural choice), `redisDedupStore` and
 * `postgresDedupStore`. A store may be shared by many groups and many processes: marks are kept
 * per group.
 */
export interface DedupStore {
  /** Shown in logs and errors (`sqlite:…`, `redis://host:port`, `postgres://host/db`), no secrets. */
  readonly description: string;
  /** True when `group` has marked `id` as processed and the mark has not expired. */
  has(group: string, id: string): Promise<boolean>;
  /** Marks `id` as processed by `group` for `ttlMs`. Marking an id that is marked already is a no-op. */
  mark(group: string, id: string, ttlMs: number): Promise<void>;
  /**
   * The ids among `ids` that `group` has marked (unexpired), in one round trip. Optional: without
   * it the batch wrappers call `has` per id.
   */
  hasMany?(group: string, ids: readonly string[]): Promise<Set<string>>;
  /**
   * Marks every id of `ids` at once (one transaction or one pipelined round trip), durably before it
   * resolves. Optional: without it the batch wrappers call `mark` per id.
   */
  markMany?(group: string, ids: readonly string[], ttlMs: number): Promise<void>;
  /** Releases what the store opened itself (a connection it was handed is left open). */
  close(): Promise<void>;
}

export interface DedupOptions {
  store: DedupStore;
  /** How long an id is remembered. Default `'7d'`. */
  ttl?: Duration;
  /** Told about every record skipped because its id was already processed. */
  onDuplicate?: (message: Message<unknown, unknown>) => void;
  /**
   * Handled ids are marked in batches, at most this long after their handler (and always before
   * their offsets are committed). Default `'2ms'`; `'0ms'` marks at the next turn of the event loop.
   */
  markDelay?: Duration;
}

/**
 * What `processOnce` of a SQL store reports: the function ran and its writes committed together
 * with the mark, or the id was marked already and the function did not run.
 */
export type ProcessOnceResult<T> = { duplicate: false; value: T } | { duplicate: true };

/**
 * What the SQL stores add to {@link DedupStore}: the handler's writes and the mark in one
 * transaction (`Tx` is what the handler writes through), and an explicit purge.
 */
export interface TransactionalDedupStore<Tx> extends DedupStore {
  /**
   * Runs `fn` and marks `id` for `group` in one database transaction: both commit or neither does.
   * When `id` is marked already, `fn` does not run and the result says `duplicate: true`. If `fn`
   * throws, the transaction is rolled back and the error rethrown. The later `mark` by the
   * `subscribe({ dedup })` wrapper is then a no-op.
   */
  processOnce<T>(
    group: string,
    id: string,
    ttlMs: number,
    fn: (tx: Tx) => T | Promise<T>,
  ): Promise<ProcessOnceResult<Awaited<T>>>;
  /**
   * Deletes expired marks now; returns how many rows went (the SQLite store keeps the marks written
   * together by `markMany` in one row). Runs by itself every `purgeInterval`.
   */
  purge(): Promise<number>;
}

/**
 * Wraps a handler so that a record whose `ce_id` the group already processed is skipped, and a
 * record is marked right after its handler succeeds (before its offset is committed): a crash
 * between the mark and the offset commit redelivers a record that is then skipped. A crash between
 * the handler's end and the mark (a few microseconds) can still repeat it; `processOnce` of the SQL
 * stores closes that window. Records without an id are always handled.
 *
 * @throws what the store throws (EVENTLINE_ERR_ENGINE_BUSY, EVENTLINE_ERR_ENGINE_UNAVAILABLE, …):
 * the record is then delivered again.
 */
export function withDedup<M extends Message<unknown, unknown>, C>(
  handler: (message: M, context: C) => unknown,
  options: DedupOptions,
  group: string,
): (message: M, context: C) => Promise<void> {
  const ttlMs = dedupTtl(options);
  const { store, onDuplicate } = options;
  return async (message, context) => {
    const id = message.id;
    if (id === undefined) {
      await handler(message, context);
      return;
    }
    if (await store.has(group, id)) {
      onDuplicate?.(message);
      return;
    }
    await handler(message, context);
    await store.mark(group, id, ttlMs);
  };
}

/**
 * As {@link withDedup}, for batch handlers: ids already processed (and repeats of an id within the
 * batch) are left out of the batch; the rest are looked up and marked with one call each to the
 * store's `hasMany` and `markMany`.
 */
export function withBatchDedup<M extends Message<unknown, unknown>, C>(
  handler: (messages: M[], context: C) => unknown,
  options: DedupOptions,
  group: string,
): (messages: M[], context: C) => Promise<void> {
  const ttlMs = dedupTtl(options);
  const { store, onDuplicate } = options;
  return async (messages, context) => {
    const ids: string[] = [];
    for (const m of messages) {
      const id = m.id;
      if (id !== undefined) ids.push(id);
    }
    const marked = ids.length === 0 ? new Set<string>() : await hasMany(store, group, ids);
    const fresh: M[] = [];
    const freshIds: string[] = [];
    for (const m of messages) {
      const id = m.id;
      if (id === undefined) fresh.push(m);
      else if (marked.has(id)) onDuplicate?.(m);
      else {
        // A repeat later in the same batch is a duplicate of this one.
        marked.add(id);
        fresh.push(m);
        freshIds.push(id);
      }
    }
    if (fresh.length === 0) return;
    await handler(fresh, context);
    if (freshIds.length > 0) await markMany(store, group, freshIds, ttlMs);
  };
}

/** The `ce_id` of a stored record, read without decoding its other headers where the engine can. */
export function eventIdOf(record: StoredRecord): string | undefined {
  if (record.headerText !== undefined) return record.headerText('ce_id');
  for (const [name, value] of record.headers) if (name === 'ce_id') return value.toString('latin1');
  return undefined;
}

/**
 * The consumer runtime's dedup: one `hasMany` per fetched batch before any handler runs, and the
 * ids of handled records marked in batches: within `markDelay` of their handler, and always before
 * the offsets that cover them are committed (the runtime awaits `flush()` before each commit).
 * A crash can therefore repeat only a record handled in the last `markDelay`; `processOnce` of the
 * SQL stores leaves no window at all.
 */
export class DedupGate {
  readonly #store: DedupStore;
  readonly #group: string;
  readonly #ttlMs: number;
  readonly #delayMs: number;
  readonly onDuplicate: ((message: Message<unknown, unknown>) => void) | undefined;
  /** Handled, not yet handed to a flush. */
  #pending = new Set<string>();
  /** Being marked by the flush in progress. */
  #writing: Set<string> | undefined;
  #inFlight: Promise<void> | undefined;
  /** A flush asked for while one runs: it starts when that one ends and takes all that is pending. */
  #queued: Promise<void> | undefined;
  #timer: NodeJS.Timeout | undefined;
  #failure: unknown;

  constructor(options: DedupOptions, group: string) {
    this.#store = options.store;
    this.#group = group;
    this.#ttlMs = dedupTtl(options);
    this.#delayMs = parseDuration(options.markDelay ?? '2ms', 'dedup.markDelay');
    this.onDuplicate = options.onDuplicate;
  }

  /** Ids among these records that were processed already (marked, or handled and about to be). */
  async seen(ids: readonly string[]): Promise<Set<string>> {
    const found = ids.length === 0 ? new Set<string>() : await hasMany(this.#store, this.#group, ids);
    for (const id of ids) if (this.pending(id)) found.add(id);
    return found;
  }

  /** True when this id was handled and its mark is still on its way. */
  pending(id: string): boolean {
    return this.#pending.has(id) || this.#writing?.has(id) === true;
  }

  /** A record with this id was handled. */
  handled(id: string): void {
    this.#pending.add(id);
    if (this.#pending.size >= 1000) void this.flush().catch(() => {});
    else this.#timer ??= setTimeout(() => void this.flush().catch(() => {}), this.#delayMs);
  }

  /** Writes every pending mark durably; rejects when the store fails (the commit must wait then). */
  flush(): Promise<void> {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#inFlight === undefined) return this.#flushNow();
    const after = (): Promise<void> => {
      this.#queued = undefined;
      return this.#flushNow();
    };
    this.#queued ??= this.#inFlight.then(after, after);
    return this.#queued;
  }

  #flushNow(): Promise<void> {
    const batch = this.#pending;
    this.#pending = new Set();
    this.#writing = batch;
    const run = (async () => {
      try {
        if (batch.size > 0) await markMany(this.#store, this.#group, [...batch], this.#ttlMs);
        this.#failure = undefined;
      } catch (err) {
        // Not marked: they go with the next flush.
        for (const id of batch) this.#pending.add(id);
        this.#failure = err;
        throw err;
      } finally {
        this.#writing = undefined;
        this.#inFlight = undefined;
      }
    })();
    this.#inFlight = run.catch(() => {});
    return run;
  }

  /** The last flush failure, if the store has not answered since. */
  get failure(): unknown {
    return this.#failure;
  }

  close(): void {
    clearTimeout(this.#timer);
  }
}

function dedupTtl(options: DedupOptions): number {
  return parseDuration(options.ttl ?? '7d', 'dedup.ttl');
}

async function hasMany(store: DedupStore, group: string, ids: readonly string[]): Promise<Set<string>> {
  if (store.hasMany) return store.hasMany(group, ids);
  const found = new Set<string>();
  for (const id of ids) if (await store.has(group, id)) found.add(id);
  return found;
}

async function markMany(
  store: DedupStore,
  group: string,
  ids: readonly string[],
  ttlMs: number,
): Promise<void> {
  if (store.markMany) return store.markMany(group, ids, ttlMs);
  for (const id of ids) await store.mark(group, id, ttlMs);
}

/** Expired marks are deleted this many at a time, so a purge never holds a lock for long. */
export const PURGE_CHUNK = 5000;

/** Runs `deleteChunk` (which deletes at most {@link PURGE_CHUNK} expired marks) until one comes back short. */
export async function purgeInChunks(deleteChunk: () => Promise<number>): Promise<number> {
  let total = 0;
  for (;;) {
    const n = await deleteChunk();
    total += n;
    if (n < PURGE_CHUNK) return total;
  }
}

/** A connection string fit for logs: the password (in the authority or a query parameter) is hidden. */
export function redactConnectionString(url: string): string {
  return redactUrl(url).replace(/([?&]password=)[^&]*/gi, '$1***');
}

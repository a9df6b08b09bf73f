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

export function dedupTtl(options: DedupOptions): number {
  return parseDuration(options.ttl ?? '7d', 'dedup.ttl');
}

/** The smallest and the largest of some ids (compared as text, as SQLite does). */
export function rangeOf(ids: readonly string[]): [string, string] {
  let low = ids[0]!;
  let high = low;
  for (const id of ids) {
    if (id < low) low = id;
    else if (id > high) high = id;
  }
  return [low, high];
}

/** `store.hasMany`, or `has` per id for a store without it. */
export async function hasMany(
  store: DedupStore,
  group: string,
  ids: readonly string[],
): Promise<Set<string>> {
  if (store.hasMany) return store.hasMany(group, ids);
  const found = new Set<string>();
  for (const id of ids) if (await store.has(group, id)) found.add(id);
  return found;
}

/** `store.markMany`, or `mark` per id for a store without it. */
export async function markMany(
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

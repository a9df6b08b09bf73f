import type { Message } from '../message.ts';
import { type Duration, parseDuration } from '../util/units.ts';

/**
 * Where a consumer group remembers the event ids (`ce_id`) it has processed. Implementations:
 * SQLite (the embedded engine's default), Redis and PostgreSQL.
 */
export interface DedupStore {
  /** Shown in logs and errors (`sqlite:…`, `redis://host:port`, `postgres://host/db`), no secrets. */
  readonly description: string;
  /** True when `group` has marked `id` as processed and the mark has not expired. */
  has(group: string, id: string): Promise<boolean>;
  /** Marks `id` as processed by `group` for `ttlMs`. Marking twice is fine. */
  mark(group: string, id: string, ttlMs: number): Promise<void>;
  close(): Promise<void>;
}

export interface DedupOptions {
  store: DedupStore;
  /** How long an id is remembered. Default `'7d'`. */
  ttl?: Duration;
  /** Told about every record skipped because its id was already processed. */
  onDuplicate?: (message: Message<unknown, unknown>) => void;
}

/**
 * Wraps a handler so that a record whose `ce_id` the group already processed is skipped, and a
 * record is marked right after its handler succeeds (before its offset is committed): a crash
 * between the two commits redelivers a record that is then skipped. Records without an id are
 * always handled.
 */
export function withDedup<M extends Message<unknown, unknown>, C>(
  handler: (message: M, context: C) => unknown,
  options: DedupOptions,
  group: string,
): (message: M, context: C) => Promise<void> {
  const ttlMs = parseDuration(options.ttl ?? '7d', 'dedup.ttl');
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

/** As {@link withDedup}, for batch handlers: ids already processed are left out of the batch. */
export function withBatchDedup<M extends Message<unknown, unknown>, C>(
  handler: (messages: M[], context: C) => unknown,
  options: DedupOptions,
  group: string,
): (messages: M[], context: C) => Promise<void> {
  const ttlMs = parseDuration(options.ttl ?? '7d', 'dedup.ttl');
  const { store, onDuplicate } = options;
  return async (messages, context) => {
    const fresh: M[] = [];
    for (const m of messages) {
      if (m.id !== undefined && (await store.has(group, m.id))) onDuplicate?.(m);
      else fresh.push(m);
    }
    if (fresh.length === 0) return;
    await handler(fresh, context);
    for (const m of fresh) if (m.id !== undefined) await store.mark(group, m.id, ttlMs);
  };
}

/**
 * The transactional outbox: a service writes its own rows and the events describing them in one
 * transaction of its own database (SQLite or PostgreSQL); a relay publishes the stored events in
 * insertion order and then deletes them (or marks them sent). While the engine is unreachable,
 * transactions still commit and the events wait in the table.
 *
 * Delivery is at least once: a relay that dies after publishing a batch and before marking it
 * publishes it again. Every record keeps the `ce_id` it got when it was written, so a consumer
 * with `subscribe({ dedup })` handles it once.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { randomUUID } from 'node:crypto';
import type { DatabaseSync } from 'node:sqlite';
import type { Pool } from 'pg';
import type { BatchItem, EncodedRecord, Eventline, PublishOptions, PublishResult } from '../client.ts';
import type { Header } from '../engine/types.ts';
import { fail, isEventlineError } from '../errors.ts';
import type { CounterChild } from '../observability/metrics.ts';
import type { Topic } from '../topic.ts';
import { type Duration, parseDuration } from '../util/units.ts';
import type { PostgresOutboxTransaction } from './outbox-postgres.ts';
import type { SqliteOutboxTransaction } from './outbox-sqlite.ts';

export type { PostgresOutboxTransaction } from './outbox-postgres.ts';
export type { SqliteOutboxTransaction } from './outbox-sqlite.ts';

/** A PostgreSQL database: a `pg.Pool` the service already has, or a connection string. */
export interface PostgresDatabase {
  postgres: Pool | string;
}

export interface OutboxOptions {
  /**
   * The service's own database: a `node:sqlite` DatabaseSync (the outbox shares the connection),
   * or `{ postgres: pool | connectionString }` (a pool made from a string is closed by `close()`).
   */
  database: DatabaseSync | PostgresDatabase;
  /**
   * The table the events wait in; `<table>_relay` holds the relay lease. Both are created if
   * missing. Default `'eventline_outbox'`.
   */
  table?: string;
  /**
   * Names this outbox in metrics (the `outbox` label) and health. Default: the table name.
   */
  name?: string;
  /** Start the relay at once. `false`: this process only writes; call `start()` to relay. Default true. */
  relay?: boolean;
  /** Most events published per engine call. Default 500. */
  batchSize?: number;
  /**
   * How often the relay looks for events written by other processes (events written through this
   * outbox wake it at once). Default `'200ms'`.
   */
  pollInterval?: Duration;
  /**
   * One relay per database publishes at a time; it holds a lease this long and renews it while it
   * works. Another relay takes over once a lease expires. Default `'10s'`.
   */
  lease?: Duration;
  /** First wait after a failed publish; doubles per attempt, with jitter. Default `'100ms'`. */
  retryDelay?: Duration;
  /** Longest wait between attempts. The relay never gives up. Default `'10s'`. */
  maxRetryDelay?: Duration;
  /**
   * Keep published rows (marked with the time they were sent) this long, to look at; `0` deletes
   * them as soon as they are published. Default `0`.
   */
  keepSent?: Duration;
  /**
   * Told once a batch is stored on the engine, before its rows are marked: a crash right after
   * publishes the batch again.
   */
  onPublished?: (results: PublishResult[]) => void;
  /** Told about every failed attempt (engine or database); the relay retries. Default: the client's logger. */
  onError?: (error: Error, info: OutboxErrorInfo) => void;
}

export interface OutboxErrorInfo {
  /** The topic whose events could not be published; absent for database errors. */
  topic?: string;
  /** Events of that topic that wait. */
  count?: number;
  /** Failed attempts in a row. */
  attempt: number;
  retryInMs: number;
}

/** An event stored in the outbox: its CloudEvents `ce_id` and where it will be published. */
export interface OutboxEntry {
  id: string;
  topic: string;
  /**
   * The partition given to `publish`, or -1: the relay picks it (Kafka's partitioner on the key)
   * when it publishes, so accepting events needs nothing from the engine.
   */
  partition: number;
}

/** What a transaction callback gets; the SQLite and PostgreSQL flavours add the database handle. */
export interface OutboxTransaction {
  /**
   * Encodes an event at once (codecs, key, CloudEvents headers, `ce_id`) and stores it
   * in the outbox within this transaction. Throws as `Eventline.publish` does for a value its codec
   * rejects (EVENTLINE_ERR_ENCODE); nothing is stored then.
   */
  publish<V, K>(
    topic: Topic<V, K>,
    value: NoInfer<V> | null,
    options?: PublishOptions<NoInfer<K>>,
  ): Promise<OutboxEntry>;
  /** As `publish`, for several events; they are published in the order given. */
  publishBatch<V, K>(
    topic: Topic<V, K>,
    items: readonly BatchItem<NoInfer<V>, NoInfer<K>>[],
  ): Promise<OutboxEntry[]>;
}

export interface OutboxBacklog {
  /** Events not published yet. */
  count: number;
  /** Age of the oldest of them; 0 when there is none. */
  oldestAgeMs: number;
}

/**
 * `running`: this process's relay holds the lease and publishes; `standby`: another relay (another
 * process on the same table) holds it, this one takes over when it expires; `off`: no relay in this
 * process (`relay: false`, or after `stop()`); `stopping`; `ended`: the relay ended on its own
 * because the Eventline client was closed under it.
 */
export type OutboxRelayStatus = 'running' | 'standby' | 'off' | 'stopping' | 'ended';

export interface OutboxRelayState {
  status: OutboxRelayStatus;
  /** When it entered this status (ms since the epoch). */
  since: number;
  /** The last failed publish or database call, while the relay keeps failing. */
  error?: Error;
  /** Set while every pass of the relay meets a failure: when the first of them happened. */
  failingSince?: number;
}

export interface Outbox<Tx extends OutboxTransaction = OutboxTransaction> {
  /**
   * Runs `fn` in one transaction of the service's database (SQLite: `BEGIN IMMEDIATE` on the shared
   * connection; transactions of one outbox run one after another. PostgreSQL: `BEGIN` on a client of
   * the pool). The service writes its rows through `tx.db` / `tx.client` and its events with
   * `tx.publish`. When `fn` resolves, both commit together; when it throws, both roll back and the
   * error is rethrown. Resolves with what `fn` returned, once committed.
   *
   * Throws EVENTLINE_ERR_CLOSED after `stop()`, EVENTLINE_ERR_INVALID_ARGUMENT when called inside
   * another transaction of the same outbox, and whatever `fn` or the database throws.
   */
  transaction<T>(fn: (tx: Tx) => Promise<T>): Promise<T>;
  /** Starts the relay (when created with `relay: false`, or after `stop()`). Idempotent. */
  start(): void;
  /**
   * Stops the relay after its current batch (an engine call in flight is awaited) and gives up its
   * lease, so another relay takes over at once. Transactions still work; `start()` resumes.
   */
  stop(): Promise<void>;
  /**
   * Stops the relay and ends the outbox: later transactions throw EVENTLINE_ERR_CLOSED. Closes the
   * PostgreSQL pool the outbox made from a connection string; the service's own database (a
   * DatabaseSync or a pool it passed) and the Eventline client stay open. Close the outbox before
   * the client.
   */
  close(): Promise<void>;
  /** Events waiting to be published. */
  backlog(): Promise<OutboxBacklog>;
  /** What this process's relay is doing, for health checks (`bus.health()`). */
  relayState(): OutboxRelayState;
  /** `options.name`, else the table name: names the outbox in metrics and health. */
  readonly name: string;
  /** `sqlite:<file>` or `postgres://host/db`, for logs. */
  readonly description: string;
}

/** A row of the outbox table as a store reads it back. */
export interface OutboxRow {
  id: number;
  topic: string;
  partition: number;
  key: Buffer | null;
  value: Buffer | null;
  headers: string;
  timestamp: number;
  eventId: string;
}

/** What the relay needs from a database; one implementation per database. @internal */
export interface OutboxStore<Tx> {
  readonly description: string;
  /** Runs `fn` in a transaction; `insert` stores encoded records in it. */
  transaction<T>(
    fn: (handle: Tx, insert: (topic: string, records: EncodedRecord[]) => Promise<void>) => Promise<T>,
  ): Promise<T>;
  /** Takes or renews the relay lease for `owner`; false when another relay holds it. */
  claim(owner: string, leaseMs: number): Promise<boolean>;
  release(owner: string): Promise<void>;
  /** Oldest unsent rows, in insertion order, leaving out the topics given. */
  unsent(limit: number, except: readonly string[]): Promise<OutboxRow[]>;
  /** Deletes (or marks sent) rows, and renews the lease, if `owner` still holds it; else false. */
  markSent(owner: string, ids: readonly number[], keep: boolean, leaseMs: number): Promise<boolean>;
  /** Deletes sent rows older than `keepMs`, by the store's own clock (the one that stamped them). */
  purge(keepMs: number): Promise<void>;
  backlog(): Promise<OutboxBacklog>;
  close(): Promise<void>;
}

const TABLE_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,50}$/;

/**
 * Creates an outbox over the service's own database and, unless `relay: false`, starts its relay.
 * Creates the outbox tables if missing.
 *
 * @example
 * const outbox = await createOutbox(bus, { database: db });
 * await outbox.transaction(async (tx) => {
 *   tx.db.prepare('INSERT INTO orders (id, total) VALUES (?, ?)').run(order.id, order.total);
 *   await tx.publish(orderPlaced, order);
 * });
 *
 * Throws EVENTLINE_ERR_INVALID_ARGUMENT (a bad table name or option), and the database's own error
 * when the tables cannot be created.
 */
export function createOutbox(
  bus: Eventline,
  options: OutboxOptions & { database: DatabaseSync },
): Promise<Outbox<SqliteOutboxTransaction>>;
export function createOutbox(
  bus: Eventline,
  options: OutboxOptions & { database: PostgresDatabase },
): Promise<Outbox<PostgresOutboxTransaction>>;
export async function createOutbox(
  bus: Eventline,
  options: OutboxOptions,
): Promise<Outbox<SqliteOutboxTransaction> | Outbox<PostgresOutboxTransaction>> {
  const table = options.table ?? 'eventline_outbox';
  if (!TABLE_NAME.test(table)) {
    fail(
      'EVENTLINE_ERR_INVALID_ARGUMENT',
      `outbox: table must be a plain SQL name (letters, digits, _), got ${table}`,
    );
  }
  const database = options.database;
  if (typeof database === 'object' && database !== null && 'postgres' in database) {
    const { openPostgresStore } = await import('./outbox-postgres.ts');
    return new OutboxImpl<PostgresOutboxTransaction>(
      bus,
      await openPostgresStore(database.postgres, table),
      options,
    );
  }
  const { openSqliteStore } = await import('./outbox-sqlite.ts');
  return new OutboxImpl<SqliteOutboxTransaction>(bus, openSqliteStore(database, table), options);
}

class OutboxImpl<Tx extends OutboxTransaction> implements Outbox<Tx> {
  readonly #bus: Eventline;
  readonly #store: OutboxStore<Omit<Tx, keyof OutboxTransaction>>;
  readonly #relay: Relay;
  #open = true;
  /** Set inside a transaction's callback: a nested call would wait for itself. */
  readonly #inside = new AsyncLocalStorage<true>();
  readonly #untrack: () => void;
  readonly name: string;

  constructor(bus: Eventline, store: OutboxStore<Omit<Tx, keyof OutboxTransaction>>, options: OutboxOptions) {
    this.#bus = bus;
    this.#store = store;
    const name = options.name ?? options.table ?? 'eventline_outbox';
    this.name = name;
    this.#relay = new Relay(bus, store, options, bus.metrics.outboxRelayed.child(name));
    if (options.relay !== false) this.#relay.start();
    this.#untrack = bus.track({ outbox: this });
  }

  get description(): string {
    return this.#store.description;
  }

  async transaction<T>(fn: (tx: Tx) => Promise<T>): Promise<T> {
    if (!this.#open) fail('EVENTLINE_ERR_CLOSED', 'this outbox is stopped');
    if (typeof fn !== 'function')
      fail('EVENTLINE_ERR_INVALID_ARGUMENT', 'outbox.transaction: fn must be a function');
    if (this.#inside.getStore()) {
      fail('EVENTLINE_ERR_INVALID_ARGUMENT', 'outbox.transaction cannot be called inside another one');
    }
    let stored = 0;
    const result = await this.#store.transaction(async (handle, insert) => {
      let done = false;
      const publishBatch = async <V, K>(
        topic: Topic<V, K>,
        items: readonly BatchItem<NoInfer<V>, NoInfer<K>>[],
      ): Promise<OutboxEntry[]> => {
        const records = await this.#bus.encodeBatch(topic, items, { partitionsLater: true });
        if (done) fail('EVENTLINE_ERR_CLOSED', 'outbox: tx.publish was called after its transaction ended');
        await insert(topic.name, records);
        stored += records.length;
        return records.map((r) => ({ id: r.id, topic: topic.name, partition: r.partition }));
      };
      const tx = {
        ...handle,
        publishBatch,
        publish: async <V, K>(
          topic: Topic<V, K>,
          value: NoInfer<V> | null,
          opts: PublishOptions<NoInfer<K>> = {},
        ) => (await publishBatch(topic, [{ ...opts, value }]))[0]!,
      } as unknown as Tx;
      try {
        return await this.#inside.run(true, () => fn(tx));
      } finally {
        done = true;
      }
    });
    if (stored > 0) this.#relay.wake();
    return result;
  }

  start(): void {
    if (!this.#open) fail('EVENTLINE_ERR_CLOSED', 'this outbox is stopped');
    this.#relay.start();
  }

  async stop(): Promise<void> {
    await this.#relay.stop();
  }

  backlog(): Promise<OutboxBacklog> {
    return this.#store.backlog();
  }

  relayState(): OutboxRelayState {
    return this.#relay.state();
  }

  async close(): Promise<void> {
    if (!this.#open) return;
    this.#open = false;
    this.#untrack();
    await this.#relay.stop();
    await this.#store.close();
  }

  /** Same as close(): lets `await using outbox = await createOutbox(...)` close it on scope exit. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/**
 * Publishes stored events. One relay per database is active (the lease holder). Rows are read in
 * insertion order and published per topic in that order; a topic whose publish fails waits with
 * exponential backoff while other topics go on, so one broken topic does not hold up the rest and
 * nothing is ever skipped.
 */
class Relay {
  readonly #bus: Eventline;
  readonly #store: OutboxStore<unknown>;
  readonly #owner = randomUUID();
  readonly #batchSize: number;
  readonly #pollMs: number;
  readonly #leaseMs: number;
  readonly #retryMs: number;
  readonly #maxRetryMs: number;
  readonly #keepMs: number;
  readonly #onPublished: ((results: PublishResult[]) => void) | undefined;
  readonly #onError: (error: Error, info: OutboxErrorInfo) => void;
  /** Topics waiting after a failure: attempts so far and when to try again. */
  readonly #waiting = new Map<string, { attempt: number; until: number }>();
  #leader = false;
  #renewedAt = 0;
  #purgedAt = 0;
  #running: Promise<void> | undefined;
  #stopping = false;
  #wakeUp: (() => void) | undefined;
  #woken = false;
  #status: OutboxRelayStatus = 'off';
  #statusSince = Date.now();
  #lastError: Error | undefined;
  #failingSince: number | undefined;

  readonly #relayed: CounterChild;

  constructor(bus: Eventline, store: OutboxStore<unknown>, options: OutboxOptions, relayed: CounterChild) {
    this.#bus = bus;
    this.#store = store;
    this.#relayed = relayed;
    this.#batchSize = options.batchSize ?? 500;
    if (!Number.isInteger(this.#batchSize) || this.#batchSize < 1) {
      fail(
        'EVENTLINE_ERR_INVALID_ARGUMENT',
        `outbox: batchSize must be a positive integer, got ${options.batchSize}`,
      );
    }
    this.#pollMs = parseDuration(options.pollInterval ?? '200ms', 'outbox.pollInterval');
    this.#leaseMs = parseDuration(options.lease ?? '10s', 'outbox.lease');
    this.#retryMs = parseDuration(options.retryDelay ?? '100ms', 'outbox.retryDelay');
    this.#maxRetryMs = parseDuration(options.maxRetryDelay ?? '10s', 'outbox.maxRetryDelay');
    this.#keepMs = parseDuration(options.keepSent ?? 0, 'outbox.keepSent');
    this.#onPublished = options.onPublished;
    this.#onError =
      options.onError ??
      ((err, info) =>
        bus.logger.warn({ err, ...info, outbox: store.description }, 'outbox relay: will retry'));
  }

  start(): void {
    if (this.#running !== undefined) return;
    this.#stopping = false;
    this.#enter('running');
    this.#running = this.#loop();
  }

  async stop(): Promise<void> {
    const running = this.#running;
    if (running === undefined) return;
    this.#stopping = true;
    if (this.#status !== 'ended') this.#enter('stopping');
    this.wake();
    await running;
    this.#running = undefined;
    if (this.#leader) {
      this.#leader = false;
      await this.#store.release(this.#owner).catch(() => {});
    }
    this.#failingSince = undefined;
    this.#enter('off');
  }

  state(): OutboxRelayState {
    const failing = this.#failingSince !== undefined && this.#lastError !== undefined;
    return {
      status: this.#status,
      since: this.#statusSince,
      ...(failing ? { error: this.#lastError!, failingSince: this.#failingSince! } : {}),
    };
  }

  #enter(status: OutboxRelayStatus): void {
    if (this.#status === status) return;
    this.#status = status;
    this.#statusSince = Date.now();
  }

  /** A publish or database call failed (`err`), or a pass ended with nothing left waiting (undefined). */
  #attempted(err?: unknown): void {
    if (err === undefined) this.#failingSince = undefined;
    else {
      this.#lastError = asError(err);
      this.#failingSince ??= Date.now();
    }
  }

  wake(): void {
    this.#woken = true;
    this.#wakeUp?.();
  }

  async #loop(): Promise<void> {
    let dbFailures = 0;
    while (!this.#stopping) {
      try {
        const waitMs = await this.#pass();
        dbFailures = 0;
        if (this.#waiting.size === 0) this.#attempted();
        if (waitMs > 0) await this.#idle(waitMs);
      } catch (err) {
        if (isEventlineError(err, 'EVENTLINE_ERR_CLOSED')) {
          this.#enter('ended');
          return;
        }
        this.#attempted(err);
        dbFailures++;
        const retryInMs = this.#delay(dbFailures);
        this.#onError(asError(err), { attempt: dbFailures, retryInMs });
        await this.#idle(retryInMs);
      }
    }
  }

  /** One round: lease, read, publish, mark. Returns how long to wait before the next (0: at once). */
  async #pass(): Promise<number> {
    const now = Date.now();
    if (!this.#leader || now - this.#renewedAt > this.#leaseMs / 3) {
      this.#leader = await this.#store.claim(this.#owner, this.#leaseMs);
      if (!this.#stopping) this.#enter(this.#leader ? 'running' : 'standby');
      if (!this.#leader) return Math.max(this.#pollMs, this.#leaseMs / 4);
      this.#renewedAt = now;
    }
    if (this.#keepMs > 0 && now - this.#purgedAt > 60_000) {
      await this.#store.purge(this.#keepMs);
      this.#purgedAt = now;
    }
    const except = [...this.#waiting].filter(([, w]) => w.until > now).map(([topic]) => topic);
    const rows = await this.#store.unsent(this.#batchSize, except);
    if (rows.length === 0) return this.#untilRetry();
    const byTopic = new Map<string, OutboxRow[]>();
    for (const row of rows) {
      const list = byTopic.get(row.topic);
      if (list === undefined) byTopic.set(row.topic, [row]);
      else list.push(row);
    }
    let published = 0;
    for (const [topic, list] of byTopic) {
      let results: PublishResult[];
      try {
        results = await this.#bus.appendEncoded(topic, list.map(toRecord));
      } catch (err) {
        if (isEventlineError(err, 'EVENTLINE_ERR_CLOSED')) throw err;
        const attempt = (this.#waiting.get(topic)?.attempt ?? 0) + 1;
        const retryInMs = this.#delay(attempt);
        this.#waiting.set(topic, { attempt, until: Date.now() + retryInMs });
        this.#attempted(err);
        this.#onError(asError(err), { topic, count: list.length, attempt, retryInMs });
        continue;
      }
      this.#waiting.delete(topic);
      this.#onPublished?.(results);
      const ids = list.map((r) => r.id);
      if (!(await this.#store.markSent(this.#owner, ids, this.#keepMs > 0, this.#leaseMs))) {
        // Another relay took over (this one stalled past its lease): it publishes from here on.
        this.#leader = false;
        return 0;
      }
      this.#renewedAt = Date.now();
      this.#relayed.inc(list.length);
      published += list.length;
    }
    return published > 0 ? 0 : this.#untilRetry();
  }

  /** The poll interval, or less when a waiting topic may be tried again sooner. */
  #untilRetry(): number {
    let soonest = Number.POSITIVE_INFINITY;
    for (const w of this.#waiting.values()) soonest = Math.min(soonest, w.until);
    return Math.max(1, Math.min(this.#pollMs, soonest - Date.now()));
  }

  #delay(attempt: number): number {
    const base = Math.min(this.#maxRetryMs, this.#retryMs * 2 ** Math.min(attempt - 1, 30));
    return Math.round(base * (0.8 + Math.random() * 0.4));
  }

  async #idle(ms: number): Promise<void> {
    if (this.#woken || this.#stopping) {
      this.#woken = false;
      return;
    }
    await new Promise<void>((resolve) => {
      const timer = setTimeout(done, ms);
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
      this.#wakeUp = done;
    });
    this.#wakeUp = undefined;
    this.#woken = false;
  }
}

function asError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}

function toRecord(row: OutboxRow): EncodedRecord {
  return {
    id: row.eventId,
    partition: row.partition,
    key: row.key,
    value: row.value,
    timestamp: row.timestamp,
    headers: decodeHeaders(row.headers),
  };
}

/** Headers as stored in the outbox: JSON pairs of name and base64 value (ordered, repeatable). */
export function encodeHeaders(headers: readonly Header[]): string {
  return JSON.stringify(headers.map(([name, value]) => [name, value.toString('base64')]));
}

function decodeHeaders(text: string): Header[] {
  return (JSON.parse(text) as [string, string][]).map(([name, value]) => [
    name,
    Buffer.from(value, 'base64'),
  ]);
}

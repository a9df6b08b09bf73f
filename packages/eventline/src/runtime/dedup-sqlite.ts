import type { DatabaseSync, StatementSync } from 'node:sqlite';
import { setTimeout as sleep } from 'node:timers/promises';
import { Worker } from 'node:worker_threads';
import {
  beginImmediate,
  isBusy,
  openDatabase,
  read,
  sqliteCode,
  wrapSqliteError,
} from '../engine/embedded/sqlite.ts';
import { fail } from '../errors.ts';
import { type Duration, parseDuration } from '../util/units.ts';
import { packUuidString } from '../util/uuid.ts';
import {
  type ProcessOnceResult,
  PURGE_CHUNK,
  purgeInChunks,
  rangeOf,
  type TransactionalDedupStore,
} from './dedup.ts';
import type { BatchMarkStore, MarkedIds } from './dedup-gate.ts';
import type { CheckpointerData } from './dedup-sqlite-checkpointer.ts';

/** How long after opening its own file a store starts its checkpoint thread, and how often it checkpoints. */
const CHECKPOINTER_START_MS = 1000;
const CHECKPOINT_INTERVAL_MS = 1000;
/** Single marks one range probe reads; a range holding more is answered id by id. */
const RANGE_PROBE_LIMIT = 1024;

export type SqliteDedupStoreOptions = ({ path: string } | { db: DatabaseSync }) & {
  /** Table holding the marks; created when missing. Default `'eventline_dedup'`. */
  table?: string;
  /** How often expired marks are deleted. Default `'1m'`. */
  purgeInterval?: Duration;
  /** How long a write waits while another process holds the database's write lock. Default `'10s'`. */
  lockTimeout?: Duration;
};

/**
 * A SQLite dedup store. `processOnce` hands its function the store's connection (`db`): write the
 * handler's rows through it. The transaction holds the database's write lock until the function
 * settles, so keep it short; calls on one store run one at a time. It throws
 * EVENTLINE_ERR_ENGINE_BUSY when another process holds the write lock past `lockTimeout`, and
 * EVENTLINE_ERR_CLOSED after `close()`.
 */
export interface SqliteDedupStore extends TransactionalDedupStore<DatabaseSync> {
  /** The connection the marks are written on. */
  readonly db: DatabaseSync;
}

/**
 * A dedup store in a SQLite database: a file of its own (`{ path }`, opened in WAL mode with
 * synchronous=NORMAL, so a mark survives a process crash as the embedded engine's offset commits
 * do; a thread of the store's own checkpoints its WAL every second, from a second after opening)
 * or a connection the application already has (`{ db }`), for example the database its handler
 * writes to, so that `processOnce` can commit the handler's rows and the mark together. Several
 * processes may share one file. Marks expire by an `expires_at` column; expired rows are deleted
 * every `purgeInterval`, a bounded chunk at a time.
 *
 * Concurrent `mark` calls (from partitions handled in parallel) are written in one transaction.
 *
 * @throws EVENTLINE_ERR_INVALID_ARGUMENT for a table name that is not a plain identifier;
 * EVENTLINE_ERR_ENGINE_UNAVAILABLE / EVENTLINE_ERR_DATABASE_CORRUPT when the file cannot be opened.
 */
export function sqliteDedupStore(options: SqliteDedupStoreOptions): SqliteDedupStore {
  const table = options.table ?? 'eventline_dedup';
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(table)) {
    fail(
      'EVENTLINE_ERR_INVALID_ARGUMENT',
      `sqliteDedupStore: table must be a plain identifier, got ${table}`,
    );
  }
  const owned = 'path' in options;
  // A flush of marks is a few KiB, and every page it touches (the row's, two indexes') goes to the
  // WAL whole: with 4 KiB pages a flush writes less than half the bytes of 16 KiB ones. Checkpoints
  // run on a thread of the store's own (below); this connection checkpoints only should the WAL
  // grow past that, before the thread starts or were it to stop.
  const db = owned
    ? openDatabase(options.path, { synchronous: 'NORMAL', autocheckpoint: 10_000, pageSize: 4096 })
    : options.db;
  const description = owned ? `sqlite:${options.path}` : 'sqlite (application connection)';
  try {
    db.exec(
      `CREATE TABLE IF NOT EXISTS ${table} (grp TEXT NOT NULL, id TEXT NOT NULL, expires_at INTEGER NOT NULL, PRIMARY KEY (grp, id)) WITHOUT ROWID`,
    );
    db.exec(`CREATE INDEX IF NOT EXISTS ${table}_expiry ON ${table} (expires_at)`);
    // Marks written in batches are one row per batch: the ids and a range holding them (`lo` to
    // `hi`, as text). In `_batches` they are newline-joined text (from `markMany`, and ids that are
    // not all UUIDs). The consumer runtime packs UUIDs in lowercase text (the `ce_id`s Eventline
    // makes), 16 bytes an id, as a BLOB in `_packed`: a table of its own, because processes of
    // earlier versions read every `_batches` row as text. Event ids are time-ordered, so a lookup
    // for new records touches no row at all, and a redelivered record finds the row whose range
    // holds it.
    for (const kind of ['batches', 'packed']) {
      db.exec(
        `CREATE TABLE IF NOT EXISTS ${table}_${kind} (grp TEXT NOT NULL, lo TEXT NOT NULL, hi TEXT NOT NULL, expires_at INTEGER NOT NULL, ids BLOB NOT NULL)`,
      );
      db.exec(`CREATE INDEX IF NOT EXISTS ${table}_${kind}_range ON ${table}_${kind} (grp, hi)`);
      db.exec(`CREATE INDEX IF NOT EXISTS ${table}_${kind}_expiry ON ${table}_${kind} (expires_at)`);
    }
  } catch (err) {
    if (owned) db.close();
    throw wrapSqliteError(err, `${description}: creating table ${table}`);
  }
  return new SqliteStore(db, owned, description, table, options);
}

class SqliteStore implements SqliteDedupStore, BatchMarkStore {
  readonly db: DatabaseSync;
  readonly description: string;
  readonly #owned: boolean;
  readonly #lockTimeoutMs: number;
  readonly #has: StatementSync;
  // An expired mark left behind by the purge is replaced; a live one is kept as it is.
  readonly #mark: StatementSync;
  readonly #purge: StatementSync;
  /** Batches go to SQLite as one JSON array each: one statement instead of one per id. */
  readonly #hasMany: StatementSync;
  /** The limit is written into the statement: bound as a parameter, it makes the probe several times slower. */
  readonly #rangeProbe: StatementSync;
  readonly #batchesIn: StatementSync;
  readonly #insertBatch: StatementSync;
  readonly #insertPacked: StatementSync;
  readonly #purgeBatches: StatementSync;
  readonly #purgePacked: StatementSync;
  readonly #timer: NodeJS.Timeout;
  readonly #checkpointStart: NodeJS.Timeout | undefined;
  #checkpointer: Worker | undefined;
  /** Serialises write transactions: SQLite has one per connection. */
  #writes: Promise<unknown> = Promise.resolve();
  #closed = false;

  constructor(
    db: DatabaseSync,
    owned: boolean,
    description: string,
    table: string,
    options: SqliteDedupStoreOptions,
  ) {
    this.db = db;
    this.#owned = owned;
    this.description = description;
    this.#lockTimeoutMs = parseDuration(options.lockTimeout ?? '10s', 'lockTimeout');
    this.#has = db.prepare(`SELECT 1 FROM ${table} WHERE grp = ? AND id = ? AND expires_at > ?`);
    this.#has.setReturnArrays(true);
    this.#mark = db.prepare(
      `INSERT INTO ${table} (grp, id, expires_at) VALUES (?, ?, ?) ON CONFLICT (grp, id) DO UPDATE SET expires_at = excluded.expires_at WHERE expires_at <= ?`,
    );
    this.#hasMany = db.prepare(
      `SELECT id FROM ${table} WHERE grp = ? AND id IN (SELECT value FROM json_each(?)) AND expires_at > ?`,
    );
    this.#hasMany.setReturnArrays(true);
    this.#rangeProbe = db.prepare(
      `SELECT id FROM ${table} WHERE grp = ? AND id >= ? AND id <= ? AND expires_at > ? LIMIT ${RANGE_PROBE_LIMIT}`,
    );
    this.#rangeProbe.setReturnArrays(true);
    this.#batchesIn = db.prepare(
      `SELECT ids FROM ${table}_batches WHERE grp = ?1 AND hi >= ?2 AND lo <= ?3 AND expires_at > ?4 UNION ALL SELECT ids FROM ${table}_packed WHERE grp = ?1 AND hi >= ?2 AND lo <= ?3 AND expires_at > ?4`,
    );
    this.#batchesIn.setReturnArrays(true);
    this.#insertBatch = db.prepare(
      `INSERT INTO ${table}_batches (grp, lo, hi, expires_at, ids) VALUES (?, ?, ?, ?, ?)`,
    );
    this.#insertPacked = db.prepare(
      `INSERT INTO ${table}_packed (grp, lo, hi, expires_at, ids) VALUES (?, ?, ?, ?, ?)`,
    );
    this.#purgeBatches = db.prepare(
      `DELETE FROM ${table}_batches WHERE rowid IN (SELECT rowid FROM ${table}_batches WHERE expires_at <= ? LIMIT ${PURGE_CHUNK})`,
    );
    this.#purgePacked = db.prepare(
      `DELETE FROM ${table}_packed WHERE rowid IN (SELECT rowid FROM ${table}_packed WHERE expires_at <= ? LIMIT ${PURGE_CHUNK})`,
    );
    this.#purge = db.prepare(
      `DELETE FROM ${table} WHERE (grp, id) IN (SELECT grp, id FROM ${table} WHERE expires_at <= ? LIMIT ${PURGE_CHUNK})`,
    );
    const every = parseDuration(options.purgeInterval ?? '1m', 'purgeInterval');
    this.#timer = setInterval(() => void this.purge().catch(() => {}), every);
    this.#timer.unref();
    if (owned && 'path' in options && options.path !== ':memory:') {
      const path = options.path;
      // Started a moment after opening, as the engine's maintenance worker is: a store opened for a
      // short task never pays for a thread.
      this.#checkpointStart = setTimeout(() => this.#startCheckpointer(path), CHECKPOINTER_START_MS);
      this.#checkpointStart.unref();
    }
  }

  #startCheckpointer(path: string): void {
    if (this.#closed) return;
    const workerData: CheckpointerData = { path, intervalMs: CHECKPOINT_INTERVAL_MS };
    let worker: Worker;
    try {
      worker = new Worker(new URL('./dedup-sqlite-checkpointer.ts', import.meta.url), { workerData });
    } catch {
      // No thread (out of resources, say): the connection's own checkpoints take over.
      return;
    }
    worker.unref();
    // Without the thread the connection's own checkpoints (past its WAL limit) take over.
    worker.on('error', () => {});
    worker.on('exit', () => {
      if (this.#checkpointer === worker) this.#checkpointer = undefined;
    });
    this.#checkpointer = worker;
  }

  #check(): void {
    if (this.#closed) fail('EVENTLINE_ERR_CLOSED', `dedup store ${this.description} is closed`);
  }

  async has(group: string, id: string): Promise<boolean> {
    this.#check();
    return read(`${this.description}: has`, () => {
      const now = Date.now();
      if (this.#has.get(group, id, now) !== undefined) return true;
      const found = new Set<string>();
      this.#inBatches(group, new Lookup([id]), now, found);
      return found.size > 0;
    });
  }

  /** Adds to `found` the ids marked in batch rows whose range overlaps the lookup's. */
  #inBatches(group: string, wanted: Lookup, now: number, found: Set<string>): void {
    const rows = this.#batchesIn.all(group, wanted.low, wanted.high, now) as unknown as [
      string | Uint8Array,
    ][];
    for (const [list] of rows) wanted.collect(list, found);
  }

  async hasMany(group: string, ids: readonly string[]): Promise<Set<string>> {
    if (ids.length === 0) {
      this.#check();
      return new Set();
    }
    const [low, high] = rangeOf(ids);
    return this.hasInRange(group, low, high, () => ids);
  }

  /**
   * For the consumer runtime (see BatchMarkStore): the marked ids among `ids()`, which all lie in
   * [low, high]. Event ids are time-ordered (UUIDv7), so a fetched batch's ids span a narrow range
   * that usually holds no mark at all: then neither `ids()` nor a set of them is needed. A range
   * holding more single marks than one probe reads (random ids, a replay) is answered id by id.
   */
  async hasInRange(
    group: string,
    low: string,
    high: string,
    ids: () => readonly string[],
  ): Promise<Set<string>> {
    this.#check();
    const found = new Set<string>();
    const now = Date.now();
    let wanted: Lookup | undefined;
    const want = (): Lookup => {
      wanted ??= new Lookup(ids(), low, high);
      return wanted;
    };
    read(`${this.description}: has`, () => {
      const batches = this.#batchesIn.all(group, low, high, now) as unknown as [string | Uint8Array][];
      for (const [list] of batches) want().collect(list, found);
      const rows = this.#rangeProbe.all(group, low, high, now) as unknown as [string][];
      if (rows.length < RANGE_PROBE_LIMIT) {
        for (const [id] of rows) if (want().set.has(id)) found.add(id);
        return;
      }
      const json = JSON.stringify(want().ids);
      for (const [id] of this.#hasMany.all(group, json, now) as unknown as [string][]) found.add(id);
    });
    return found;
  }

  async mark(group: string, id: string, ttlMs: number): Promise<void> {
    this.#check();
    await this.#write('mark', (now) => {
      this.#mark.run(group, id, now + ttlMs, now);
    });
  }

  async markMany(group: string, ids: readonly string[], ttlMs: number): Promise<void> {
    this.#check();
    const expiresAt = Date.now() + ttlMs;
    if (ids.length === 0) return;
    // A row holds ids newline-joined: an id holding a newline gets a row of its own kind.
    const plain = ids.filter((id) => !id.includes('\n'));
    const odd = plain.length === ids.length ? [] : ids.filter((id) => id.includes('\n'));
    const [low, high] = plain.length === 0 ? ['', ''] : rangeOf(plain);
    const list = plain.join('\n');
    await this.#write('mark', (now) => {
      if (plain.length > 0) this.#insertBatch.run(group, low, high, expiresAt, list);
      for (const id of odd) this.#mark.run(group, id, expiresAt, now);
    });
  }

  /**
   * For the consumer runtime (see BatchMarkStore): marks `ids` as one row, packed 16 bytes an id
   * when every one is a UUID in lowercase text (less than half the text, so fewer pages to write).
   * On a connection of the store's own the row is one self-committing statement; on the
   * application's (`{ db }`) it is a transaction of its own, which fails while the application has
   * one open (the mark would otherwise join it, and go should it roll back).
   */
  async markIds(group: string, ids: MarkedIds, low: string, high: string, ttlMs: number): Promise<void> {
    this.#check();
    if (ids.count === 0) return;
    const packed = ids.packed();
    if (packed === undefined) return this.markMany(group, ids.list(), ttlMs);
    const expiresAt = Date.now() + ttlMs;
    const insert = (): void => {
      this.#insertPacked.run(group, low, high, expiresAt, packed);
    };
    await (this.#owned ? this.#writeOne('mark', insert) : this.#write('mark', insert));
  }

  /**
   * Runs one statement as a transaction of its own (SQLite commits it by itself: no BEGIN and
   * COMMIT to parse and run), once the previous write finished. While another process holds the
   * write lock it retries with short sleeps that yield the event loop, up to `lockTimeout`; a
   * statement refused for the lock changed nothing. Should a transaction be open on the connection
   * (begun through `db` outside the store), it goes as `#write` does, and fails.
   */
  #writeOne(what: string, statement: () => void): Promise<void> {
    const where = `${this.description}: ${what}`;
    const run = async (): Promise<void> => {
      if (this.db.isTransaction) return this.#transaction(where, statement);
      const deadline = Date.now() + this.#lockTimeoutMs;
      for (let attempt = 0; ; attempt++) {
        try {
          statement();
          return;
        } catch (err) {
          if (!isBusy(err) || Date.now() >= deadline) throw wrapSqliteError(err, where);
          await sleep(Math.min(2 ** attempt, 50));
        }
      }
    };
    const next = this.#writes.then(run, run);
    this.#writes = next.catch(() => {});
    return next;
  }

  /**
   * Runs `fn` in a write transaction (BEGIN IMMEDIATE … COMMIT) once the previous one finished; on
   * an error it rolls back and rethrows. While another process holds the write lock it retries with
   * short sleeps that yield the event loop, up to `lockTimeout`.
   */
  #write<T>(what: string, fn: (now: number) => T | Promise<T>): Promise<Awaited<T>> {
    const where = `${this.description}: ${what}`;
    const run = (): Promise<Awaited<T>> => this.#transaction(where, fn);
    const next = this.#writes.then(run, run);
    this.#writes = next.catch(() => {});
    return next;
  }

  /** The transaction `#write` runs, now. */
  #transaction<T>(where: string, fn: (now: number) => T | Promise<T>): Promise<Awaited<T>> {
    return beginImmediate(this.db, { lockTimeoutMs: this.#lockTimeoutMs, what: where }, async () => {
      try {
        const result = await fn(Date.now());
        this.db.exec('COMMIT');
        return result;
      } catch (err) {
        try {
          if (this.db.isTransaction) this.db.exec('ROLLBACK');
        } catch {
          // the connection is unusable; the original error says why
        }
        // The function's own errors go back as they are; SQLite's are wrapped.
        throw sqliteCode(err) === undefined ? err : wrapSqliteError(err, where);
      }
    });
  }

  async processOnce<T>(
    group: string,
    id: string,
    ttlMs: number,
    fn: (db: DatabaseSync) => T | Promise<T>,
  ): Promise<ProcessOnceResult<Awaited<T>>> {
    this.#check();
    return this.#write(`processOnce ${id}`, async (now) => {
      const batched = new Set<string>();
      this.#inBatches(group, new Lookup([id]), now, batched);
      if (batched.size > 0 || this.#mark.run(group, id, now + ttlMs, now).changes === 0) {
        return { duplicate: true };
      }
      return { duplicate: false, value: await fn(this.db) };
    });
  }

  async purge(): Promise<number> {
    if (this.#closed) return 0;
    return purgeInChunks(() =>
      this.#write(
        'purge',
        (now) =>
          Number(this.#purge.run(now).changes) +
          Number(this.#purgeBatches.run(now).changes) +
          Number(this.#purgePacked.run(now).changes),
      ),
    );
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#timer);
    clearTimeout(this.#checkpointStart);
    await this.#writes;
    const worker = this.#checkpointer;
    if (worker !== undefined) {
      const exited = new Promise((resolve) => worker.once('exit', resolve));
      worker.ref();
      worker.postMessage('stop');
      const timer = setTimeout(() => void worker.terminate(), 5000);
      await exited;
      clearTimeout(timer);
    }
    if (this.#owned) this.db.close();
  }
}

/**
 * Ids looked up together, and a range holding them (compared as text, as SQLite does). The sets
 * are made only once a row may hold some of the ids.
 */
class Lookup {
  readonly ids: readonly string[];
  readonly low: string;
  readonly high: string;
  #set: Set<string> | undefined;
  #packed: PackedUuids | undefined;

  constructor(ids: readonly string[], low?: string, high?: string) {
    this.ids = ids;
    [this.low, this.high] = low !== undefined && high !== undefined ? [low, high] : rangeOf(ids);
  }

  get set(): Set<string> {
    this.#set ??= new Set(this.ids);
    return this.#set;
  }

  /** Adds to `found` the wanted ids among a row's marks (newline-joined text, or packed UUIDs). */
  collect(list: string | Uint8Array, found: Set<string>): void {
    if (typeof list === 'string') {
      const set = this.set;
      for (const id of list.split('\n')) if (set.has(id)) found.add(id);
      return;
    }
    this.#packed ??= new PackedUuids(this.ids);
    for (let at = 0; at + 16 <= list.length; at += 16) {
      const id = this.#packed.find(list, at);
      if (id !== undefined) found.add(id);
    }
  }
}

/**
 * The UUIDs among some ids, packed, in a hash table keyed by their last four bytes (random in a
 * UUIDv7): a packed row is matched byte by byte, without making a string per mark.
 */
class PackedUuids {
  readonly #ids: string[] = [];
  readonly #bytes: Buffer;
  /** Open addressing: 1 + the index of an id, 0 for an empty slot. */
  readonly #slots: Int32Array;
  readonly #mask: number;

  constructor(ids: readonly string[]) {
    this.#bytes = Buffer.allocUnsafe(ids.length * 16);
    for (const id of ids) if (packUuidString(id, this.#bytes, this.#ids.length * 16)) this.#ids.push(id);
    let size = 16;
    while (size < this.#ids.length * 2) size *= 2;
    this.#slots = new Int32Array(size);
    this.#mask = size - 1;
    for (let i = 0; i < this.#ids.length; i++) {
      let h = tail(this.#bytes, i * 16) & this.#mask;
      while (this.#slots[h] !== 0) h = (h + 1) & this.#mask;
      this.#slots[h] = i + 1;
    }
  }

  /** The id whose bytes are `row[at..at+16)`, if it is one of these. */
  find(row: Uint8Array, at: number): string | undefined {
    const bytes = this.#bytes;
    for (let h = tail(row, at) & this.#mask; ; h = (h + 1) & this.#mask) {
      const slot = this.#slots[h]!;
      if (slot === 0) return undefined;
      const from = (slot - 1) * 16;
      let same = true;
      for (let b = 0; b < 16 && same; b++) same = bytes[from + b] === row[at + b];
      if (same) return this.#ids[slot - 1];
    }
  }
}

function tail(bytes: Uint8Array, at: number): number {
  return (bytes[at + 12]! << 24) | (bytes[at + 13]! << 16) | (bytes[at + 14]! << 8) | bytes[at + 15]!;
}

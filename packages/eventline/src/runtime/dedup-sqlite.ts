import type { DatabaseSync, StatementSync } from 'node:sqlite';
import {
  beginImmediate,
  openDatabase,
  read,
  sqliteCode,
  wrapSqliteError,
} from '../engine/embedded/sqlite.ts';
import { fail } from '../errors.ts';
import { type Duration, parseDuration } from '../util/units.ts';
import { type ProcessOnceResult, PURGE_CHUNK, purgeInChunks, type TransactionalDedupStore } from './dedup.ts';

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
 * do) or a connection the application already has (`{ db }`), for example the database its handler
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
  // This connection has no maintenance worker to checkpoint for it.
  const db = owned ? openDatabase(options.path, { synchronous: 'NORMAL', autocheckpoint: 1000 }) : options.db;
  const description = owned ? `sqlite:${options.path}` : 'sqlite (application connection)';
  try {
    db.exec(
      `CREATE TABLE IF NOT EXISTS ${table} (grp TEXT NOT NULL, id TEXT NOT NULL, expires_at INTEGER NOT NULL, PRIMARY KEY (grp, id)) WITHOUT ROWID`,
    );
    db.exec(`CREATE INDEX IF NOT EXISTS ${table}_expiry ON ${table} (expires_at)`);
    // Marks written in batches (markMany) are one row per batch: the batch's ids, newline-joined,
    // and their smallest and largest. Event ids are time-ordered, so a lookup for new records
    // touches no row at all, and a redelivered record finds the row whose range holds it.
    db.exec(
      `CREATE TABLE IF NOT EXISTS ${table}_batches (grp TEXT NOT NULL, lo TEXT NOT NULL, hi TEXT NOT NULL, expires_at INTEGER NOT NULL, ids TEXT NOT NULL)`,
    );
    db.exec(`CREATE INDEX IF NOT EXISTS ${table}_batches_range ON ${table}_batches (grp, hi)`);
    db.exec(`CREATE INDEX IF NOT EXISTS ${table}_batches_expiry ON ${table}_batches (expires_at)`);
  } catch (err) {
    if (owned) db.close();
    throw wrapSqliteError(err, `${description}: creating table ${table}`);
  }
  return new SqliteStore(db, owned, description, table, options);
}

class SqliteStore implements SqliteDedupStore {
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
  readonly #hasRange: StatementSync;
  readonly #batchesIn: StatementSync;
  readonly #insertBatch: StatementSync;
  readonly #purgeBatches: StatementSync;
  readonly #timer: NodeJS.Timeout;
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
    this.#hasRange = db.prepare(
      `SELECT id FROM ${table} WHERE grp = ? AND id >= ? AND id <= ? AND expires_at > ? LIMIT ?`,
    );
    this.#hasRange.setReturnArrays(true);
    this.#batchesIn = db.prepare(
      `SELECT ids FROM ${table}_batches WHERE grp = ? AND hi >= ? AND lo <= ? AND expires_at > ?`,
    );
    this.#batchesIn.setReturnArrays(true);
    this.#insertBatch = db.prepare(
      `INSERT INTO ${table}_batches (grp, lo, hi, expires_at, ids) VALUES (?, ?, ?, ?, ?)`,
    );
    this.#purgeBatches = db.prepare(
      `DELETE FROM ${table}_batches WHERE rowid IN (SELECT rowid FROM ${table}_batches WHERE expires_at <= ? LIMIT ${PURGE_CHUNK})`,
    );
    this.#purge = db.prepare(
      `DELETE FROM ${table} WHERE (grp, id) IN (SELECT grp, id FROM ${table} WHERE expires_at <= ? LIMIT ${PURGE_CHUNK})`,
    );
    const every = parseDuration(options.purgeInterval ?? '1m', 'purgeInterval');
    this.#timer = setInterval(() => void this.purge().catch(() => {}), every);
    this.#timer.unref();
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
      this.#inBatches(group, lookup([id]), now, found);
      return found.size > 0;
    });
  }

  /** Adds to `found` the ids marked in batch rows whose range overlaps [low, high]. */
  #inBatches(group: string, wanted: Lookup, now: number, found: Set<string>): void {
    const rows = this.#batchesIn.all(group, wanted.low, wanted.high, now) as unknown as [string][];
    for (const [list] of rows) for (const id of list.split('\n')) if (wanted.has(id)) found.add(id);
  }

  async hasMany(group: string, ids: readonly string[]): Promise<Set<string>> {
    this.#check();
    const found = new Set<string>();
    const now = Date.now();
    if (ids.length === 0) return found;
    const wanted = lookup(ids);
    read(`${this.description}: has`, () => {
      this.#inBatches(group, wanted, now, found);
      // Event ids are time-ordered (UUIDv7), so a batch's ids span a narrow range that usually holds
      // no mark at all: one range probe answers for the whole batch. A range holding more marks than
      // that (random ids, a replay) is answered id by id.
      if (ids.length > 16) {
        const limit = ids.length * 2;
        const rows = this.#hasRange.all(group, wanted.low, wanted.high, now, limit) as unknown as [string][];
        if (rows.length < limit) {
          for (const [id] of rows) if (wanted.has(id)) found.add(id);
          return;
        }
      }
      for (const [id] of this.#hasMany.all(group, JSON.stringify(ids), now) as unknown as [string][]) {
        found.add(id);
      }
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
    const [low, high] = rangeOf(ids);
    await this.#write('mark', () => {
      this.#insertBatch.run(group, low, high, expiresAt, ids.join('\n'));
    });
  }

  /**
   * Runs `fn` in a write transaction (BEGIN IMMEDIATE … COMMIT) once the previous one finished; on
   * an error it rolls back and rethrows. While another process holds the write lock it retries with
   * short sleeps that yield the event loop, up to `lockTimeout`.
   */
  #write<T>(what: string, fn: (now: number) => T | Promise<T>): Promise<Awaited<T>> {
    const where = `${this.description}: ${what}`;
    const run = (): Promise<Awaited<T>> =>
      beginImmediate(this.db, { lockTimeoutMs: this.#lockTimeoutMs, what: where }, async () => {
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
    const next = this.#writes.then(run, run);
    this.#writes = next.catch(() => {});
    return next;
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
      this.#inBatches(group, lookup([id]), now, batched);
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
        (now) => Number(this.#purge.run(now).changes) + Number(this.#purgeBatches.run(now).changes),
      ),
    );
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#timer);
    await this.#writes;
    if (this.#owned) this.db.close();
  }
}

/** Ids looked up together, with the smallest and the largest (compared as text, as SQLite does). */
interface Lookup extends Set<string> {
  low: string;
  high: string;
}

function lookup(ids: readonly string[]): Lookup {
  const [low, high] = rangeOf(ids);
  return Object.assign(new Set(ids), { low, high });
}

function rangeOf(ids: readonly string[]): [string, string] {
  let low = ids[0]!;
  let high = low;
  for (const id of ids) {
    if (id < low) low = id;
    else if (id > high) high = id;
  }
  return [low, high];
}

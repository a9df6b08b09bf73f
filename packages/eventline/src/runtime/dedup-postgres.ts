import type { Pool, PoolClient } from 'pg';
import { EventlineError, fail } from '../errors.ts';
import { type Duration, parseDuration } from '../util/units.ts';
import {
  type ProcessOnceResult,
  PURGE_CHUNK,
  purgeInChunks,
  redactConnectionString,
  type TransactionalDedupStore,
} from './dedup.ts';

export type PostgresDedupStoreOptions = (
  | {
      /** `postgres://user:password@host:port/database`; the store opens and closes its own pool. */
      connectionString: string;
      /** Connections of the store's pool. Default 4. */
      maxConnections?: number;
    }
  /** A pool the application owns (for example the one its handlers write with); `close()` leaves it open. */
  | { pool: Pool }
) & {
  /** Table holding the marks (optionally `schema.table`); created when missing. Default `'eventline_dedup'`. */
  table?: string;
  /** How often expired marks are deleted. Default `'1m'`. */
  purgeInterval?: Duration;
};

/**
 * A PostgreSQL dedup store. `processOnce` runs on one pooled connection, handed to its function
 * (write the handler's rows through it); a concurrent transaction of another process marking the
 * same id makes it wait, and if that one commits, this is a duplicate. It throws
 * EVENTLINE_ERR_ENGINE_UNAVAILABLE when the database cannot be reached.
 */
export type PostgresDedupStore = TransactionalDedupStore<PoolClient>;

/**
 * A dedup store in PostgreSQL, for services on Kafka that keep their state there. Marks live in a
 * table with primary key `(grp, id)` and an `expires_at` column, created when missing; expired rows
 * are deleted every `purgeInterval`, a bounded chunk at a time. Batches take one statement each
 * (`= ANY($2)` lookups, one multi-row `INSERT … ON CONFLICT`). Use `processOnce` with the pool the
 * handler writes with to commit its rows and the mark in one transaction.
 *
 * `pg` (npm) is loaded only when this is called.
 *
 * @throws EVENTLINE_ERR_INVALID_ARGUMENT for a table name that is not a plain (optionally
 * schema-qualified) identifier; EVENTLINE_ERR_ENGINE_UNAVAILABLE when the database cannot be
 * reached or the table cannot be created.
 */
export async function postgresDedupStore(options: PostgresDedupStoreOptions): Promise<PostgresDedupStore> {
  const table = options.table ?? 'eventline_dedup';
  if (!/^([a-z_][a-z0-9_]*\.)?[a-z_][a-z0-9_]*$/.test(table)) {
    fail(
      'EVENTLINE_ERR_INVALID_ARGUMENT',
      `postgresDedupStore: table must be a lower-case identifier, optionally schema-qualified, got ${table}`,
    );
  }
  let pool: Pool;
  let description: string;
  const owned = 'connectionString' in options;
  if (owned) {
    description = redactConnectionString(options.connectionString);
    const pg = await import('pg');
    pool = new pg.default.Pool({
      connectionString: options.connectionString,
      max: options.maxConnections ?? 4,
    });
    // An idle connection that drops is replaced by the pool; without a listener it would crash the process.
    pool.on('error', () => {});
  } else {
    pool = options.pool;
    description = 'postgres (application pool)';
  }
  try {
    await pool.query(
      `CREATE TABLE IF NOT EXISTS ${table} (grp text NOT NULL, id text NOT NULL, expires_at timestamptz NOT NULL, PRIMARY KEY (grp, id))`,
    );
    const index = `${table.replace('.', '_')}_expiry`;
    await pool.query(`CREATE INDEX IF NOT EXISTS ${index} ON ${table} (expires_at)`);
  } catch (err) {
    if (owned) await pool.end().catch(() => {});
    throw unavailable(description, `creating table ${table}`, err);
  }
  return new PostgresStore(
    pool,
    owned,
    description,
    table,
    parseDuration(options.purgeInterval ?? '1m', 'purgeInterval'),
  );
}

function unavailable(description: string, what: string, err: unknown): EventlineError {
  return new EventlineError(
    'EVENTLINE_ERR_ENGINE_UNAVAILABLE',
    `postgres dedup store ${description}: ${what}`,
    {
      cause: err,
    },
  );
}

class PostgresStore implements PostgresDedupStore {
  readonly description: string;
  readonly #pool: Pool;
  readonly #owned: boolean;
  readonly #timer: NodeJS.Timeout;
  readonly #sql: { has: string; hasMany: string; mark: string; purge: string };
  #closed = false;

  constructor(pool: Pool, owned: boolean, description: string, table: string, purgeMs: number) {
    this.#pool = pool;
    this.#owned = owned;
    this.description = description;
    // An expired mark the purge has not reached yet is replaced; a live one is kept as it is.
    const upsert = `ON CONFLICT (grp, id) DO UPDATE SET expires_at = EXCLUDED.expires_at WHERE ${table}.expires_at <= now()`;
    this.#sql = {
      has: `SELECT 1 FROM ${table} WHERE grp = $1 AND id = $2 AND expires_at > now()`,
      hasMany: `SELECT id FROM ${table} WHERE grp = $1 AND id = ANY($2::text[]) AND expires_at > now()`,
      mark: `INSERT INTO ${table} (grp, id, expires_at) SELECT $1, unnest($2::text[]), now() + $3 * interval '1 millisecond' ${upsert}`,
      purge: `DELETE FROM ${table} WHERE ctid IN (SELECT ctid FROM ${table} WHERE expires_at <= now() LIMIT ${PURGE_CHUNK})`,
    };
    this.#timer = setInterval(() => void this.purge().catch(() => {}), purgeMs);
    this.#timer.unref();
  }

  async #query(what: string, text: string, values: unknown[], client: Pool | PoolClient = this.#pool) {
    if (this.#closed) fail('EVENTLINE_ERR_CLOSED', `dedup store ${this.description} is closed`);
    try {
      return await client.query(text, values);
    } catch (err) {
      throw unavailable(this.description, what, err);
    }
  }

  async has(group: string, id: string): Promise<boolean> {
    return ((await this.#query('has', this.#sql.has, [group, id])).rowCount ?? 0) > 0;
  }

  async hasMany(group: string, ids: readonly string[]): Promise<Set<string>> {
    const { rows } = await this.#query('has', this.#sql.hasMany, [group, ids]);
    return new Set(rows.map((r: { id: string }) => r.id));
  }

  async mark(group: string, id: string, ttlMs: number): Promise<void> {
    await this.markMany(group, [id], ttlMs);
  }

  async markMany(group: string, ids: readonly string[], ttlMs: number): Promise<void> {
    // A repeated id would make one INSERT … ON CONFLICT touch a row twice, which PostgreSQL refuses.
    await this.#query('mark', this.#sql.mark, [group, [...new Set(ids)], ttlMs]);
  }

  async processOnce<T>(
    group: string,
    id: string,
    ttlMs: number,
    fn: (tx: PoolClient) => T | Promise<T>,
  ): Promise<ProcessOnceResult<Awaited<T>>> {
    if (this.#closed) fail('EVENTLINE_ERR_CLOSED', `dedup store ${this.description} is closed`);
    let tx: PoolClient;
    try {
      tx = await this.#pool.connect();
    } catch (err) {
      throw unavailable(this.description, 'processOnce: connecting', err);
    }
    let broken = false;
    try {
      await this.#query('processOnce: begin', 'BEGIN', [], tx);
      // A concurrent transaction inserting the same id makes this wait; if it commits, this is a duplicate.
      const marked = await this.#query('processOnce: mark', this.#sql.mark, [group, [id], ttlMs], tx);
      if (marked.rowCount === 0) {
        await this.#query('processOnce: rollback', 'ROLLBACK', [], tx);
        return { duplicate: true };
      }
      const value = await fn(tx);
      await this.#query('processOnce: commit', 'COMMIT', [], tx);
      return { duplicate: false, value };
    } catch (err) {
      try {
        await tx.query('ROLLBACK');
      } catch {
        broken = true;
      }
      throw err;
    } finally {
      tx.release(broken);
    }
  }

  async purge(): Promise<number> {
    if (this.#closed) return 0;
    return purgeInChunks(async () => (await this.#query('purge', this.#sql.purge, [])).rowCount ?? 0);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#timer);
    if (this.#owned) await this.#pool.end();
  }
}

/**
 * A service's own database: SQLite (`node:sqlite`) by default, PostgreSQL when `DATABASE_URL` says
 * `postgres://…`. Both sit behind one small interface, so a service writes its SQL once:
 *
 * - placeholders are `?` (rewritten to `$1, $2, …` for PostgreSQL);
 * - use portable types (`TEXT`, `INTEGER`, `REAL`) and portable statements (`INSERT … ON CONFLICT
 *   … DO NOTHING / DO UPDATE`, `RETURNING`); cast aggregates (`CAST(count(*) AS INTEGER)`), since
 *   PostgreSQL returns a bigint as a string;
 * - `createOutbox` puts Eventline's transactional outbox in the same database, so a service's rows
 *   and the events announcing them commit together.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { DatabaseSync, type SQLInputValue } from 'node:sqlite';
import { setTimeout as sleep } from 'node:timers/promises';
import {
  createOutbox,
  type Eventline,
  type Outbox,
  type OutboxBacklog,
  type OutboxOptions,
  type OutboxTransaction,
  redactUrl,
} from 'eventline';
import pg from 'pg';

export type SqlValue = string | number | bigint | null | Uint8Array;
export type Row = Record<string, unknown>;

/** Statements on a database or inside one of its transactions. */
export interface Sql {
  /** Runs a statement that returns rows (`SELECT`, or a write with `RETURNING`). */
  query<T extends Row = Row>(sql: string, params?: readonly SqlValue[]): Promise<T[]>;
  /** Runs a statement; resolves with the number of rows it inserted, changed or deleted. */
  run(sql: string, params?: readonly SqlValue[]): Promise<number>;
}

/** Inside an outbox transaction: the service's statements and the events, committed together. */
export interface OutboxSql extends Sql {
  publish: OutboxTransaction['publish'];
  publishBatch: OutboxTransaction['publishBatch'];
}

/** The outbox of a {@link ServiceDatabase}. */
export interface ServiceOutbox {
  /** Runs `fn` in one transaction; its rows and the events it publishes commit together, or neither. */
  transaction<T>(fn: (tx: OutboxSql) => Promise<T>): Promise<T>;
  /** Events not published yet. */
  backlog(): Promise<OutboxBacklog>;
  /** Stops the relay; close it before the Eventline client. */
  close(): Promise<void>;
}

export interface ServiceDatabase extends Sql {
  readonly kind: 'sqlite' | 'postgres';
  /** `sqlite:<file>` or the PostgreSQL URL without its password, for logs. */
  readonly description: string;
  /** Runs a script of statements separated by `;` (schema set-up; make it idempotent). */
  exec(script: string): Promise<void>;
  /**
   * Runs `fn` in one transaction (rolled back when it throws). Inside it use `tx`, not the
   * database: on SQLite other statements of the service wait until the transaction ends.
   */
  transaction<T>(fn: (tx: Sql) => Promise<T>): Promise<T>;
  /** Eventline's transactional outbox in this database, relaying to `bus`. One per database. */
  createOutbox(bus: Eventline, options?: Omit<OutboxOptions, 'database'>): Promise<ServiceOutbox>;
  /** Closes the outbox (if any) and the connection. */
  close(): Promise<void>;
}

/**
 * Opens `service`'s database: `url` when given (`postgres://…`, `postgresql://…` or `sqlite:PATH`),
 * else SQLite at `<APPS_DATA_DIR>/<service>.db`, by default `.eventline/apps/<service>.db` (the
 * folder is created).
 */
export async function openDatabase(service: string, url?: string): Promise<ServiceDatabase> {
  if (url === undefined) {
    const dir = process.env.APPS_DATA_DIR?.trim() || '.eventline/apps';
    return new SqliteDatabase(`${dir.replace(/\/+$/, '')}/${service}.db`);
  }
  if (/^postgres(ql)?:\/\//.test(url)) {
    const pool = new pg.Pool({ connectionString: url, max: 5 });
    // An idle client losing its server must not crash the process; the next query reports it.
    pool.on('error', () => {});
    try {
      const client = await pool.connect();
      client.release();
    } catch (err) {
      await pool.end().catch(() => {});
      throw new Error(
        `${service}: cannot connect to DATABASE_URL ${redactUrl(url)}: ${(err as Error).message}`,
      );
    }
    return new PostgresDatabase(pool, redactUrl(url));
  }
  if (url.startsWith('sqlite:')) {
    const path = url.slice('sqlite:'.length).replace(/^\/\/(?=\/)/, '');
    if (path === '' || path === ':memory:') {
      throw new Error(
        `${service}: DATABASE_URL ${url} names no file (an in-memory database would lose the data)`,
      );
    }
    return new SqliteDatabase(path);
  }
  throw new Error(
    `${service}: DATABASE_URL must start with postgres://, postgresql:// or sqlite:, got "${redactUrl(url)}"`,
  );
}

/**
 * A {@link ServiceOutbox} over `outbox`: inside a transaction, the service's statements come from
 * `withSql` (the database's own statements for that transaction) and its events from the outbox.
 * `closed` runs once the outbox has closed.
 */
function serviceOutbox<Tx extends OutboxTransaction>(
  outbox: Outbox<Tx>,
  withSql: <T>(tx: Tx, fn: (sql: Sql) => Promise<T>) => Promise<T>,
  closed: () => void,
): ServiceOutbox {
  return {
    transaction: (fn) =>
      outbox.transaction((tx) =>
        withSql(tx, (sql) =>
          fn({ ...sql, publish: tx.publish.bind(tx), publishBatch: tx.publishBatch.bind(tx) }),
        ),
      ),
    backlog: () => outbox.backlog(),
    close: async () => {
      await outbox.close();
      closed();
    },
  };
}

// ---- SQLite ----------------------------------------------------------------------------------------

class SqliteDatabase implements ServiceDatabase {
  readonly kind = 'sqlite';
  readonly description: string;
  readonly #db: DatabaseSync;
  /** Set while a transaction of this database runs its callback: its statements run at once. */
  readonly #inside = new AsyncLocalStorage<boolean>();
  #queue: Promise<unknown> = Promise.resolve();
  #outbox: Outbox | undefined;

  constructor(path: string) {
    mkdirSync(dirname(path), { recursive: true });
    this.#db = new DatabaseSync(path);
    this.description = `sqlite:${path}`;
    this.#db.exec('PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 5000;');
  }

  /** A transaction (the outbox's or ours) may be open across an await: wait for it to end. */
  async #outside(): Promise<void> {
    if (this.#inside.getStore()) return;
    while (this.#db.isTransaction) await sleep(2);
  }

  #sql(): Sql {
    return {
      query: async <T extends Row>(sql: string, params: readonly SqlValue[] = []) =>
        this.#db.prepare(sql).all(...(params as SQLInputValue[])) as T[],
      run: async (sql, params = []) =>
        Number(this.#db.prepare(sql).run(...(params as SQLInputValue[])).changes),
    };
  }

  async query<T extends Row = Row>(sql: string, params: readonly SqlValue[] = []): Promise<T[]> {
    await this.#outside();
    return this.#sql().query<T>(sql, params);
  }

  async run(sql: string, params: readonly SqlValue[] = []): Promise<number> {
    await this.#outside();
    return this.#sql().run(sql, params);
  }

  async exec(script: string): Promise<void> {
    await this.#outside();
    this.#db.exec(script);
  }

  transaction<T>(fn: (tx: Sql) => Promise<T>): Promise<T> {
    // With an outbox, every transaction goes through its queue: one at a time on the connection.
    if (this.#outbox) return this.#outbox.transaction(() => this.#inside.run(true, () => fn(this.#sql())));
    const run = this.#queue.then(async () => {
      await this.#outside();
      this.#db.exec('BEGIN IMMEDIATE');
      try {
        const result = await this.#inside.run(true, () => fn(this.#sql()));
        this.#db.exec('COMMIT');
        return result;
      } catch (err) {
        if (this.#db.isTransaction) this.#db.exec('ROLLBACK');
        throw err;
      }
    });
    this.#queue = run.catch(() => {});
    return run;
  }

  async createOutbox(bus: Eventline, options: Omit<OutboxOptions, 'database'> = {}): Promise<ServiceOutbox> {
    if (this.#outbox) throw new Error(`${this.description}: the database has an outbox already`);
    await this.#queue;
    const outbox = await createOutbox(bus, { ...options, database: this.#db });
    this.#outbox = outbox;
    return serviceOutbox(
      outbox,
      (_tx, fn) => this.#inside.run(true, () => fn(this.#sql())),
      () => {
        if (this.#outbox === outbox) this.#outbox = undefined;
      },
    );
  }

  async close(): Promise<void> {
    await this.#outbox?.close();
    this.#outbox = undefined;
    await this.#queue;
    if (this.#db.isOpen) this.#db.close();
  }
}

// ---- PostgreSQL ------------------------------------------------------------------------------------

/** `?` placeholders to `$1, $2, …`, leaving quoted text alone. */
export function numberPlaceholders(sql: string): string {
  let n = 0;
  let quote: string | undefined;
  let out = '';
  for (const ch of sql) {
    if (quote) {
      if (ch === quote) quote = undefined;
    } else if (ch === "'" || ch === '"') quote = ch;
    else if (ch === '?') {
      out += `$${++n}`;
      continue;
    }
    out += ch;
  }
  return out;
}

function pgSql(client: pg.Pool | pg.PoolClient): Sql {
  return {
    query: async <T extends Row>(sql: string, params: readonly SqlValue[] = []) =>
      (await client.query(numberPlaceholders(sql), params as unknown[])).rows as T[],
    run: async (sql, params = []) =>
      (await client.query(numberPlaceholders(sql), params as unknown[])).rowCount ?? 0,
  };
}

class PostgresDatabase implements ServiceDatabase {
  readonly kind = 'postgres';
  readonly description: string;
  readonly #pool: pg.Pool;
  readonly #sql: Sql;
  #outbox: Outbox | undefined;

  constructor(pool: pg.Pool, description: string) {
    this.#pool = pool;
    this.#sql = pgSql(pool);
    this.description = description;
  }

  query<T extends Row = Row>(sql: string, params?: readonly SqlValue[]): Promise<T[]> {
    return this.#sql.query<T>(sql, params);
  }

  run(sql: string, params?: readonly SqlValue[]): Promise<number> {
    return this.#sql.run(sql, params);
  }

  async exec(script: string): Promise<void> {
    await this.#pool.query(script);
  }

  async transaction<T>(fn: (tx: Sql) => Promise<T>): Promise<T> {
    const client = await this.#pool.connect();
    try {
      await client.query('BEGIN');
      const result = await fn(pgSql(client));
      await client.query('COMMIT');
      return result;
    } catch (err) {
      await client.query('ROLLBACK').catch(() => {});
      throw err;
    } finally {
      client.release();
    }
  }

  async createOutbox(bus: Eventline, options: Omit<OutboxOptions, 'database'> = {}): Promise<ServiceOutbox> {
    if (this.#outbox) throw new Error(`${this.description}: the database has an outbox already`);
    const outbox = await createOutbox(bus, { ...options, database: { postgres: this.#pool } });
    this.#outbox = outbox;
    return serviceOutbox(
      outbox,
      (tx, fn) => fn(pgSql(tx.client)),
      () => {
        if (this.#outbox === outbox) this.#outbox = undefined;
      },
    );
  }

  async close(): Promise<void> {
    await this.#outbox?.close();
    this.#outbox = undefined;
    await this.#pool.end();
  }
}

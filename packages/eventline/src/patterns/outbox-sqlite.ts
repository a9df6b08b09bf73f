/**
 * The outbox on the service's own `node:sqlite` database. The outbox shares the service's
 * connection: a transaction is `BEGIN IMMEDIATE` … `COMMIT` on it, and every statement of the
 * outbox (the relay's too) runs while no transaction is open on it, one after another.
 */

import type { DatabaseSync, StatementSync } from 'node:sqlite';
import { setTimeout as sleep } from 'node:timers/promises';
import type { EncodedRecord } from '../client.ts';
import { asBuffer, beginImmediate } from '../engine/embedded/sqlite.ts';
import { fail } from '../errors.ts';
import {
  encodeHeaders,
  type OutboxBacklog,
  type OutboxRow,
  type OutboxStore,
  type OutboxTransaction,
} from './outbox.ts';

/** The transaction an SQLite outbox gives its callback. */
export interface SqliteOutboxTransaction extends OutboxTransaction {
  /** The service's connection, inside `BEGIN IMMEDIATE`: run the service's statements on it. */
  readonly db: DatabaseSync;
}

/** How long a write waits for another connection's write transaction before it fails. */
const BUSY_LIMIT_MS = 30_000;

export function openSqliteStore(db: DatabaseSync, table: string): OutboxStore<{ db: DatabaseSync }> {
  return new SqliteOutboxStore(db, table);
}

class SqliteOutboxStore implements OutboxStore<{ db: DatabaseSync }> {
  readonly description: string;
  readonly #db: DatabaseSync;
  readonly #insert: StatementSync;
  readonly #unsent: StatementSync;
  readonly #claim: StatementSync;
  readonly #release: StatementSync;
  readonly #owner: StatementSync;
  readonly #renew: StatementSync;
  readonly #delete: StatementSync;
  readonly #mark: StatementSync;
  readonly #purge: StatementSync;
  readonly #backlog: StatementSync;
  /** Outbox work on the shared connection, one piece at a time. */
  #queue: Promise<unknown> = Promise.resolve();

  constructor(db: DatabaseSync, table: string) {
    this.#db = db;
    this.description = `sqlite:${db.location() ?? ':memory:'}`;
    const relay = `${table}_relay`;
    db.exec(`
      CREATE TABLE IF NOT EXISTS ${table} (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        topic TEXT NOT NULL,
        partition INTEGER NOT NULL,
        key BLOB,
        value BLOB,
        headers TEXT NOT NULL,
        timestamp INTEGER NOT NULL,
        event_id TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        sent_at INTEGER
      );
      CREATE INDEX IF NOT EXISTS ${table}_unsent ON ${table} (id) WHERE sent_at IS NULL;
      CREATE INDEX IF NOT EXISTS ${table}_sent ON ${table} (sent_at) WHERE sent_at IS NOT NULL;
      CREATE TABLE IF NOT EXISTS ${relay} (name TEXT PRIMARY KEY, owner TEXT, expires_at INTEGER NOT NULL);
      INSERT OR IGNORE INTO ${relay} (name, owner, expires_at) VALUES ('relay', NULL, 0);
    `);
    this.#insert = db.prepare(
      `INSERT INTO ${table} (topic, partition, key, value, headers, timestamp, event_id, created_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
    );
    this.#unsent = db.prepare(
      `SELECT id, topic, partition, key, value, headers, timestamp, event_id FROM ${table}
       WHERE sent_at IS NULL AND topic NOT IN (SELECT value FROM json_each(?)) ORDER BY id LIMIT ?`,
    );
    this.#claim = db.prepare(
      `UPDATE ${relay} SET owner = ?, expires_at = ?
       WHERE name = 'relay' AND (owner IS NULL OR owner = ? OR expires_at < ?)`,
    );
    this.#release = db.prepare(
      `UPDATE ${relay} SET owner = NULL, expires_at = 0 WHERE name = 'relay' AND owner = ?`,
    );
    this.#owner = db.prepare(`SELECT owner FROM ${relay} WHERE name = 'relay'`);
    this.#renew = db.prepare(`UPDATE ${relay} SET expires_at = ? WHERE name = 'relay' AND owner = ?`);
    this.#delete = db.prepare(`DELETE FROM ${table} WHERE id IN (SELECT value FROM json_each(?))`);
    this.#mark = db.prepare(`UPDATE ${table} SET sent_at = ? WHERE id IN (SELECT value FROM json_each(?))`);
    this.#purge = db.prepare(`DELETE FROM ${table} WHERE sent_at IS NOT NULL AND sent_at < ?`);
    this.#backlog = db.prepare(
      `SELECT count(*) AS n, min(created_at) AS oldest FROM ${table} WHERE sent_at IS NULL`,
    );
  }

  /** Runs `fn` after the outbox work queued before it, once no transaction is open on the connection. */
  #serial<T>(fn: () => T | Promise<T>): Promise<T> {
    const run = this.#queue.then(async () => {
      // The service may have a transaction of its own open across an await: wait for it to end
      // rather than run inside it.
      while (this.#db.isTransaction) await sleep(5);
      return fn();
    });
    this.#queue = run.catch(() => {});
    return run;
  }

  /** BEGIN IMMEDIATE, waiting (without blocking the event loop) while another connection writes. */
  #begin(): Promise<void> {
    return beginImmediate(
      this.#db,
      { lockTimeoutMs: BUSY_LIMIT_MS, what: 'outbox: starting a transaction' },
      () => undefined,
    );
  }

  transaction<T>(
    fn: (
      handle: { db: DatabaseSync },
      insert: (topic: string, records: EncodedRecord[]) => Promise<void>,
    ) => Promise<T>,
  ): Promise<T> {
    return this.#serial(async () => {
      await this.#begin();
      const insert = async (topic: string, records: EncodedRecord[]): Promise<void> => {
        if (!this.#db.isTransaction)
          fail('EVENTLINE_ERR_CLOSED', 'outbox: the transaction was ended by a statement of the service');
        const now = Date.now();
        for (const r of records) {
          this.#insert.run(
            topic,
            r.partition,
            r.key,
            r.value,
            encodeHeaders(r.headers),
            r.timestamp,
            r.id,
            now,
          );
        }
      };
      let result: T;
      try {
        result = await fn({ db: this.#db }, insert);
      } catch (err) {
        if (this.#db.isTransaction) this.#db.exec('ROLLBACK');
        throw err;
      }
      if (!this.#db.isTransaction) {
        fail(
          'EVENTLINE_ERR_INVALID_ARGUMENT',
          'outbox: the callback ended the transaction itself (COMMIT or ROLLBACK)',
        );
      }
      this.#db.exec('COMMIT');
      return result;
    });
  }

  claim(owner: string, leaseMs: number): Promise<boolean> {
    return this.#serial(() => {
      const now = Date.now();
      return this.#claim.run(owner, now + leaseMs, owner, now).changes === 1;
    });
  }

  async release(owner: string): Promise<void> {
    await this.#serial(() => this.#release.run(owner));
  }

  unsent(limit: number, except: readonly string[]): Promise<OutboxRow[]> {
    return this.#serial(() =>
      (this.#unsent.all(JSON.stringify(except), limit) as Record<string, unknown>[]).map((r) => ({
        id: r.id as number,
        topic: r.topic as string,
        partition: r.partition as number,
        key: bufferOrNull(r.key),
        value: bufferOrNull(r.value),
        headers: r.headers as string,
        timestamp: r.timestamp as number,
        eventId: r.event_id as string,
      })),
    );
  }

  markSent(owner: string, ids: readonly number[], keep: boolean, leaseMs: number): Promise<boolean> {
    return this.#serial(async () => {
      await this.#begin();
      try {
        if ((this.#owner.get() as { owner: string | null } | undefined)?.owner !== owner) {
          this.#db.exec('ROLLBACK');
          return false;
        }
        const list = JSON.stringify(ids);
        const now = Date.now();
        if (keep) this.#mark.run(now, list);
        else this.#delete.run(list);
        this.#renew.run(now + leaseMs, owner);
        this.#db.exec('COMMIT');
        return true;
      } catch (err) {
        if (this.#db.isTransaction) this.#db.exec('ROLLBACK');
        throw err;
      }
    });
  }

  async purge(keepMs: number): Promise<void> {
    await this.#serial(() => this.#purge.run(Date.now() - keepMs));
  }

  backlog(): Promise<OutboxBacklog> {
    return this.#serial(() => {
      const r = this.#backlog.get() as { n: number; oldest: number | null };
      return { count: r.n, oldestAgeMs: r.oldest === null ? 0 : Math.max(0, Date.now() - r.oldest) };
    });
  }

  async close(): Promise<void> {
    // The connection is the service's: it stays open.
    await this.#queue;
  }
}

function bufferOrNull(v: unknown): Buffer | null {
  return v === null || v === undefined ? null : asBuffer(v as Uint8Array);
}

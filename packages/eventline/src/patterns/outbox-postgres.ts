/**
 * The outbox on the service's PostgreSQL database, through `pg` (loaded only when an outbox is
 * created on PostgreSQL). Times (creation, lease expiry) are the database server's clock, so relays
 * on machines whose clocks differ still agree on who holds the lease.
 */
import type { Pool, PoolClient } from 'pg';
import type { EncodedRecord } from '../client.ts';
import {
  encodeHeaders,
  type OutboxBacklog,
  type OutboxRow,
  type OutboxStore,
  type OutboxTransaction,
} from './outbox.ts';

/** The transaction a PostgreSQL outbox gives its callback. */
export interface PostgresOutboxTransaction extends OutboxTransaction {
  /** A client of the pool, inside `BEGIN`: run the service's statements on it. */
  readonly client: PoolClient;
}

const NOW_MS = `(extract(epoch from clock_timestamp()) * 1000)::bigint`;

export async function openPostgresStore(
  database: Pool | string,
  table: string,
): Promise<OutboxStore<{ client: PoolClient }>> {
  let pool: Pool;
  let owned = false;
  if (typeof database === 'string') {
    const pg = (await import('pg')).default;
    pool = new pg.Pool({ connectionString: database, max: 4 });
    // An idle client whose server went away must not take the process down; the next query reports it.
    pool.on('error', () => {});
    owned = true;
  } else {
    pool = database;
  }
  const store = new PostgresOutboxStore(pool, owned, table, describe(database));
  try {
    await store.init();
  } catch (err) {
    if (owned) await pool.end().catch(() => {});
    throw err;
  }
  return store;
}

function describe(database: Pool | string): string {
  const options = typeof database === 'string' ? undefined : database.options;
  try {
    const url = new URL(
      typeof database === 'string' ? database : (options?.connectionString ?? 'postgres://'),
    );
    const host = options?.host ?? url.host;
    const name = options?.database ?? url.pathname.slice(1);
    return `postgres://${host || 'localhost'}/${name}`;
  } catch {
    return 'postgres';
  }
}

class PostgresOutboxStore implements OutboxStore<{ client: PoolClient }> {
  readonly description: string;
  readonly #pool: Pool;
  readonly #owned: boolean;
  readonly #table: string;
  readonly #relay: string;

  constructor(pool: Pool, owned: boolean, table: string, description: string) {
    this.#pool = pool;
    this.#owned = owned;
    this.#table = table;
    this.#relay = `${table}_relay`;
    this.description = description;
  }

  async init(): Promise<void> {
    const t = this.#table;
    // Two services starting at once would race on CREATE TABLE IF NOT EXISTS: take turns.
    await this.#inTransaction(async (client) => {
      await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [t]);
      await client.query(`
        CREATE TABLE IF NOT EXISTS ${t} (
          id BIGSERIAL PRIMARY KEY,
          topic TEXT NOT NULL,
          partition INTEGER NOT NULL,
          key BYTEA,
          value BYTEA,
          headers TEXT NOT NULL,
          timestamp BIGINT NOT NULL,
          event_id TEXT NOT NULL,
          created_at BIGINT NOT NULL,
          sent_at BIGINT
        );
        CREATE INDEX IF NOT EXISTS ${t}_unsent ON ${t} (id) WHERE sent_at IS NULL;
        CREATE INDEX IF NOT EXISTS ${t}_sent ON ${t} (sent_at) WHERE sent_at IS NOT NULL;
        CREATE TABLE IF NOT EXISTS ${this.#relay} (name TEXT PRIMARY KEY, owner TEXT, expires_at BIGINT NOT NULL);
        INSERT INTO ${this.#relay} (name, owner, expires_at) VALUES ('relay', NULL, 0) ON CONFLICT DO NOTHING;
      `);
    });
  }

  /** BEGIN … COMMIT on a client of the pool; ROLLBACK when `fn` throws. */
  async #inTransaction<T>(fn: (client: PoolClient) => Promise<T>): Promise<T> {
    const client = await this.#pool.connect();
    let broken: Error | undefined;
    try {
      await client.query('BEGIN');
      const result = await fn(client);
      await client.query('COMMIT');
      return result;
    } catch (err) {
      await client.query('ROLLBACK').catch((e: unknown) => {
        // A client that cannot roll back is not given back to the pool.
        broken = e instanceof Error ? e : new Error(String(e));
      });
      throw err;
    } finally {
      client.release(broken);
    }
  }

  transaction<T>(
    fn: (
      handle: { client: PoolClient },
      insert: (topic: string, records: EncodedRecord[]) => Promise<void>,
    ) => Promise<T>,
  ): Promise<T> {
    return this.#inTransaction((client) =>
      fn({ client }, async (topic, records) => {
        // One statement for the whole batch; ORDER BY keeps the ids in the order given.
        await client.query(
          `INSERT INTO ${this.#table} (topic, partition, key, value, headers, timestamp, event_id, created_at)
           SELECT $1, p, k, v, h, ts, e, ${NOW_MS}
           FROM unnest($2::int[], $3::bytea[], $4::bytea[], $5::text[], $6::bigint[], $7::text[])
             WITH ORDINALITY AS r(p, k, v, h, ts, e, n)
           ORDER BY n`,
          [
            topic,
            records.map((r) => r.partition),
            records.map((r) => r.key),
            records.map((r) => r.value),
            records.map((r) => encodeHeaders(r.headers)),
            records.map((r) => r.timestamp),
            records.map((r) => r.id),
          ],
        );
      }),
    );
  }

  async claim(owner: string, leaseMs: number): Promise<boolean> {
    const r = await this.#pool.query(
      `UPDATE ${this.#relay} SET owner = $1, expires_at = ${NOW_MS} + $2
       WHERE name = 'relay' AND (owner IS NULL OR owner = $1 OR expires_at < ${NOW_MS})`,
      [owner, leaseMs],
    );
    return r.rowCount === 1;
  }

  async release(owner: string): Promise<void> {
    await this.#pool.query(
      `UPDATE ${this.#relay} SET owner = NULL, expires_at = 0 WHERE name = 'relay' AND owner = $1`,
      [owner],
    );
  }

  async unsent(limit: number, except: readonly string[]): Promise<OutboxRow[]> {
    const r = await this.#pool.query(
      `SELECT id, topic, partition, key, value, headers, timestamp, event_id FROM ${this.#table}
       WHERE sent_at IS NULL AND NOT (topic = ANY($1::text[])) ORDER BY id LIMIT $2`,
      [except, limit],
    );
    return r.rows.map((row: Record<string, unknown>) => ({
      id: Number(row.id),
      topic: row.topic as string,
      partition: row.partition as number,
      key: row.key as Buffer | null,
      value: row.value as Buffer | null,
      headers: row.headers as string,
      timestamp: Number(row.timestamp),
      eventId: row.event_id as string,
    }));
  }

  markSent(owner: string, ids: readonly number[], keep: boolean, leaseMs: number): Promise<boolean> {
    return this.#inTransaction(async (client) => {
      const holder = await client.query(`SELECT owner FROM ${this.#relay} WHERE name = 'relay' FOR UPDATE`);
      if (holder.rows[0]?.owner !== owner) return false;
      if (keep) {
        await client.query(`UPDATE ${this.#table} SET sent_at = ${NOW_MS} WHERE id = ANY($1::bigint[])`, [
          ids,
        ]);
      } else {
        await client.query(`DELETE FROM ${this.#table} WHERE id = ANY($1::bigint[])`, [ids]);
      }
      await client.query(`UPDATE ${this.#relay} SET expires_at = ${NOW_MS} + $1 WHERE name = 'relay'`, [
        leaseMs,
      ]);
      return true;
    });
  }

  async purge(keepMs: number): Promise<void> {
    await this.#pool.query(
      `DELETE FROM ${this.#table} WHERE sent_at IS NOT NULL AND sent_at < ${NOW_MS} - $1`,
      [keepMs],
    );
  }

  async backlog(): Promise<OutboxBacklog> {
    const r = await this.#pool.query(
      `SELECT count(*)::int AS n, ${NOW_MS} - min(created_at) AS age FROM ${this.#table} WHERE sent_at IS NULL`,
    );
    const row = r.rows[0] as { n: number; age: string | null };
    return { count: row.n, oldestAgeMs: row.age === null ? 0 : Math.max(0, Number(row.age)) };
  }

  async close(): Promise<void> {
    if (this.#owned) await this.#pool.end();
  }
}

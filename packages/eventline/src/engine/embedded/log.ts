import type { DatabaseSync, StatementSync } from 'node:sqlite';
import { EventlineError } from '../../errors.ts';
import { DEFAULT_TOPIC_CONFIG, type TopicConfig, type TopicSpec } from '../../topic.ts';
import type {
  AppendRecord,
  FetchOptions,
  PartitionOffsets,
  StoredRecord,
  TopicDescription,
} from '../types.ts';
import { refuse, validateRecords } from '../validate.ts';
import { decodeBatch } from './batch-format.ts';
import type { ChangeNotifier } from './notifier.ts';
import { createPartitionTables, dropPartitionTables, logTable } from './schema.ts';
import { asBuffer, read, sqliteCode, wrapSqliteError, writeTransaction } from './sqlite.ts';

const SQLITE_ERROR = 1;
/** How long topic metadata is trusted before it is read again. */
const TOPIC_CACHE_MS = 3000;

export interface TopicMeta {
  id: number;
  name: string;
  partitions: number;
  config: TopicConfig;
  /** When this copy was read: other processes may grow or delete the topic. */
  readAt: number;
}

interface PartitionStatements {
  fetch: StatementSync;
  tail: StatementSync;
  bounds: StatementSync;
  probe: StatementSync;
}

/**
 * The records half of the embedded engine: topics, validation and fetches on one SQLite connection
 * in WAL mode. Appends are written by the AppendWriter (writer.ts).
 */
export class EmbeddedLog {
  readonly #db: DatabaseSync;
  readonly #path: string;
  readonly #notifier: ChangeNotifier;
  readonly #lockTimeoutMs: number;
  #topics = new Map<string, TopicMeta>();
  #statements = new Map<string, PartitionStatements>();

  constructor(db: DatabaseSync, path: string, notifier: ChangeNotifier, lockTimeoutMs: number) {
    this.#db = db;
    this.#path = path;
    this.#notifier = notifier;
    this.#lockTimeoutMs = lockTimeoutMs;
  }

  // ---- topics ----------------------------------------------------------------------------

  /** Reads a topic's metadata, from cache unless `fresh`. Undefined when it does not exist. */
  topicMeta(name: string, fresh = false): TopicMeta | undefined {
    if (!fresh) {
      const cached = this.#topics.get(name);
      if (cached && Date.now() - cached.readAt < TOPIC_CACHE_MS) return cached;
    }
    const row = read(`reading topic ${name} in ${this.#path}`, () =>
      this.#db.prepare('SELECT id, name, partitions, config FROM el_topics WHERE name = ?').get(name),
    ) as { id: number; name: string; partitions: number; config: string } | undefined;
    if (row === undefined) {
      this.#topics.delete(name);
      return undefined;
    }
    const meta: TopicMeta = {
      id: Number(row.id),
      name: row.name,
      partitions: Number(row.partitions),
      // Settings added later default for topics stored before them.
      config: { ...DEFAULT_TOPIC_CONFIG, ...(JSON.parse(row.config) as Partial<TopicConfig>) },
      readAt: Date.now(),
    };
    this.#topics.set(name, meta);
    return meta;
  }

  requireTopic(name: string, fresh = false): TopicMeta {
    const meta = this.topicMeta(name, fresh);
    if (meta === undefined) throw refuse.unknownTopic(name);
    return meta;
  }

  #requirePartition(name: string, partition: number): TopicMeta {
    let meta = this.requireTopic(name);
    if (partition >= meta.partitions) meta = this.requireTopic(name, true);
    if (!Number.isInteger(partition) || partition < 0 || partition >= meta.partitions) {
      throw refuse.unknownPartition(name, partition, meta.partitions);
    }
    return meta;
  }

  async createTopics(specs: TopicSpec[]): Promise<void> {
    await writeTransaction(
      this.#db,
      { lockTimeoutMs: this.#lockTimeoutMs, what: `creating topics in ${this.#path}` },
      () => {
        const exists = this.#db.prepare('SELECT 1 FROM el_topics WHERE name = ?');
        const insert = this.#db.prepare(
          'INSERT INTO el_topics (name, partitions, config, created_at) VALUES (?, ?, ?, ?) RETURNING id',
        );
        for (const spec of specs) {
          if (exists.get(spec.name)) throw refuse.topicExists(spec.name);
          const { name, ...config } = spec;
          const { id } = insert.get(name, config.partitions, JSON.stringify(config), Date.now()) as {
            id: number;
          };
          for (let p = 0; p < config.partitions; p++) createPartitionTables(this.#db, Number(id), p);
        }
      },
    );
    for (const spec of specs) this.#topics.delete(spec.name);
    this.#notifier.notify();
  }

  async alterTopic(name: string, changes: Partial<TopicConfig>): Promise<void> {
    await writeTransaction(
      this.#db,
      { lockTimeoutMs: this.#lockTimeoutMs, what: `altering topic ${name}` },
      () => {
        const meta = this.requireTopic(name, true);
        const config: TopicConfig = { ...meta.config, ...changes };
        if (config.partitions < meta.partitions) {
          throw refuse.partitionsCannotShrink(name, meta.partitions, config.partitions);
        }
        for (let p = meta.partitions; p < config.partitions; p++) createPartitionTables(this.#db, meta.id, p);
        this.#db
          .prepare('UPDATE el_topics SET partitions = ?, config = ? WHERE id = ?')
          .run(config.partitions, JSON.stringify(config), meta.id);
      },
    );
    this.#topics.delete(name);
    this.#notifier.notify();
  }

  listTopics(): string[] {
    const rows = read(`listing topics in ${this.#path}`, () =>
      this.#db.prepare('SELECT name FROM el_topics ORDER BY name').all(),
    ) as { name: string }[];
    return rows.map((r) => r.name);
  }

  describeTopics(names: string[]): TopicDescription[] {
    return names.map((name) => {
      const meta = this.requireTopic(name, true);
      return { name, config: meta.config, partitions: this.partitionOffsets(meta) };
    });
  }

  partitionOffsets(meta: TopicMeta, only?: number[]): PartitionOffsets[] {
    const rows = read(`reading offsets of ${meta.name}`, () =>
      this.#db
        .prepare(
          'SELECT partition, start_offset, next_offset FROM el_partitions WHERE topic_id = ? ORDER BY partition',
        )
        .all(meta.id),
    ) as { partition: number; start_offset: number; next_offset: number }[];
    const out: PartitionOffsets[] = [];
    for (const r of rows) {
      const partition = Number(r.partition);
      if (only !== undefined && !only.includes(partition)) continue;
      const tail = read(
        `reading ${meta.name}/${partition}`,
        () => this.#partitionStatements(meta.id, partition).tail.get() as { last_offset: number } | undefined,
      );
      const end = Math.max(Number(r.next_offset), tail === undefined ? 0 : Number(tail.last_offset) + 1);
      out.push({ partition, start: Math.min(Number(r.start_offset), end), end });
    }
    if (only !== undefined) {
      const missing = only.find((p) => !out.some((o) => o.partition === p));
      if (missing !== undefined) throw refuse.unknownPartition(meta.name, missing, meta.partitions);
    }
    return out;
  }

  async deleteTopics(names: string[]): Promise<void> {
    await writeTransaction(this.#db, { lockTimeoutMs: this.#lockTimeoutMs, what: 'deleting topics' }, () => {
      for (const name of names) {
        const meta = this.requireTopic(name, true);
        for (let p = 0; p < meta.partitions; p++) dropPartitionTables(this.#db, meta.id, p);
        this.#db.prepare('DELETE FROM el_partitions WHERE topic_id = ?').run(meta.id);
        this.#db.prepare('DELETE FROM el_cleanings WHERE topic_id = ?').run(meta.id);
        this.#db.prepare('DELETE FROM el_topics WHERE id = ?').run(meta.id);
        this.#db.prepare('DELETE FROM el_offsets WHERE topic = ?').run(name);
        this.#db.prepare('DELETE FROM el_assignments WHERE topic = ?').run(name);
      }
    });
    for (const name of names) {
      const meta = this.#topics.get(name);
      if (meta) for (let p = 0; p < meta.partitions; p++) this.#statements.delete(logTable(meta.id, p));
      this.#topics.delete(name);
    }
    this.#notifier.notify();
  }

  // ---- appends (validation; the writing is in writer.ts) ----

  /** Checks records against a topic's partitions and limits; throws the first problem found. */
  validate(meta: TopicMeta, records: AppendRecord[]): void {
    validateRecords(
      meta.name,
      {
        partitions: meta.partitions,
        maxMessageBytes: meta.config.maxMessageBytes,
        compacted: meta.config.cleanupPolicy === 'compact',
      },
      records,
    );
  }

  #partitionStatements(topicId: number, partition: number): PartitionStatements {
    const table = logTable(topicId, partition);
    let s = this.#statements.get(table);
    if (s === undefined) {
      s = {
        fetch: this.#db.prepare(
          `SELECT base_offset, first_ts, payload FROM ${table}
           WHERE base_offset >= coalesce((SELECT max(base_offset) FROM ${table} WHERE base_offset <= ?), 0)
           ORDER BY base_offset`,
        ),
        tail: this.#db.prepare(
          `SELECT last_offset, run_max_ts FROM ${table} ORDER BY base_offset DESC LIMIT 1`,
        ),
        bounds: this.#db.prepare(`SELECT min(base_offset) AS lo, max(base_offset) AS hi FROM ${table}`),
        probe: this.#db.prepare(
          `SELECT base_offset, run_max_ts FROM ${table} WHERE base_offset >= ? ORDER BY base_offset LIMIT 1`,
        ),
      };
      this.#statements.set(table, s);
    }
    return s;
  }

  /** Runs a read against a partition table, turning a vanished table into EVENTLINE_ERR_UNKNOWN_TOPIC. */
  #readPartition<T>(topic: string, partition: number, fn: (s: PartitionStatements) => T): T {
    const meta = this.#requirePartition(topic, partition);
    try {
      return fn(this.#partitionStatements(meta.id, partition));
    } catch (err) {
      if (sqliteCode(err) === SQLITE_ERROR) {
        // The table is gone: the topic was deleted (or recreated) by another process.
        this.#statements.delete(logTable(meta.id, partition));
        this.#topics.delete(topic);
        const now = this.topicMeta(topic, true);
        if (now === undefined) {
          throw new EventlineError('EVENTLINE_ERR_UNKNOWN_TOPIC', `topic ${topic} was deleted`, {
            details: { topic },
          });
        }
        if (now.id !== meta.id) return this.#readPartition(topic, partition, fn);
      }
      throw wrapSqliteError(err, `reading ${topic}/${partition}`);
    }
  }

  // ---- reads -----------------------------------------------------------------------------

  fetch(topic: string, partition: number, offset: number, options: FetchOptions): StoredRecord[] {
    const maxBytes = options.maxBytes ?? 8 * 1024 * 1024;
    return this.#readPartition(topic, partition, (s) => {
      const out: StoredRecord[] = [];
      let bytes = 0;
      for (const row of s.fetch.iterate(offset) as Iterable<{
        base_offset: number;
        first_ts: number;
        payload: Uint8Array;
      }>) {
        bytes += decodeBatch(
          asBuffer(row.payload),
          topic,
          partition,
          Number(row.base_offset),
          Number(row.first_ts),
          offset,
          out,
          options.maxRecords,
        );
        if (out.length >= options.maxRecords || bytes >= maxBytes) break;
      }
      return out;
    });
  }

  offsetForTimestamp(topic: string, partition: number, timestamp: number): number {
    return this.#readPartition(topic, partition, (s) => {
      // Binary search for the first batch whose running maximum timestamp reaches `timestamp`;
      // the first record at or after it is in that batch or a later one.
      const { lo, hi } = s.bounds.get() as { lo: number | null; hi: number | null };
      let from: number | undefined;
      if (lo !== null && hi !== null) {
        let low = Number(lo);
        let high = Number(hi);
        while (low <= high) {
          const mid = Math.floor((low + high) / 2);
          const row = s.probe.get(mid) as { base_offset: number; run_max_ts: number } | undefined;
          if (row === undefined) break;
          if (Number(row.run_max_ts) >= timestamp) {
            from = Number(row.base_offset);
            high = mid - 1;
          } else low = Number(row.base_offset) + 1;
        }
      }
      if (from !== undefined) {
        for (const row of s.fetch.iterate(from) as Iterable<{
          base_offset: number;
          first_ts: number;
          payload: Uint8Array;
        }>) {
          const out: StoredRecord[] = [];
          decodeBatch(
            asBuffer(row.payload),
            topic,
            partition,
            Number(row.base_offset),
            Number(row.first_ts),
            0,
            out,
            Infinity,
          );
          const hit = out.find((r) => r.timestamp >= timestamp);
          if (hit) return hit.offset;
        }
      }
      const meta = this.requireTopic(topic);
      return this.partitionOffsets(meta).find((p) => p.partition === partition)!.end;
    });
  }
}

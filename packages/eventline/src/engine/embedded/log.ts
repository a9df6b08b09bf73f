import type { DatabaseSync, StatementSync } from 'node:sqlite';
import { EventlineError, fail } from '../../errors.ts';
import type { TopicConfig, TopicSpec } from '../../topic.ts';
import type {
  AppendRecord,
  AppendResult,
  FetchOptions,
  PartitionOffsets,
  StoredRecord,
  TopicDescription,
} from '../types.ts';
import { decodeBatch, type EncodableRecord, encodeBatch, recordSize } from './batch-format.ts';
import type { ChangeNotifier } from './notifier.ts';
import { createPartitionTables, dropPartitionTables, logTable } from './schema.ts';
import { asBuffer, read, sqliteCode, wrapSqliteError, writeTransaction } from './sqlite.ts';

/** Records per stored batch row, and bytes per row: bounds the blob a fetch must read. */
const MAX_BATCH_RECORDS = 2000;
const MAX_BATCH_BYTES = 1024 * 1024;
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

interface PendingAppend {
  topic: string;
  records: AppendRecord[];
  resolve(results: AppendResult[]): void;
  reject(err: unknown): void;
}

interface PartitionStatements {
  fetch: StatementSync;
  insert: StatementSync;
  byTime: StatementSync;
}

/**
 * The records half of the embedded engine: topics, appends and fetches on one SQLite connection in
 * WAL mode with synchronous=FULL, so a commit is fsync'd before an append resolves.
 *
 * Appends are group-committed: every append requested before the next turn of the event loop is
 * written in one transaction (one fsync), with one batch row per partition.
 */
export class EmbeddedLog {
  readonly #db: DatabaseSync;
  readonly #path: string;
  readonly #notifier: ChangeNotifier;
  readonly #lockTimeoutMs: number;
  #topics = new Map<string, TopicMeta>();
  #statements = new Map<string, PartitionStatements>();
  #queue: PendingAppend[] = [];
  #flushScheduled = false;
  #flushing: Promise<void> | undefined;

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
      config: JSON.parse(row.config) as TopicConfig,
      readAt: Date.now(),
    };
    this.#topics.set(name, meta);
    return meta;
  }

  requireTopic(name: string, fresh = false): TopicMeta {
    const meta = this.topicMeta(name, fresh);
    if (meta === undefined) {
      fail(
        'EVENTLINE_ERR_UNKNOWN_TOPIC',
        `topic ${name} does not exist (create it with ensureTopics or \`eventline topics create\`)`,
        {
          details: { topic: name },
        },
      );
    }
    return meta;
  }

  #requirePartition(name: string, partition: number): TopicMeta {
    let meta = this.requireTopic(name);
    if (partition >= meta.partitions) meta = this.requireTopic(name, true);
    if (!Number.isInteger(partition) || partition < 0 || partition >= meta.partitions) {
      fail(
        'EVENTLINE_ERR_UNKNOWN_PARTITION',
        `topic ${name} has no partition ${partition} (it has ${meta.partitions})`,
        {
          details: { topic: name, partition },
        },
      );
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
          if (exists.get(spec.name)) {
            fail('EVENTLINE_ERR_TOPIC_EXISTS', `topic ${spec.name} already exists`, {
              details: { topic: spec.name },
            });
          }
          const { name, ...config } = spec;
          const { id } = insert.get(name, config.partitions, JSON.stringify(config), Date.now()) as {
            id: number;
          };
          for (let p = 0; p < config.partitions; p++) createPartitionTables(this.#db, Number(id), p);
        }
      },
    );
    for (const spec of specs) this.#topics.delete(spec.name);
  }

  async alterTopic(name: string, changes: Partial<TopicConfig>): Promise<void> {
    await writeTransaction(
      this.#db,
      { lockTimeoutMs: this.#lockTimeoutMs, what: `altering topic ${name}` },
      () => {
        const meta = this.requireTopic(name, true);
        const config: TopicConfig = { ...meta.config, ...changes };
        if (config.partitions < meta.partitions) {
          fail(
            'EVENTLINE_ERR_INVALID_TOPIC_CONFIG',
            `topic ${name}: partitions can only grow (has ${meta.partitions}, asked for ${config.partitions})`,
            { details: { topic: name, setting: 'partitions' } },
          );
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

  partitionOffsets(meta: TopicMeta): PartitionOffsets[] {
    const rows = read(`reading offsets of ${meta.name}`, () =>
      this.#db
        .prepare(
          'SELECT partition, start_offset, next_offset FROM el_partitions WHERE topic_id = ? ORDER BY partition',
        )
        .all(meta.id),
    ) as { partition: number; start_offset: number; next_offset: number }[];
    return rows.map((r) => ({
      partition: Number(r.partition),
      start: Number(r.start_offset),
      end: Number(r.next_offset),
    }));
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

  // ---- appends ---------------------------------------------------------------------------

  /** Queues an atomic append; resolves once it is committed and fsync'd. */
  append(topic: string, records: AppendRecord[]): Promise<AppendResult[]> {
    return new Promise((resolve, reject) => {
      this.#queue.push({ topic, records, resolve, reject });
      if (!this.#flushScheduled) {
        this.#flushScheduled = true;
        setImmediate(() => this.#startFlush());
      }
    });
  }

  /** Resolves once every queued append has been written or failed. */
  async drain(): Promise<void> {
    while (this.#queue.length > 0 || this.#flushing || this.#flushScheduled) {
      if (this.#flushing) await this.#flushing;
      else await new Promise((r) => setImmediate(r));
    }
  }

  #startFlush(): void {
    if (this.#flushing) return; // the running flush schedules the next one when it ends
    this.#flushScheduled = false;
    const batch = this.#queue;
    this.#queue = [];
    if (batch.length === 0) return;
    this.#flushing = this.#flush(batch).finally(() => {
      this.#flushing = undefined;
      if (this.#queue.length > 0) {
        this.#flushScheduled = true;
        setImmediate(() => this.#startFlush());
      }
    });
  }

  async #flush(batch: PendingAppend[]): Promise<void> {
    const failures = new Map<PendingAppend, unknown>();
    let results: Map<PendingAppend, AppendResult[]>;
    try {
      results = await writeTransaction(
        this.#db,
        { lockTimeoutMs: this.#lockTimeoutMs, what: `appending to ${this.#path}` },
        () => this.#writeBatch(batch, failures),
      );
    } catch (err) {
      for (const p of batch) p.reject(err);
      return;
    }
    let wrote = false;
    for (const p of batch) {
      const failure = failures.get(p);
      if (failure !== undefined) p.reject(failure);
      else {
        wrote = true;
        p.resolve(results.get(p)!);
      }
    }
    if (wrote) this.#notifier.notify();
  }

  /** Inside the write transaction: validate each append, then write one batch row per partition. */
  #writeBatch(
    batch: PendingAppend[],
    failures: Map<PendingAppend, unknown>,
  ): Map<PendingAppend, AppendResult[]> {
    const byPartition = new Map<
      string,
      { meta: TopicMeta; partition: number; items: [PendingAppend, number][] }
    >();
    const results = new Map<PendingAppend, AppendResult[]>();
    const metas = new Map<string, TopicMeta>();
    for (const p of batch) {
      try {
        let meta = metas.get(p.topic);
        if (meta === undefined) {
          meta = this.requireTopic(p.topic, true);
          metas.set(p.topic, meta);
        }
        this.#validate(meta, p.records);
        results.set(p, new Array(p.records.length));
        p.records.forEach((r, i) => {
          const k = `${meta.id}:${r.partition}`;
          let group = byPartition.get(k);
          if (group === undefined) {
            group = { meta, partition: r.partition, items: [] };
            byPartition.set(k, group);
          }
          group.items.push([p, i]);
        });
      } catch (err) {
        failures.set(p, err);
      }
    }
    const readState = this.#db.prepare(
      'SELECT next_offset, max_ts, bytes FROM el_partitions WHERE topic_id = ? AND partition = ?',
    );
    const writeState = this.#db.prepare(
      'UPDATE el_partitions SET next_offset = ?, max_ts = ?, bytes = ? WHERE topic_id = ? AND partition = ?',
    );
    for (const { meta, partition, items } of byPartition.values()) {
      const state = readState.get(meta.id, partition) as {
        next_offset: number;
        max_ts: number;
        bytes: number;
      };
      let next = Number(state.next_offset);
      let runMax = Number(state.max_ts);
      let bytes = Number(state.bytes);
      const insert = this.#partitionStatements(meta.id, partition).insert;
      for (let start = 0; start < items.length; ) {
        const chunk: EncodableRecord[] = [];
        let chunkBytes = 0;
        let maxTs = Number.MIN_SAFE_INTEGER;
        while (start < items.length && chunk.length < MAX_BATCH_RECORDS && chunkBytes < MAX_BATCH_BYTES) {
          const [p, i] = items[start++]!;
          const r = p.records[i]!;
          const offset = next++;
          chunk.push({ offset, timestamp: r.timestamp, key: r.key, value: r.value, headers: r.headers });
          chunkBytes += (r.key?.length ?? 0) + (r.value?.length ?? 0);
          if (r.timestamp > maxTs) maxTs = r.timestamp;
          results.get(p)![i] = { partition, offset };
        }
        const base = chunk[0]!.offset;
        const firstTs = chunk[0]!.timestamp;
        const payload = encodeBatch(chunk, base, firstTs);
        runMax = Math.max(runMax, maxTs);
        bytes += payload.length;
        insert.run(base, next - 1, chunk.length, firstTs, maxTs, runMax, payload.length, payload);
      }
      writeState.run(next, runMax, bytes, meta.id, partition);
    }
    return results;
  }

  #validate(meta: TopicMeta, records: AppendRecord[]): void {
    for (const r of records) {
      if (!Number.isInteger(r.partition) || r.partition < 0 || r.partition >= meta.partitions) {
        fail(
          'EVENTLINE_ERR_UNKNOWN_PARTITION',
          `topic ${meta.name} has no partition ${r.partition} (it has ${meta.partitions})`,
          { details: { topic: meta.name, partition: r.partition } },
        );
      }
      const size = recordSize(r.key, r.value, r.headers);
      if (size > meta.config.maxMessageBytes) {
        fail(
          'EVENTLINE_ERR_MESSAGE_TOO_LARGE',
          `a record of ${size} bytes exceeds topic ${meta.name}'s maximum message size of ${meta.config.maxMessageBytes} bytes`,
          { details: { topic: meta.name, size, limit: meta.config.maxMessageBytes } },
        );
      }
      if (meta.config.cleanupPolicy === 'compact' && r.key === null) {
        fail('EVENTLINE_ERR_INVALID_RECORD', `topic ${meta.name} is compacted: every record needs a key`, {
          details: { topic: meta.name },
        });
      }
      if (!Number.isSafeInteger(r.timestamp) || r.timestamp < 0) {
        fail(
          'EVENTLINE_ERR_INVALID_RECORD',
          `record timestamp ${r.timestamp} is not a time in milliseconds`,
          {
            details: { topic: meta.name },
          },
        );
      }
    }
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
        insert: this.#db.prepare(
          `INSERT INTO ${table} (base_offset, last_offset, record_count, first_ts, max_ts, run_max_ts, bytes, payload)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
        ),
        byTime: this.#db.prepare(
          `SELECT base_offset, first_ts, payload FROM ${table} WHERE run_max_ts >= ? ORDER BY run_max_ts, base_offset LIMIT 1`,
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
      const row = s.byTime.get(timestamp) as
        | { base_offset: number; first_ts: number; payload: Uint8Array }
        | undefined;
      if (row !== undefined) {
        const out: StoredRecord[] = [];
        decodeBatch(
          asBuffer(row.payload),
          topic,
          partition,
          Number(row.base_offset),
          Number(row.first_ts),
          0,
          out,
          Number.MAX_SAFE_INTEGER,
        );
        const hit = out.find((r) => r.timestamp >= timestamp);
        if (hit) return hit.offset;
      }
      const meta = this.requireTopic(topic);
      return this.partitionOffsets(meta).find((p) => p.partition === partition)!.end;
    });
  }
}

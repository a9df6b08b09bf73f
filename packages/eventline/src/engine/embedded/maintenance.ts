/**
 * Retention, compaction and WAL checkpoints for the embedded engine. These functions are
 * synchronous and run on their own connection in a worker thread (see maintenance-worker.ts), so
 * they never sit on the publish path; an in-memory database runs them inline.
 */
import type { DatabaseSync } from 'node:sqlite';
import { DEFAULT_TOPIC_CONFIG, type TopicConfig } from '../../topic.ts';
import type { StoredRecord } from '../types.ts';
import { decodeBatch, type EncodableRecord, encodeBatch } from './batch-format.ts';
import { logTable } from './schema.ts';
import { asBuffer, isBusy } from './sqlite.ts';

/** Batches deleted or rewritten per transaction, so appends wait at most a few milliseconds. */
const CHUNK = 500;

interface PartitionRow {
  topic_id: number;
  name: string;
  partition: number;
  config: string;
  cleaned_offset: number;
  cleaned_at: number;
  tombstones: number;
}

export interface MaintenanceReport {
  deletedBatches: number;
  compactedPartitions: number;
  removedRecords: number;
}

function immediate<T>(db: DatabaseSync, fn: () => T): T {
  db.exec('BEGIN IMMEDIATE');
  try {
    const r = fn();
    db.exec('COMMIT');
    return r;
  } catch (err) {
    if (db.isTransaction) db.exec('ROLLBACK');
    throw err;
  }
}

function partitions(db: DatabaseSync): PartitionRow[] {
  return db
    .prepare(
      `SELECT p.topic_id, t.name, p.partition, t.config, p.cleaned_offset, p.cleaned_at, p.tombstones
       FROM el_partitions p JOIN el_topics t ON t.id = p.topic_id ORDER BY p.topic_id, p.partition`,
    )
    .all() as unknown as PartitionRow[];
}

/** Stored bytes of a partition (at or after `from`). */
function storedBytes(db: DatabaseSync, table: string, from = 0): number {
  const row = db
    .prepare(`SELECT coalesce(sum(bytes), 0) AS b FROM ${table} WHERE base_offset >= ?`)
    .get(from) as {
    b: number;
  };
  return Number(row.b);
}

/** The partition's end offset: one past its last batch, or the floor kept in el_partitions. */
function endOffset(db: DatabaseSync, p: PartitionRow, table: string): number {
  const floor = db
    .prepare('SELECT next_offset FROM el_partitions WHERE topic_id = ? AND partition = ?')
    .get(p.topic_id, p.partition) as { next_offset: number };
  const tail = db.prepare(`SELECT last_offset FROM ${table} ORDER BY base_offset DESC LIMIT 1`).get() as
    | { last_offset: number }
    | undefined;
  return Math.max(Number(floor.next_offset), tail === undefined ? 0 : Number(tail.last_offset) + 1);
}

/**
 * Deleting batches may delete the last one: keep the end offset and running maximum timestamp as
 * floors, so offsets are never handed out twice.
 */
function raiseFloors(db: DatabaseSync, p: PartitionRow, nextOffset: number, runMaxTs: number): void {
  db.prepare(
    'UPDATE el_partitions SET next_offset = max(next_offset, ?), max_ts = max(max_ts, ?) WHERE topic_id = ? AND partition = ?',
  ).run(nextOffset, runMaxTs, p.topic_id, p.partition);
}

/**
 * Deletes whole batches from the head of each partition of a `delete` topic: those whose newest
 * record is older than `retentionMs`, and the oldest while the partition would still hold at least
 * `retentionBytes` without them (Kafka's rule for segments).
 */
export function applyRetention(db: DatabaseSync, now: number): number {
  let deleted = 0;
  for (const p of partitions(db)) {
    const config: TopicConfig = {
      ...DEFAULT_TOPIC_CONFIG,
      ...(JSON.parse(p.config) as Partial<TopicConfig>),
    };
    if (config.cleanupPolicy !== 'delete' || (config.retentionMs === null && config.retentionBytes === null))
      continue;
    const table = logTable(Number(p.topic_id), Number(p.partition));
    for (;;) {
      const n = immediate(db, () => {
        let total = config.retentionBytes === null ? 0 : storedBytes(db, table);
        const rows = db
          .prepare(
            `SELECT base_offset, last_offset, max_ts, run_max_ts, bytes FROM ${table} ORDER BY base_offset LIMIT ?`,
          )
          .all(CHUNK) as {
          base_offset: number;
          last_offset: number;
          max_ts: number;
          run_max_ts: number;
          bytes: number;
        }[];
        let upTo = -1;
        let runMax = 0;
        let count = 0;
        for (const row of rows) {
          const expired = config.retentionMs !== null && Number(row.max_ts) < now - config.retentionMs;
          const oversize =
            config.retentionBytes !== null && total - Number(row.bytes) >= config.retentionBytes;
          if (!expired && !oversize) break;
          upTo = Number(row.last_offset);
          runMax = Number(row.run_max_ts);
          total -= Number(row.bytes);
          count++;
        }
        if (count === 0) return 0;
        db.prepare(`DELETE FROM ${table} WHERE base_offset <= ?`).run(upTo);
        db.prepare(
          'UPDATE el_partitions SET start_offset = max(start_offset, ?) WHERE topic_id = ? AND partition = ?',
        ).run(upTo + 1, p.topic_id, p.partition);
        raiseFloors(db, p, upTo + 1, runMax);
        return count;
      });
      deleted += n;
      if (n < CHUNK) break;
    }
  }
  return deleted;
}

function keyId(key: Buffer | null): string {
  return key === null ? '' : key.toString('latin1');
}

/**
 * Compacts each partition of a `compact` topic that is dirty enough (or every one when `force`):
 * keeps only the newest record per key. A tombstone goes once it has been in the cleaned part of
 * the log for `deleteRetentionMs` (Kafka's delete horizon). Offsets never change; compaction only
 * leaves gaps.
 */
export function compact(
  db: DatabaseSync,
  now: number,
  force: boolean,
): { partitions: number; removed: number } {
  let compacted = 0;
  let removed = 0;
  for (const p of partitions(db)) {
    const config: TopicConfig = {
      ...DEFAULT_TOPIC_CONFIG,
      ...(JSON.parse(p.config) as Partial<TopicConfig>),
    };
    if (config.cleanupPolicy !== 'compact') continue;
    const table = logTable(Number(p.topic_id), Number(p.partition));
    const tombstonesDue = Number(p.tombstones) > 0 && now - Number(p.cleaned_at) >= config.deleteRetentionMs;
    if (!force && !tombstonesDue) {
      const dirtyBytes = storedBytes(db, table, Number(p.cleaned_offset));
      if (dirtyBytes === 0 || dirtyBytes < config.minCleanableDirtyRatio * storedBytes(db, table)) continue;
    }
    // Tombstones below this offset have been cleaned at least deleteRetentionMs ago.
    const horizon = Number(
      (
        db
          .prepare(
            `SELECT coalesce(max(cleaned_offset), 0) AS h FROM el_cleanings
             WHERE topic_id = ? AND partition = ? AND cleaned_at <= ?`,
          )
          .get(p.topic_id, p.partition, now - config.deleteRetentionMs) as { h: number }
      ).h,
    );
    const name = p.name;
    const partition = Number(p.partition);

    // 1. The newest offset of every key, from one consistent snapshot of the log below `end`.
    const latest = new Map<string, number>();
    let end = 0;
    db.exec('BEGIN');
    try {
      end = endOffset(db, p, table);
      for (const row of db
        .prepare(
          `SELECT base_offset, first_ts, payload FROM ${table} WHERE base_offset < ? ORDER BY base_offset`,
        )
        .iterate(end) as Iterable<{ base_offset: number; first_ts: number; payload: Uint8Array }>) {
        const out: StoredRecord[] = [];
        decodeBatch(
          asBuffer(row.payload),
          name,
          partition,
          Number(row.base_offset),
          Number(row.first_ts),
          0,
          out,
          Infinity,
        );
        for (const r of out) latest.set(keyId(r.key), r.offset);
      }
    } finally {
      db.exec('COMMIT');
    }

    // 2. Rewrite the batches below `end`, a chunk per transaction. Appends only add batches at or
    //    after `end`, so the map stays right while we work.
    let after = -1;
    let tombstones = 0;
    for (;;) {
      const done = immediate(db, () => {
        const rows = db
          .prepare(
            `SELECT base_offset, last_offset, run_max_ts, record_count, first_ts, payload FROM ${table}
             WHERE base_offset > ? AND base_offset < ? ORDER BY base_offset LIMIT ?`,
          )
          .all(after, end, CHUNK) as {
          base_offset: number;
          last_offset: number;
          run_max_ts: number;
          record_count: number;
          first_ts: number;
          payload: Uint8Array;
        }[];
        for (const row of rows) {
          const base = Number(row.base_offset);
          after = base;
          const records: StoredRecord[] = [];
          decodeBatch(
            asBuffer(row.payload),
            name,
            partition,
            base,
            Number(row.first_ts),
            0,
            records,
            Infinity,
          );
          const keep: EncodableRecord[] = records.filter(
            (r) => latest.get(keyId(r.key)) === r.offset && !(r.value === null && r.offset < horizon),
          );
          for (const r of keep) if (r.value === null) tombstones++;
          if (keep.length === records.length) continue;
          removed += records.length - keep.length;
          if (keep.length === 0) {
            db.prepare(`DELETE FROM ${table} WHERE base_offset = ?`).run(base);
            raiseFloors(db, p, Number(row.last_offset) + 1, Number(row.run_max_ts));
            continue;
          }
          const payload = encodeBatch(keep, base, keep[0]!.timestamp);
          const maxTs = Math.max(...keep.map((r) => r.timestamp));
          db.prepare(
            `UPDATE ${table} SET record_count = ?, first_ts = ?, max_ts = ?, bytes = ?, payload = ? WHERE base_offset = ?`,
          ).run(keep.length, keep[0]!.timestamp, maxTs, payload.length, payload, base);
        }
        return rows.length < CHUNK;
      });
      if (done) break;
    }
    immediate(db, () => {
      db.prepare(
        `UPDATE el_partitions SET cleaned_offset = ?, cleaned_at = ?, tombstones = ?
         WHERE topic_id = ? AND partition = ?`,
      ).run(end, now, tombstones, p.topic_id, p.partition);
      db.prepare(
        `INSERT INTO el_cleanings (topic_id, partition, cleaned_offset, cleaned_at) VALUES (?, ?, ?, ?)
         ON CONFLICT DO UPDATE SET cleaned_at = min(cleaned_at, excluded.cleaned_at)`,
      ).run(p.topic_id, p.partition, end, now);
      // Passes older than the current horizon are no longer needed.
      db.prepare(
        'DELETE FROM el_cleanings WHERE topic_id = ? AND partition = ? AND cleaned_offset < ? AND cleaned_at <= ?',
      ).run(p.topic_id, p.partition, horizon, now - config.deleteRetentionMs);
    });
    compacted++;
  }
  return { partitions: compacted, removed };
}

/** Copies the WAL into the database without waiting on readers or writers. */
export function checkpoint(db: DatabaseSync): void {
  try {
    db.exec('PRAGMA wal_checkpoint(PASSIVE)');
  } catch (err) {
    if (!isBusy(err)) throw err;
  }
}

/** One full maintenance pass. */
export function runMaintenancePass(
  db: DatabaseSync,
  options: { force: boolean; now?: number },
): MaintenanceReport {
  const now = options.now ?? Date.now();
  const deletedBatches = applyRetention(db, now);
  const { partitions: compactedPartitions, removed } = compact(db, now, options.force);
  return { deletedBatches, compactedPartitions, removedRecords: removed };
}

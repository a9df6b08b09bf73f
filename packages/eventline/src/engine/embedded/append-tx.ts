/**
 * The append transaction. Records arrive encoded as batch payloads, grouped in units: one unit is
 * the appends to one topic gathered in one turn of the event loop, and is stored all or nothing.
 */
import type { DatabaseSync, StatementSync } from 'node:sqlite';
import { EventlineError } from '../../errors.ts';
import { refuse } from '../validate.ts';
import { logTable } from './schema.ts';

export interface AppendChunk {
  partition: number;
  count: number;
  firstTs: number;
  maxTs: number;
  /** Records encoded with offset deltas from the chunk's (not yet known) base offset. */
  payload: Uint8Array;
}

export interface AppendUnit {
  id: number;
  topic: string;
  /** The topic id the sender saw: a topic deleted and created again in between is refused. */
  topicId: number;
  chunks: AppendChunk[];
  /** False for a topic declared `fsync: false`: its commit need not wait for the disk. */
  fsync: boolean;
}

export interface UnitOutcome {
  id: number;
  /** Base offset of each chunk, in order; absent when the unit failed. */
  bases?: number[];
  error?: EventlineError;
}

const caches = new WeakMap<DatabaseSync, Map<string, StatementSync>>();

/** Prepared statements of a connection, by SQL text (node:sqlite keeps no cache of its own). */
function statementCache(db: DatabaseSync): (sql: string) => StatementSync {
  let cache = caches.get(db);
  if (cache === undefined) {
    cache = new Map();
    caches.set(db, cache);
  }
  const c = cache;
  return (sql) => {
    let st = c.get(sql);
    if (st === undefined) {
      st = db.prepare(sql);
      if (c.size > 1000) c.clear();
      c.set(sql, st);
    }
    return st;
  };
}

/**
 * Writes units inside the caller's write transaction. A unit whose topic is gone, or whose
 * partitions no longer exist, fails alone; the others are written. Returns one outcome per unit.
 */
export function writeUnits(db: DatabaseSync, units: readonly AppendUnit[]): UnitOutcome[] {
  const prepare = statementCache(db);
  const topicOf = prepare('SELECT id, partitions FROM el_topics WHERE name = ?');
  const floorOf = prepare(
    'SELECT next_offset, max_ts FROM el_partitions WHERE topic_id = ? AND partition = ?',
  );
  const state = new Map<string, { next: number; runMax: number }>();
  const outcomes: UnitOutcome[] = [];
  for (const unit of units) {
    const topic = topicOf.get(unit.topic) as { id: number; partitions: number } | undefined;
    if (topic === undefined || Number(topic.id) !== unit.topicId) {
      outcomes.push({
        id: unit.id,
        error: new EventlineError(
          'EVENTLINE_ERR_UNKNOWN_TOPIC',
          `topic ${unit.topic} does not exist (it was deleted)`,
          {
            details: { topic: unit.topic },
          },
        ),
      });
      continue;
    }
    const missing = unit.chunks.find((c) => c.partition >= Number(topic.partitions));
    if (missing !== undefined) {
      outcomes.push({
        id: unit.id,
        error: refuse.unknownPartition(unit.topic, missing.partition, Number(topic.partitions)),
      });
      continue;
    }
    const bases: number[] = [];
    for (const chunk of unit.chunks) {
      const table = logTable(unit.topicId, chunk.partition);
      const key = `${unit.topicId}:${chunk.partition}`;
      let s = state.get(key);
      if (s === undefined) {
        const floor = floorOf.get(unit.topicId, chunk.partition) as { next_offset: number; max_ts: number };
        const tail = prepare(
          `SELECT last_offset, run_max_ts FROM ${table} ORDER BY base_offset DESC LIMIT 1`,
        ).get() as { last_offset: number; run_max_ts: number } | undefined;
        s = {
          next: Math.max(Number(floor.next_offset), tail === undefined ? 0 : Number(tail.last_offset) + 1),
          runMax: Math.max(Number(floor.max_ts), tail === undefined ? 0 : Number(tail.run_max_ts)),
        };
        state.set(key, s);
      }
      const base = s.next;
      s.next += chunk.count;
      s.runMax = Math.max(s.runMax, chunk.maxTs);
      prepare(
        `INSERT INTO ${table} (base_offset, last_offset, record_count, first_ts, max_ts, run_max_ts, bytes, payload)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
      ).run(
        base,
        s.next - 1,
        chunk.count,
        chunk.firstTs,
        chunk.maxTs,
        s.runMax,
        chunk.payload.length,
        chunk.payload,
      );
      bases.push(base);
    }
    outcomes.push({ id: unit.id, bases });
  }
  return outcomes;
}

import type { DatabaseSync } from 'node:sqlite';
import { EventlineError } from '../../errors.ts';

/** Bumped whenever the layout changes; a newer file is refused rather than misread. */
export const SCHEMA_VERSION = 2;

const DDL = `
CREATE TABLE IF NOT EXISTS el_meta (
  key TEXT PRIMARY KEY,
  value TEXT NOT NULL
) STRICT;

CREATE TABLE IF NOT EXISTS el_topics (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  name TEXT NOT NULL UNIQUE,
  partitions INTEGER NOT NULL,
  config TEXT NOT NULL,
  created_at INTEGER NOT NULL
) STRICT;

-- Per partition: the log start, and floors for the end offset and running maximum timestamp.
-- Appends never write here (one page less per commit): the end is the larger of next_offset and
-- one past the last stored batch. Maintenance raises the floors when it deletes the last batches.
CREATE TABLE IF NOT EXISTS el_partitions (
  topic_id INTEGER NOT NULL,
  partition INTEGER NOT NULL,
  start_offset INTEGER NOT NULL DEFAULT 0,
  next_offset INTEGER NOT NULL DEFAULT 0,
  max_ts INTEGER NOT NULL DEFAULT 0,
  cleaned_offset INTEGER NOT NULL DEFAULT 0,
  cleaned_at INTEGER NOT NULL DEFAULT 0,
  tombstones INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (topic_id, partition)
) STRICT, WITHOUT ROWID;

-- Compaction passes: a tombstone is removed once it has been below a pass's end offset for
-- delete.retention.ms (Kafka's delete horizon), so readers that were behind can still see it.
CREATE TABLE IF NOT EXISTS el_cleanings (
  topic_id INTEGER NOT NULL,
  partition INTEGER NOT NULL,
  cleaned_offset INTEGER NOT NULL,
  cleaned_at INTEGER NOT NULL,
  PRIMARY KEY (topic_id, partition, cleaned_offset)
) STRICT, WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS el_groups (
  name TEXT PRIMARY KEY,
  generation INTEGER NOT NULL DEFAULT 0,
  epoch INTEGER NOT NULL DEFAULT 0,
  created_at INTEGER NOT NULL
) STRICT;

CREATE TABLE IF NOT EXISTS el_members (
  grp TEXT NOT NULL,
  member_id TEXT NOT NULL,
  client_id TEXT NOT NULL,
  host TEXT NOT NULL,
  pid INTEGER NOT NULL,
  topics TEXT NOT NULL,
  session_timeout_ms INTEGER NOT NULL,
  joined_at INTEGER NOT NULL,
  heartbeat_at INTEGER NOT NULL,
  PRIMARY KEY (grp, member_id)
) STRICT, WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS el_assignments (
  grp TEXT NOT NULL,
  topic TEXT NOT NULL,
  partition INTEGER NOT NULL,
  target TEXT,
  owner TEXT,
  PRIMARY KEY (grp, topic, partition)
) STRICT, WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS el_offsets (
  grp TEXT NOT NULL,
  topic TEXT NOT NULL,
  partition INTEGER NOT NULL,
  next_offset INTEGER NOT NULL,
  committed_at INTEGER NOT NULL,
  metadata TEXT,
  PRIMARY KEY (grp, topic, partition)
) STRICT, WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS el_leases (
  name TEXT PRIMARY KEY,
  holder TEXT NOT NULL,
  expires_at INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
`;

/** The table holding the record batches of one partition. Ids never repeat (AUTOINCREMENT). */
export function logTable(topicId: number, partition: number): string {
  return `el_log_${topicId}_${partition}`;
}

/** Creates the tables of a new partition. Runs inside the caller's write transaction. */
export function createPartitionTables(db: DatabaseSync, topicId: number, partition: number): void {
  const t = logTable(topicId, partition);
  // One row per record batch. run_max_ts is the largest timestamp up to and including this batch,
  // which makes it monotonic in base_offset, so a time lookup is a binary search over batches
  // (as Kafka's time index) without an index to update on every append.
  db.exec(`CREATE TABLE ${t} (
    base_offset INTEGER PRIMARY KEY,
    last_offset INTEGER NOT NULL,
    record_count INTEGER NOT NULL,
    first_ts INTEGER NOT NULL,
    max_ts INTEGER NOT NULL,
    run_max_ts INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    payload BLOB NOT NULL
  ) STRICT`);
  db.prepare('INSERT INTO el_partitions (topic_id, partition) VALUES (?, ?)').run(topicId, partition);
}

export function dropPartitionTables(db: DatabaseSync, topicId: number, partition: number): void {
  db.exec(`DROP TABLE IF EXISTS ${logTable(topicId, partition)}`);
}

/**
 * Creates the schema on a new file and checks the version on an existing one. Runs in a write
 * transaction taken by the caller.
 */
export function ensureSchema(db: DatabaseSync, where: string): void {
  db.exec(DDL);
  const row = db.prepare("SELECT value FROM el_meta WHERE key = 'schema_version'").get() as
    | { value: string }
    | undefined;
  if (row === undefined) {
    db.prepare("INSERT INTO el_meta (key, value) VALUES ('schema_version', ?)").run(String(SCHEMA_VERSION));
  } else if (Number(row.value) === 1) {
    // Layout 2 keeps commit metadata with each committed offset.
    db.exec('ALTER TABLE el_offsets ADD COLUMN metadata TEXT');
    db.prepare("UPDATE el_meta SET value = ? WHERE key = 'schema_version'").run(String(SCHEMA_VERSION));
  } else if (Number(row.value) > SCHEMA_VERSION) {
    throw new EventlineError(
      'EVENTLINE_ERR_ENGINE_UNAVAILABLE',
      `${where}: the database was written by a newer Eventline (layout ${row.value}, this one reads ${SCHEMA_VERSION})`,
    );
  }
}

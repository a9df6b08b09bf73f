import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { setTimeout as sleep } from 'node:timers/promises';
import { EventlineError } from '../../errors.ts';

/** SQLite primary result codes we act on (https://sqlite.org/rescode.html). */
const SQLITE_BUSY = 5;
const SQLITE_LOCKED = 6;
const SQLITE_READONLY = 8;
const SQLITE_IOERR = 10;
const SQLITE_CORRUPT = 11;
const SQLITE_FULL = 13;
const SQLITE_CANTOPEN = 14;
const SQLITE_NOTADB = 26;

/** The primary result code of a node:sqlite error, or undefined for anything else. */
export function sqliteCode(err: unknown): number | undefined {
  if (typeof err === 'object' && err !== null && (err as { code?: unknown }).code === 'ERR_SQLITE_ERROR') {
    const errcode = (err as { errcode?: unknown }).errcode;
    if (typeof errcode === 'number') return errcode & 0xff;
  }
  return undefined;
}

export function isBusy(err: unknown): boolean {
  const code = sqliteCode(err);
  return code === SQLITE_BUSY || code === SQLITE_LOCKED;
}

/**
 * Wraps a node:sqlite error in an EventlineError chosen by SQLite's result code (never by message
 * text). `where` says what was being done and to which file.
 */
export function wrapSqliteError(err: unknown, where: string): EventlineError {
  if (err instanceof EventlineError) return err;
  const code = sqliteCode(err);
  const reason = err instanceof Error ? err.message : String(err);
  switch (code) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return new EventlineError(
        'EVENTLINE_ERR_ENGINE_BUSY',
        `${where}: the database is locked by another process`,
        {
          cause: err,
        },
      );
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
      return new EventlineError(
        'EVENTLINE_ERR_DATABASE_CORRUPT',
        `${where}: the file is damaged or is not an Eventline database (${reason}); it was left untouched`,
        { cause: err },
      );
    case SQLITE_FULL:
      return new EventlineError('EVENTLINE_ERR_STORAGE_FULL', `${where}: the disk is full`, { cause: err });
    case SQLITE_CANTOPEN:
    case SQLITE_READONLY:
    case SQLITE_IOERR:
      return new EventlineError('EVENTLINE_ERR_ENGINE_UNAVAILABLE', `${where}: ${reason}`, { cause: err });
    default:
      return new EventlineError('EVENTLINE_ERR_INTERNAL', `${where}: ${reason}`, { cause: err });
  }
}

export interface OpenOptions {
  /** `FULL` fsyncs the WAL at every commit (records); `NORMAL` only at checkpoints (group metadata). */
  synchronous: 'FULL' | 'NORMAL';
  /**
   * How long SQLite itself waits on a lock before returning BUSY. SQLite waits by sleeping the
   * thread, so on the main thread this is 0 and `writeTransaction` waits asynchronously instead.
   */
  busyTimeoutMs?: number;
  /**
   * WAL pages after which a commit checkpoints. Default 0: the engine's checkpoints run in its
   * maintenance worker, never inside a publish. Connections without such a worker set one.
   */
  autocheckpoint?: number;
  /** The page size of a new database (an existing one keeps its own). Default 16384. */
  pageSize?: number;
}

/**
 * Opens a connection in WAL mode with Eventline's settings. The file and its folder are created when
 * missing; a file that is not a database is reported and never overwritten.
 */
export function openDatabase(path: string, options: OpenOptions): DatabaseSync {
  const where = `opening ${path}`;
  const memory = path === ':memory:';
  if (!memory) {
    try {
      mkdirSync(dirname(path), { recursive: true });
    } catch (err) {
      throw new EventlineError('EVENTLINE_ERR_ENGINE_UNAVAILABLE', `${where}: cannot create its folder`, {
        cause: err,
      });
    }
  }
  let db: DatabaseSync;
  try {
    db = new DatabaseSync(path, { timeout: options.busyTimeoutMs ?? 0 });
  } catch (err) {
    throw wrapSqliteError(err, where);
  }
  try {
    // page_size only takes effect on a new database; 16 KiB pages suit large batch rows.
    db.exec(`PRAGMA page_size = ${options.pageSize ?? 16384}`);
    if (!memory) {
      const mode = db.prepare('PRAGMA journal_mode = WAL').get() as { journal_mode: string } | undefined;
      if (mode?.journal_mode !== 'wal') {
        throw new EventlineError(
          'EVENTLINE_ERR_ENGINE_UNAVAILABLE',
          `${where}: WAL mode could not be enabled`,
        );
      }
    }
    db.exec(`PRAGMA synchronous = ${options.synchronous}`);
    db.exec(`PRAGMA wal_autocheckpoint = ${options.autocheckpoint ?? 0}`);
    db.exec('PRAGMA journal_size_limit = 67108864');
    db.exec('PRAGMA cache_size = -32768');
    db.exec('PRAGMA temp_store = MEMORY');
  } catch (err) {
    try {
      db.close();
    } catch {
      // already failing; the first error is the one to report
    }
    throw wrapSqliteError(err, where);
  }
  return db;
}

export interface TransactionOptions {
  /** Total time to keep retrying while another process holds the write lock. */
  lockTimeoutMs: number;
  /** For error messages: what was being done. */
  what: string;
}

/**
 * Runs `fn` inside `BEGIN IMMEDIATE … COMMIT`. While another connection holds the write lock it
 * retries with short sleeps that yield the event loop, up to `lockTimeoutMs`, then fails with
 * EVENTLINE_ERR_ENGINE_BUSY. On any error the transaction is rolled back, so nothing half-written is
 * ever visible.
 */
export function writeTransaction<T>(db: DatabaseSync, options: TransactionOptions, fn: () => T): Promise<T> {
  return beginImmediate(db, options, () => finishTransaction(db, options.what, fn));
}

/**
 * `BEGIN IMMEDIATE`, retried with short sleeps that yield the event loop while another connection
 * holds the write lock, up to `lockTimeoutMs` (then EVENTLINE_ERR_ENGINE_BUSY); then `body` runs at
 * once, with nothing else of this process in between.
 */
export async function beginImmediate<T>(
  db: DatabaseSync,
  options: TransactionOptions,
  body: () => T,
): Promise<Awaited<T>> {
  const deadline = Date.now() + options.lockTimeoutMs;
  for (let attempt = 0; ; attempt++) {
    try {
      db.exec('BEGIN IMMEDIATE');
    } catch (err) {
      if (!isBusy(err) || Date.now() >= deadline) throw wrapSqliteError(err, options.what);
      await sleep(Math.min(2 ** attempt, 50));
      continue;
    }
    return (await body()) as Awaited<T>;
  }
}

/** The synchronous tail of a write transaction: run, commit, or roll back and wrap the error. */
export function finishTransaction<T>(db: DatabaseSync, what: string, fn: () => T): T {
  try {
    const result = fn();
    db.exec('COMMIT');
    return result;
  } catch (err) {
    try {
      if (db.isTransaction) db.exec('ROLLBACK');
    } catch {
      // the connection is unusable; the original error says why
    }
    throw wrapSqliteError(err, what);
  }
}

/** Wraps a synchronous read, mapping SQLite errors. */
export function read<T>(what: string, fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    throw wrapSqliteError(err, what);
  }
}

/** node:sqlite returns BLOBs as Uint8Array; this views the same memory as a Buffer without copying. */
export function asBuffer(u8: Uint8Array): Buffer {
  return Buffer.from(u8.buffer, u8.byteOffset, u8.byteLength);
}

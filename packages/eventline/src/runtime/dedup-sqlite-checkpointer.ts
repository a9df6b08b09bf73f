/**
 * The checkpoint thread of a SQLite dedup store that opened its own file: every interval it copies
 * the WAL into the database on a connection of its own, so the page writes and fsyncs of a
 * checkpoint never hold up a flush of marks on the main thread (as the embedded engine's
 * maintenance worker does for its database).
 */
import { parentPort, workerData } from 'node:worker_threads';
import { isBusy, openDatabase } from '../engine/embedded/sqlite.ts';

export interface CheckpointerData {
  path: string;
  intervalMs: number;
}

const data = workerData as CheckpointerData;
const db = openDatabase(data.path, { synchronous: 'NORMAL', busyTimeoutMs: 5000 });

function checkpoint(): void {
  try {
    db.exec('PRAGMA wal_checkpoint(PASSIVE)');
  } catch (err) {
    // Busy: the next tick tries again. Anything else ends the thread; the store's own connection
    // then checkpoints by itself once its WAL grows past its limit.
    if (!isBusy(err)) throw err;
  }
}

const timer = setInterval(checkpoint, data.intervalMs);

parentPort!.on('message', (msg: 'stop') => {
  if (msg !== 'stop') return;
  clearInterval(timer);
  try {
    checkpoint();
    db.close();
  } finally {
    parentPort!.close();
  }
});

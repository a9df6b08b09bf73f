/**
 * The maintenance worker: a thread with its own connection that checkpoints the WAL and runs
 * retention and compaction on a timer, so none of it happens inside a publish.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { checkpoint, runMaintenancePass } from './maintenance.ts';
import { openDatabase } from './sqlite.ts';

export interface MaintenanceWorkerData {
  path: string;
  checkpointIntervalMs: number;
  retentionIntervalMs: number;
}

export type MaintenanceRequest = { type: 'run'; id: number; force: boolean } | { type: 'stop' };
export type MaintenanceReply =
  | { type: 'done'; id: number; report: ReturnType<typeof runMaintenancePass> }
  | { type: 'failed'; id: number; message: string };

const data = workerData as MaintenanceWorkerData;
// A worker may block: give SQLite a generous lock wait of its own.
const db = openDatabase(data.path, { synchronous: 'NORMAL', busyTimeoutMs: 5000 });

const checkpointTimer = setInterval(() => {
  try {
    checkpoint(db);
  } catch {
    // the next tick tries again
  }
}, data.checkpointIntervalMs);

const retentionTimer = setInterval(() => {
  try {
    runMaintenancePass(db, { force: false });
  } catch {
    // the next tick tries again
  }
}, data.retentionIntervalMs);

parentPort!.on('message', (msg: MaintenanceRequest) => {
  if (msg.type === 'stop') {
    clearInterval(checkpointTimer);
    clearInterval(retentionTimer);
    try {
      checkpoint(db);
      db.close();
    } finally {
      parentPort!.close();
    }
    return;
  }
  try {
    const report = runMaintenancePass(db, { force: msg.force });
    checkpoint(db);
    parentPort!.postMessage({ type: 'done', id: msg.id, report } satisfies MaintenanceReply);
  } catch (err) {
    parentPort!.postMessage({
      type: 'failed',
      id: msg.id,
      message: err instanceof Error ? err.message : String(err),
    } satisfies MaintenanceReply);
  }
});

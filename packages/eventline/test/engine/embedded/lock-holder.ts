/**
 * Holds a database's write lock from another process until told to stop (stdin closes) or killed:
 * `mode` 'write' holds a write transaction; 'exclusive' takes SQLite's exclusive locking mode,
 * which also shuts out readers.
 */
import { DatabaseSync } from 'node:sqlite';

const { path, mode } = JSON.parse(process.argv[2]!) as { path: string; mode: 'write' | 'exclusive' };
const db = new DatabaseSync(path);
if (mode === 'exclusive') {
  db.exec('PRAGMA locking_mode = EXCLUSIVE');
  db.exec('BEGIN EXCLUSIVE');
  db.exec('COMMIT');
} else {
  db.exec('BEGIN IMMEDIATE');
  db.exec("UPDATE el_meta SET value = value WHERE key = 'schema_version'");
}
process.stdout.write(`${JSON.stringify({ locked: true })}\n`);
process.stdin.resume();
process.stdin.on('end', () => {
  if (db.isTransaction) db.exec('ROLLBACK');
  db.close();
  process.exit(0);
});

import { closeSync, type FSWatcher, openSync, watch, writeSync } from 'node:fs';
import { basename, dirname } from 'node:path';
import { Wakeup } from '../../util/wakeup.ts';

const TOUCH = Buffer.from([1]);

/**
 * Wakes waiting consumers when the log may have changed, without busy polling:
 *
 * - at once for commits made by this process;
 * - through inotify for commits made by other processes. After each commit a writer rewrites one
 *   byte of `<database>-notify`; readers watch the database's folder for that file. (Watching the
 *   WAL itself would wake readers when the commit is written but before it is visible.)
 *
 * Waiters still time out, so a lost event costs at most one wait period.
 */
export class ChangeNotifier {
  readonly #wakeup = new Wakeup();
  #watcher: FSWatcher | undefined;
  #fd: number | undefined;

  /** `path` of the database file; undefined for an in-memory database. */
  constructor(path: string | undefined) {
    if (path === undefined) return;
    const name = `${basename(path)}-notify`;
    try {
      this.#fd = openSync(`${path}-notify`, 'w');
      this.#watcher = watch(dirname(path), { persistent: false }, (_event, filename) => {
        if (filename === null || filename === name) this.#wakeup.wake();
      });
      this.#watcher.on('error', () => {
        // The folder went away or the watch limit was reached: fall back to timed waits.
        this.#watcher?.close();
        this.#watcher = undefined;
      });
    } catch {
      this.#watcher = undefined;
    }
  }

  /** A counter that moves on every change; compare before and after a read to avoid lost wake-ups. */
  get seq(): number {
    return this.#wakeup.seq;
  }

  /** Called after this process committed: wakes local waiters and tells other processes. */
  notify(): void {
    if (this.#fd !== undefined) {
      try {
        writeSync(this.#fd, TOUCH, 0, 1, 0);
      } catch {
        // other processes fall back to timed waits
      }
    }
    this.#wakeup.wake();
  }

  /** Wakes this process's waiters only (a seek or resume, which other processes need not hear of). */
  wakeLocal(): void {
    this.#wakeup.wake();
  }

  /**
   * Resolves on the next change after `sinceSeq` (at once if one already happened), after
   * `maxWaitMs`, or when the signal aborts.
   */
  wait(sinceSeq: number, maxWaitMs: number, signal?: AbortSignal): Promise<void> {
    return this.#wakeup.wait(sinceSeq, maxWaitMs, signal);
  }

  close(): void {
    this.#watcher?.close();
    this.#watcher = undefined;
    if (this.#fd !== undefined) closeSync(this.#fd);
    this.#fd = undefined;
    this.#wakeup.wake();
  }
}

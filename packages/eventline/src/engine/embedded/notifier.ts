import { type FSWatcher, watch } from 'node:fs';
import { basename, dirname } from 'node:path';

/**
 * Wakes waiting consumers when the log may have changed: at once for appends made by this process,
 * and through inotify on the database's folder for commits made by other processes (every commit
 * writes the WAL file). No busy polling; waiters still time out so a lost event costs at most one
 * wait period.
 */
export class ChangeNotifier {
  #seq = 0;
  #waiters = new Set<() => void>();
  #watcher: FSWatcher | undefined;

  /** `path` of the database file; undefined for an in-memory database. */
  constructor(path: string | undefined) {
    if (path === undefined) return;
    const wal = `${basename(path)}-wal`;
    try {
      this.#watcher = watch(dirname(path), { persistent: false }, (_event, filename) => {
        if (filename === null || filename === wal) this.notify();
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
    return this.#seq;
  }

  notify(): void {
    this.#seq++;
    const waiters = [...this.#waiters];
    this.#waiters.clear();
    for (const wake of waiters) wake();
  }

  /**
   * Resolves on the next change after `sinceSeq` (at once if one already happened), after
   * `maxWaitMs`, or when the signal aborts.
   */
  wait(sinceSeq: number, maxWaitMs: number, signal?: AbortSignal): Promise<void> {
    if (this.#seq !== sinceSeq || signal?.aborted || maxWaitMs <= 0) return Promise.resolve();
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.#waiters.delete(done);
        signal?.removeEventListener('abort', done);
        resolve();
      };
      const timer = setTimeout(done, maxWaitMs);
      this.#waiters.add(done);
      signal?.addEventListener('abort', done, { once: true });
    });
  }

  close(): void {
    this.#watcher?.close();
    this.#watcher = undefined;
    this.notify();
  }
}

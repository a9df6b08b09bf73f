/**
 * Wake-ups for loops that wait for something to change: `wait` resolves on the next `wake` after
 * the sequence number the caller saw (at once if one already happened, so no wake-up is lost
 * between a check and the wait), after a timeout, or when a signal aborts.
 */
export class Wakeup {
  #seq = 0;
  #waiters = new Set<() => void>();

  /** Moves on every wake; read it before checking for work, pass it to `wait`. */
  get seq(): number {
    return this.#seq;
  }

  wake(): void {
    this.#seq++;
    if (this.#waiters.size === 0) return;
    const waiters = [...this.#waiters];
    this.#waiters.clear();
    for (const wake of waiters) wake();
  }

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
}

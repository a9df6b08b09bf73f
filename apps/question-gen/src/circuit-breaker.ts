/**
 * A small circuit breaker for the LLM call. Closed: calls go through. After `failureThreshold`
 * failures in a row it opens: calls fail at once with `CircuitOpenError` for `cooldownMs`, so a
 * struggling API is not hammered by every retry. Then half-open: one trial call goes through
 * (others still fail fast); its success closes the breaker, its failure opens it again.
 */

export type CircuitState = 'closed' | 'open' | 'half-open';

export interface CircuitBreakerOptions {
  /** Consecutive failures that open the breaker. Default 5. */
  failureThreshold?: number;
  /** How long it stays open before a trial call. Default 30 000 ms. */
  cooldownMs?: number;
  /** Which errors count as failures of the dependency. Default: all. */
  isFailure?: (err: unknown) => boolean;
  /** The clock (tests pass their own). Default `Date.now`. */
  now?: () => number;
  /** Told when the state changes. */
  onStateChange?: (state: CircuitState, previous: CircuitState) => void;
}

/** Refused without calling: the breaker is open. Retryable once `retryInMs` has passed. */
export class CircuitOpenError extends Error {
  override name = 'CircuitOpenError';
  readonly code = 'CIRCUIT_OPEN';
  readonly retryInMs: number;
  constructor(what: string, retryInMs: number) {
    super(
      `${what}: circuit open after repeated failures; next trial in ${Math.max(0, Math.ceil(retryInMs))} ms`,
    );
    this.retryInMs = retryInMs;
  }
}

export interface CircuitStats {
  state: CircuitState;
  consecutiveFailures: number;
  /** Calls refused while open (or while a half-open trial ran). */
  rejected: number;
  /** Times the breaker opened. */
  opened: number;
}

export class CircuitBreaker {
  readonly #what: string;
  readonly #threshold: number;
  readonly #cooldownMs: number;
  readonly #isFailure: (err: unknown) => boolean;
  readonly #now: () => number;
  readonly #onStateChange: ((state: CircuitState, previous: CircuitState) => void) | undefined;
  #state: CircuitState = 'closed';
  #failures = 0;
  #openedAt = 0;
  #trialRunning = false;
  #rejected = 0;
  #opened = 0;

  constructor(what: string, options: CircuitBreakerOptions = {}) {
    const threshold = options.failureThreshold ?? 5;
    const cooldown = options.cooldownMs ?? 30_000;
    if (!Number.isInteger(threshold) || threshold < 1) {
      throw new Error(`failureThreshold must be a whole number of at least 1, got ${threshold}`);
    }
    if (!(cooldown >= 0)) throw new Error(`cooldownMs must be 0 or more, got ${cooldown}`);
    this.#what = what;
    this.#threshold = threshold;
    this.#cooldownMs = cooldown;
    this.#isFailure = options.isFailure ?? (() => true);
    this.#now = options.now ?? Date.now;
    this.#onStateChange = options.onStateChange;
  }

  /** The state now (an open breaker whose cool-down has passed reads as half-open). */
  get state(): CircuitState {
    if (this.#state === 'open' && this.#now() - this.#openedAt >= this.#cooldownMs) this.#move('half-open');
    return this.#state;
  }

  stats(): CircuitStats {
    return {
      state: this.state,
      consecutiveFailures: this.#failures,
      rejected: this.#rejected,
      opened: this.#opened,
    };
  }

  /** Runs `fn` unless the breaker is open; throws `CircuitOpenError` without calling it then. */
  async run<T>(fn: () => Promise<T>): Promise<T> {
    const state = this.state;
    if (state === 'open' || (state === 'half-open' && this.#trialRunning)) {
      this.#rejected++;
      throw new CircuitOpenError(this.#what, this.#cooldownMs - (this.#now() - this.#openedAt));
    }
    const trial = state === 'half-open';
    if (trial) this.#trialRunning = true;
    try {
      const result = await fn();
      this.#failures = 0;
      this.#move('closed');
      return result;
    } catch (err) {
      if (this.#isFailure(err)) {
        this.#failures++;
        if (trial || this.#failures >= this.#threshold) {
          this.#openedAt = this.#now();
          this.#opened++;
          this.#move('open');
        }
      } else if (trial) {
        // Not the dependency's fault (the caller gave up): let the next call be the trial.
        this.#move('half-open');
      }
      throw err;
    } finally {
      if (trial) this.#trialRunning = false;
    }
  }

  #move(next: CircuitState): void {
    if (next === this.#state) return;
    const previous = this.#state;
    this.#state = next;
    this.#onStateChange?.(next, previous);
  }
}

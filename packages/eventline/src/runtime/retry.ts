import { fail, isEventlineError } from '../errors.ts';
import type { Message } from '../message.ts';
import { type Duration, parseDuration } from '../util/units.ts';

/**
 * Thrown by a handler to say that delivering the record again cannot help (a malformed order, a
 * rule the data breaks): it goes to the dead-letter topic at once.
 */
export class NonRetryableError extends Error {
  override name = 'NonRetryableError';
  /** Written to the dead letter's `eventline.dlq.error.code` header. Default `'NON_RETRYABLE'`. */
  readonly code: string;
  constructor(message: string, options: { cause?: unknown; code?: string } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = options.code ?? 'NON_RETRYABLE';
  }
}

export interface RetryOptions {
  /**
   * Deliveries of a record before it goes to the dead-letter topic, the first included. Default 10.
   * `Infinity` retries for ever (a record that cannot be decoded still goes at once).
   */
  attempts?: number;
  /** Wait before the second delivery. Default `'200ms'`. */
  initialDelay?: Duration;
  /** Upper bound of the wait. Default `'30s'`. */
  maxDelay?: Duration;
  /** Each wait is this many times the one before. Default 2. */
  multiplier?: number;
  /** Each wait is moved at random by up to this share, so retries of many records spread out. Default 0.2. */
  jitter?: number;
  /**
   * Decides whether a failure is worth another delivery. Default: everything except
   * NonRetryableError, records that cannot be decoded or validated (EVENTLINE_ERR_DECODE not marked
   * retryable) and values that cannot be encoded (EVENTLINE_ERR_ENCODE).
   */
  retryable?: (error: unknown, message: Message<unknown, unknown> | undefined) => boolean;
}

export interface RetryPolicy {
  attempts: number;
  delay(attempt: number): number;
  retryable(error: unknown, message: Message<unknown, unknown> | undefined): boolean;
}

/** The default classifier: see RetryOptions.retryable. */
export function isRetryable(error: unknown): boolean {
  if (error instanceof NonRetryableError) return false;
  if (isEventlineError(error, 'EVENTLINE_ERR_DECODE')) return error.retryable;
  if (isEventlineError(error, 'EVENTLINE_ERR_ENCODE')) return false;
  return true;
}

/** Reads retry options; throws EVENTLINE_ERR_INVALID_ARGUMENT naming a bad one. */
export function retryPolicy(
  options: RetryOptions = {},
  legacy: { initial?: Duration; max?: Duration } = {},
): RetryPolicy {
  const attempts = options.attempts ?? 10;
  if (!(attempts === Number.POSITIVE_INFINITY || (Number.isInteger(attempts) && attempts >= 1))) {
    fail(
      'EVENTLINE_ERR_INVALID_ARGUMENT',
      `subscribe: retry.attempts must be a whole number of at least 1 or Infinity, got ${attempts}`,
    );
  }
  const initial = parseDuration(options.initialDelay ?? legacy.initial ?? '200ms', 'retry.initialDelay');
  const max = parseDuration(options.maxDelay ?? legacy.max ?? '30s', 'retry.maxDelay');
  const multiplier = options.multiplier ?? 2;
  const jitter = options.jitter ?? 0.2;
  if (!(multiplier >= 1))
    fail('EVENTLINE_ERR_INVALID_ARGUMENT', 'subscribe: retry.multiplier must be at least 1');
  if (!(jitter >= 0 && jitter < 1)) {
    fail('EVENTLINE_ERR_INVALID_ARGUMENT', 'subscribe: retry.jitter must be at least 0 and below 1');
  }
  const classify = options.retryable;
  return {
    attempts,
    delay(attempt) {
      const base = Math.min(initial * multiplier ** Math.max(0, attempt - 1), max);
      return Math.max(0, Math.round(base * (1 + jitter * (2 * Math.random() - 1))));
    },
    retryable: (error, message) => isRetryable(error) && (classify === undefined || classify(error, message)),
  };
}

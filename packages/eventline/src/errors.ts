/**
 * Every error Eventline raises carries a stable code from this table. Codes are never reused or
 * renamed; a retired code stays here with `retired: true`. `docs/errors.md` documents each one and a
 * test keeps the table, the class and the documentation in step.
 */
export const ERROR_CODES = {
  EVENTLINE_ERR_INVALID_ARGUMENT: { retryable: false, summary: 'An argument or option is invalid.' },
  EVENTLINE_ERR_INVALID_URL: {
    retryable: false,
    summary: 'The engine URL cannot be parsed or names no engine.',
  },
  EVENTLINE_ERR_INVALID_TOPIC_NAME: {
    retryable: false,
    summary: "A topic name breaks Kafka's naming rules.",
  },
  EVENTLINE_ERR_INVALID_TOPIC_CONFIG: { retryable: false, summary: 'A topic setting is out of range.' },
  EVENTLINE_ERR_TOPIC_EXISTS: { retryable: false, summary: 'The topic already exists.' },
  EVENTLINE_ERR_UNKNOWN_TOPIC: { retryable: false, summary: 'The topic does not exist.' },
  EVENTLINE_ERR_UNKNOWN_PARTITION: {
    retryable: false,
    summary: 'The partition does not exist in the topic.',
  },
  EVENTLINE_ERR_MESSAGE_TOO_LARGE: {
    retryable: false,
    summary: "A record exceeds the topic's maximum message size.",
  },
  EVENTLINE_ERR_INVALID_RECORD: { retryable: false, summary: 'A record is not acceptable for its topic.' },
  EVENTLINE_ERR_ENCODE: { retryable: false, summary: 'A key or value could not be encoded by its codec.' },
  EVENTLINE_ERR_DECODE: {
    retryable: false,
    summary: 'A stored key or value could not be decoded by its codec.',
  },
  EVENTLINE_ERR_ENGINE_BUSY: {
    retryable: true,
    summary: 'The engine stayed locked by another process too long.',
  },
  EVENTLINE_ERR_ENGINE_UNAVAILABLE: { retryable: true, summary: 'The engine cannot be reached or opened.' },
  EVENTLINE_ERR_DATABASE_CORRUPT: {
    retryable: false,
    summary: 'The database file is damaged or not a database.',
  },
  EVENTLINE_ERR_STORAGE_FULL: { retryable: true, summary: 'The disk holding the database is full.' },
  EVENTLINE_ERR_CLOSED: { retryable: false, summary: 'The client or subscription was closed.' },
  EVENTLINE_ERR_FENCED: {
    retryable: false,
    summary: 'A group member lost its partitions and may not commit.',
  },
  EVENTLINE_ERR_UNKNOWN_GROUP: { retryable: false, summary: 'The consumer group does not exist.' },
  EVENTLINE_ERR_GROUP_NOT_EMPTY: { retryable: false, summary: 'The consumer group has live members.' },
  EVENTLINE_ERR_UNSUPPORTED: { retryable: false, summary: 'The engine does not support the operation.' },
  EVENTLINE_ERR_TIMEOUT: { retryable: true, summary: 'An operation did not finish in time.' },
  EVENTLINE_ERR_NOT_AUTHORIZED: {
    retryable: false,
    summary: 'The engine refused the credentials or the operation.',
  },
  EVENTLINE_ERR_ENGINE: {
    retryable: false,
    summary: 'The engine reported an error with no more specific code.',
  },
  EVENTLINE_ERR_SCHEMA_INVALID: {
    retryable: false,
    summary: 'A schema is malformed, not valid Avro, of an unknown type or too large.',
  },
  EVENTLINE_ERR_SCHEMA_INCOMPATIBLE: {
    retryable: false,
    summary: "A schema breaks its subject's compatibility rule.",
  },
  EVENTLINE_ERR_SCHEMA_NOT_FOUND: {
    retryable: false,
    summary: 'The subject, version or schema id is not in the registry.',
  },
  EVENTLINE_ERR_REGISTRY_READONLY: {
    retryable: false,
    summary: 'The registry (or the subject) is in READONLY mode.',
  },
  EVENTLINE_ERR_REGISTRY: {
    retryable: true,
    summary: 'The schema registry failed or could not be reached.',
  },
  EVENTLINE_ERR_REMOTE: {
    retryable: false,
    summary: 'A responder answered a request with a failure.',
  },
  EVENTLINE_ERR_INTERNAL: { retryable: false, summary: 'An invariant was broken; this is a bug.' },
} as const satisfies Record<string, { retryable: boolean; summary: string }>;

export type ErrorCode = keyof typeof ERROR_CODES;

export interface EventlineErrorOptions {
  /** The underlying error (an engine's native error, a codec's exception). */
  cause?: unknown;
  /** Machine-readable facts about the failure, such as the topic or the offending size. */
  details?: Record<string, unknown>;
  /** Overrides the table's retryable flag when the situation says otherwise. */
  retryable?: boolean;
}

/**
 * The one error class Eventline throws. Match on `code`, never on `message`.
 */
export class EventlineError extends Error {
  readonly code: ErrorCode;
  readonly retryable: boolean;
  readonly details: Readonly<Record<string, unknown>>;

  constructor(code: ErrorCode, message: string, options: EventlineErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'EventlineError';
    this.code = code;
    this.retryable = options.retryable ?? ERROR_CODES[code].retryable;
    this.details = options.details ?? {};
  }
}

/** True when `err` is an EventlineError, optionally with the given code. */
export function isEventlineError(err: unknown, code?: ErrorCode): err is EventlineError {
  return err instanceof EventlineError && (code === undefined || err.code === code);
}

/** Shorthand used throughout the library. */
export function fail(code: ErrorCode, message: string, options?: EventlineErrorOptions): never {
  throw new EventlineError(code, message, options);
}

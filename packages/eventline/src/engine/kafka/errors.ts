import { AuthenticationError, NetworkError, TimeoutError } from '@platformatic/kafka';
import { type ErrorCode, EventlineError } from '../../errors.ts';

/** Kafka protocol errors (by their protocol name) that have an Eventline code of their own. */
const BY_KAFKA_ERROR: Readonly<Record<string, ErrorCode>> = {
  TOPIC_ALREADY_EXISTS: 'EVENTLINE_ERR_TOPIC_EXISTS',
  UNKNOWN_TOPIC_OR_PARTITION: 'EVENTLINE_ERR_UNKNOWN_TOPIC',
  UNKNOWN_TOPIC_ID: 'EVENTLINE_ERR_UNKNOWN_TOPIC',
  INVALID_TOPIC_EXCEPTION: 'EVENTLINE_ERR_INVALID_TOPIC_NAME',
  MESSAGE_TOO_LARGE: 'EVENTLINE_ERR_MESSAGE_TOO_LARGE',
  RECORD_LIST_TOO_LARGE: 'EVENTLINE_ERR_MESSAGE_TOO_LARGE',
  INVALID_RECORD: 'EVENTLINE_ERR_INVALID_RECORD',
  CORRUPT_MESSAGE: 'EVENTLINE_ERR_INVALID_RECORD',
  INVALID_TIMESTAMP: 'EVENTLINE_ERR_INVALID_RECORD',
  INVALID_PARTITIONS: 'EVENTLINE_ERR_INVALID_TOPIC_CONFIG',
  INVALID_REPLICATION_FACTOR: 'EVENTLINE_ERR_INVALID_TOPIC_CONFIG',
  INVALID_REPLICA_ASSIGNMENT: 'EVENTLINE_ERR_INVALID_TOPIC_CONFIG',
  INVALID_CONFIG: 'EVENTLINE_ERR_INVALID_TOPIC_CONFIG',
  ILLEGAL_GENERATION: 'EVENTLINE_ERR_FENCED',
  UNKNOWN_MEMBER_ID: 'EVENTLINE_ERR_FENCED',
  FENCED_INSTANCE_ID: 'EVENTLINE_ERR_FENCED',
  STALE_MEMBER_EPOCH: 'EVENTLINE_ERR_FENCED',
  FENCED_MEMBER_EPOCH: 'EVENTLINE_ERR_FENCED',
  NON_EMPTY_GROUP: 'EVENTLINE_ERR_GROUP_NOT_EMPTY',
  GROUP_ID_NOT_FOUND: 'EVENTLINE_ERR_UNKNOWN_GROUP',
  SASL_AUTHENTICATION_FAILED: 'EVENTLINE_ERR_NOT_AUTHORIZED',
  UNSUPPORTED_SASL_MECHANISM: 'EVENTLINE_ERR_NOT_AUTHORIZED',
  ILLEGAL_SASL_STATE: 'EVENTLINE_ERR_NOT_AUTHORIZED',
  TOPIC_AUTHORIZATION_FAILED: 'EVENTLINE_ERR_NOT_AUTHORIZED',
  GROUP_AUTHORIZATION_FAILED: 'EVENTLINE_ERR_NOT_AUTHORIZED',
  CLUSTER_AUTHORIZATION_FAILED: 'EVENTLINE_ERR_NOT_AUTHORIZED',
  TRANSACTIONAL_ID_AUTHORIZATION_FAILED: 'EVENTLINE_ERR_NOT_AUTHORIZED',
  UNSUPPORTED_VERSION: 'EVENTLINE_ERR_UNSUPPORTED',
  REQUEST_TIMED_OUT: 'EVENTLINE_ERR_TIMEOUT',
  NOT_ENOUGH_REPLICAS: 'EVENTLINE_ERR_ENGINE_UNAVAILABLE',
  NOT_ENOUGH_REPLICAS_AFTER_APPEND: 'EVENTLINE_ERR_ENGINE_UNAVAILABLE',
  LEADER_NOT_AVAILABLE: 'EVENTLINE_ERR_ENGINE_UNAVAILABLE',
  NOT_LEADER_OR_FOLLOWER: 'EVENTLINE_ERR_ENGINE_UNAVAILABLE',
  BROKER_NOT_AVAILABLE: 'EVENTLINE_ERR_ENGINE_UNAVAILABLE',
  COORDINATOR_NOT_AVAILABLE: 'EVENTLINE_ERR_ENGINE_UNAVAILABLE',
  COORDINATOR_LOAD_IN_PROGRESS: 'EVENTLINE_ERR_ENGINE_UNAVAILABLE',
  NOT_COORDINATOR: 'EVENTLINE_ERR_ENGINE_UNAVAILABLE',
  KAFKA_STORAGE_ERROR: 'EVENTLINE_ERR_ENGINE_UNAVAILABLE',
  NETWORK_EXCEPTION: 'EVENTLINE_ERR_ENGINE_UNAVAILABLE',
};

interface KafkaErrorLike {
  apiId?: unknown;
  canRetry?: unknown;
  errors?: unknown;
  cause?: unknown;
}

/** Every protocol error in a (possibly nested) client error, outermost first. */
export function kafkaErrors(err: unknown, out: KafkaErrorLike[] = [], depth = 0): KafkaErrorLike[] {
  if (depth > 6 || err === null || typeof err !== 'object') return out;
  const e = err as KafkaErrorLike;
  if (typeof e.apiId === 'string') out.push(e);
  if (Array.isArray(e.errors)) for (const inner of e.errors) kafkaErrors(inner, out, depth + 1);
  if (e.cause !== undefined) kafkaErrors(e.cause, out, depth + 1);
  return out;
}

/** The protocol error names inside a client error. */
export function kafkaErrorIds(err: unknown): string[] {
  return kafkaErrors(err).map((e) => e.apiId as string);
}

function anyInstance(err: unknown, cls: abstract new (...args: never[]) => unknown, depth = 0): boolean {
  if (err instanceof cls) return true;
  if (depth > 6 || err === null || typeof err !== 'object') return false;
  const e = err as KafkaErrorLike;
  return (
    (Array.isArray(e.errors) && e.errors.some((inner) => anyInstance(inner, cls, depth + 1))) ||
    (e.cause !== undefined && anyInstance(e.cause, cls, depth + 1))
  );
}

/**
 * Wraps an error of the Kafka client in an EventlineError. The code comes from Kafka's protocol
 * error name or the client's error class, never from message text; `details.engineCode` keeps
 * Kafka's name. `what` says what was being done.
 */
export function wrapKafkaError(
  err: unknown,
  what: string,
  overrides: Readonly<Record<string, ErrorCode>> = {},
): EventlineError {
  if (err instanceof EventlineError) return err;
  const reason = err instanceof Error ? err.message : String(err);
  const protocol = kafkaErrors(err);
  for (const e of protocol) {
    const id = e.apiId as string;
    const code = overrides[id] ?? BY_KAFKA_ERROR[id];
    if (code !== undefined) {
      return new EventlineError(code, `${what}: ${id}`, {
        cause: err,
        details: { engineCode: id },
        ...(e.canRetry === true ? { retryable: true } : {}),
      });
    }
  }
  if (anyInstance(err, AuthenticationError)) {
    return new EventlineError('EVENTLINE_ERR_NOT_AUTHORIZED', `${what}: authentication failed (${reason})`, {
      cause: err,
    });
  }
  if (anyInstance(err, TimeoutError)) {
    return new EventlineError('EVENTLINE_ERR_TIMEOUT', `${what}: the broker did not answer in time`, {
      cause: err,
    });
  }
  if (anyInstance(err, NetworkError)) {
    return new EventlineError(
      'EVENTLINE_ERR_ENGINE_UNAVAILABLE',
      `${what}: cannot reach the brokers (${reason})`,
      {
        cause: err,
      },
    );
  }
  const first = protocol[0];
  if (first !== undefined) {
    return new EventlineError('EVENTLINE_ERR_ENGINE', `${what}: ${first.apiId as string}`, {
      cause: err,
      details: { engineCode: first.apiId },
      retryable: first.canRetry === true,
    });
  }
  return new EventlineError('EVENTLINE_ERR_ENGINE', `${what}: ${reason}`, { cause: err });
}

import { createHash } from 'node:crypto';
import type { AppendRecord, Header, StoredRecord } from '../engine/types.ts';
import { MAX_TOPIC_NAME_LENGTH } from '../topic.ts';

/**
 * The dead-letter record format. A dead letter keeps the original record's key, value and headers
 * byte for byte, and adds headers saying where it came from and why it failed. Replaying strips
 * those headers again and counts the replay in `eventline.replays`.
 */
export const DLQ_HEADERS = {
  topic: 'eventline.dlq.topic',
  partition: 'eventline.dlq.partition',
  offset: 'eventline.dlq.offset',
  timestamp: 'eventline.dlq.timestamp',
  key: 'eventline.dlq.key',
  group: 'eventline.dlq.group',
  attempts: 'eventline.dlq.attempts',
  firstFailure: 'eventline.dlq.first-failure',
  lastFailure: 'eventline.dlq.last-failure',
  errorCode: 'eventline.dlq.error.code',
  errorMessage: 'eventline.dlq.error.message',
  errorStack: 'eventline.dlq.error.stack',
} as const;

/** How often a record has been replayed from a dead-letter topic (absent: never). */
export const REPLAYS_HEADER = 'eventline.replays';

const DLQ_PREFIX = 'eventline.dlq.';

/** Makes a topic-name fragment of a group name: characters Kafka refuses become `_`. */
function fragment(name: string): string {
  return name.replace(/[^a-zA-Z0-9._-]/g, '_');
}

function topicName(kind: string, group: string, topic: string): string {
  const name = `${kind}.${fragment(group)}.${topic}`;
  if (name.length <= MAX_TOPIC_NAME_LENGTH) return name;
  // Too long: keep a readable start and make it unique with a hash of the whole.
  const hash = createHash('sha256').update(`${group}\u0000${topic}`).digest('hex').slice(0, 16);
  return `${name.slice(0, MAX_TOPIC_NAME_LENGTH - 17)}.${hash}`;
}

/** The dead-letter topic of a consumer group and a source topic: `dlq.<group>.<topic>`. */
export function deadLetterTopic(group: string, topic: string): string {
  return topicName('dlq', group, topic);
}

/** Where records go that failed again after too many replays: `parking.<group>.<topic>`. */
export function parkingLotTopic(group: string, topic: string): string {
  return topicName('parking', group, topic);
}

export interface FailureInfo {
  group: string;
  /** Deliveries made, the failed last one included. */
  attempts: number;
  firstFailure: number;
  lastFailure: number;
  error: unknown;
}

const text = (s: string): Buffer => Buffer.from(s, 'utf8');

function errorFields(error: unknown): { code: string; message: string; stack: string } {
  const e = error instanceof Error ? error : new Error(String(error));
  const code = (e as { code?: unknown }).code;
  return {
    code: typeof code === 'string' ? code : e.name,
    message: e.message,
    stack: (e.stack ?? '').slice(0, 8192),
  };
}

/** The dead letter of a record: its key, value and headers unchanged, plus the failure headers. */
export function toDeadLetter(record: StoredRecord, info: FailureInfo): AppendRecord {
  const err = errorFields(info.error);
  const headers: Header[] = record.headers.filter(([name]) => !name.startsWith(DLQ_PREFIX));
  headers.push(
    [DLQ_HEADERS.topic, text(record.topic)],
    [DLQ_HEADERS.partition, text(String(record.partition))],
    [DLQ_HEADERS.offset, text(String(record.offset))],
    [DLQ_HEADERS.timestamp, text(String(record.timestamp))],
    [DLQ_HEADERS.group, text(info.group)],
    [DLQ_HEADERS.attempts, text(String(info.attempts))],
    [DLQ_HEADERS.firstFailure, text(new Date(info.firstFailure).toISOString())],
    [DLQ_HEADERS.lastFailure, text(new Date(info.lastFailure).toISOString())],
    [DLQ_HEADERS.errorCode, text(err.code)],
    [DLQ_HEADERS.errorMessage, text(err.message)],
    [DLQ_HEADERS.errorStack, text(err.stack)],
  );
  if (record.key !== null) headers.push([DLQ_HEADERS.key, record.key]);
  return { partition: 0, key: record.key, value: record.value, timestamp: Date.now(), headers };
}

/** A dead letter read back. */
export interface DeadLetter {
  /** Where the dead letter itself is stored. */
  readonly at: { topic: string; partition: number; offset: number; timestamp: number };
  readonly original: { topic: string; partition: number; offset: number; timestamp: number };
  readonly group: string;
  readonly attempts: number;
  readonly firstFailure: string;
  readonly lastFailure: string;
  readonly error: { code: string; message: string; stack: string };
  /** Times the record was replayed before it failed this time. */
  readonly replays: number;
  readonly key: Buffer | null;
  readonly value: Buffer | null;
  /** The original record's headers, byte for byte (failure headers removed). */
  readonly headers: readonly Header[];
}

/** Reads a dead letter's headers; undefined when the record is not a dead letter. */
export function parseDeadLetter(record: StoredRecord): DeadLetter | undefined {
  const get = (name: string): string | undefined => {
    for (let i = record.headers.length - 1; i >= 0; i--) {
      const [n, v] = record.headers[i]!;
      if (n === name) return v.toString('utf8');
    }
    return undefined;
  };
  const topic = get(DLQ_HEADERS.topic);
  if (topic === undefined) return undefined;
  return {
    at: {
      topic: record.topic,
      partition: record.partition,
      offset: record.offset,
      timestamp: record.timestamp,
    },
    original: {
      topic,
      partition: Number(get(DLQ_HEADERS.partition)),
      offset: Number(get(DLQ_HEADERS.offset)),
      timestamp: Number(get(DLQ_HEADERS.timestamp)),
    },
    group: get(DLQ_HEADERS.group) ?? '',
    attempts: Number(get(DLQ_HEADERS.attempts)),
    firstFailure: get(DLQ_HEADERS.firstFailure) ?? '',
    lastFailure: get(DLQ_HEADERS.lastFailure) ?? '',
    error: {
      code: get(DLQ_HEADERS.errorCode) ?? '',
      message: get(DLQ_HEADERS.errorMessage) ?? '',
      stack: get(DLQ_HEADERS.errorStack) ?? '',
    },
    replays: Number(get(REPLAYS_HEADER) ?? 0),
    key: record.key,
    value: record.value,
    headers: record.headers.filter(([name]) => !name.startsWith(DLQ_PREFIX)),
  };
}

/** How many times a record was replayed (its `eventline.replays` header). */
export function replaysOf(headers: readonly Header[]): number {
  for (let i = headers.length - 1; i >= 0; i--) {
    if (headers[i]![0] === REPLAYS_HEADER) return Number(headers[i]![1].toString('utf8')) || 0;
  }
  return 0;
}

/** The record to publish when replaying a dead letter: the original, with the replay counted. */
export function toReplay(dead: DeadLetter, partition: number): AppendRecord {
  const headers: Header[] = dead.headers.filter(([name]) => name !== REPLAYS_HEADER);
  headers.push([REPLAYS_HEADER, text(String(dead.replays + 1))]);
  return { partition, key: dead.key, value: dead.value, timestamp: Date.now(), headers };
}

import type { Codec } from './codec.ts';
import { type Header, recordFields, type StoredRecord } from './engine/types.ts';
import { EventlineError } from './errors.ts';

/** A record as a handler or reader sees it: decoded key and value, plus everything stored. */
export interface Message<V = unknown, K = string> {
  readonly topic: string;
  readonly partition: number;
  readonly offset: number;
  /** Milliseconds since the epoch. */
  readonly timestamp: number;
  readonly key: K | null;
  /** The decoded value; `null` for a tombstone. */
  readonly value: V;
  /** Headers decoded as UTF-8 (the last one wins when a name repeats). */
  readonly headers: Readonly<Record<string, string>>;
  /** Headers exactly as stored: ordered, repeatable, bytes. */
  readonly rawHeaders: readonly Header[];
  readonly rawKey: Buffer | null;
  readonly rawValue: Buffer | null;
  /** CloudEvents `ce_id`: the event's unique id. */
  readonly id: string | undefined;
  /** CloudEvents `ce_type`. */
  readonly type: string | undefined;
}

class DecodedMessage<V, K> implements Message<V, K> {
  readonly topic: string;
  readonly partition: number;
  readonly offset: number;
  readonly timestamp: number;
  readonly key: K | null;
  readonly value: V;
  readonly #record: StoredRecord;
  #headers: Record<string, string> | undefined;

  constructor(record: StoredRecord, key: K | null, value: V) {
    this.topic = record.topic;
    this.partition = record.partition;
    this.offset = record.offset;
    this.timestamp = record.timestamp;
    this.key = key;
    this.value = value;
    this.#record = record;
  }

  get headers(): Readonly<Record<string, string>> {
    if (this.#headers === undefined) {
      const h: Record<string, string> = {};
      for (const [name, v] of this.#record.headers) h[name] = v.toString('utf8');
      this.#headers = h;
    }
    return this.#headers;
  }

  get rawHeaders(): readonly Header[] {
    return this.#record.headers;
  }

  get rawKey(): Buffer | null {
    return this.#record.key;
  }

  get rawValue(): Buffer | null {
    return this.#record.value;
  }

  get id(): string | undefined {
    return this.headers.ce_id;
  }

  get type(): string | undefined {
    return this.headers.ce_type;
  }

  toJSON(): object {
    return recordFields(this);
  }
}

/**
 * Decodes a stored record with a topic's codecs. A failure is an EVENTLINE_ERR_DECODE error naming
 * the record's position and what was wrong; the record itself is never lost.
 */
export function decodeMessage<V, K>(
  record: StoredRecord,
  valueCodec: Codec<V>,
  keyCodec: Codec<K>,
): Message<V, K> {
  let key: K | null = null;
  let value: V;
  let part = 'key';
  try {
    key = record.key === null ? null : keyCodec.decode(record.key);
    part = 'value';
    value = (record.value === null ? null : valueCodec.decode(record.value)) as V;
  } catch (err) {
    const codec = part === 'key' ? keyCodec : valueCodec;
    // A codec's own decode error may say the failure is passing (a registry that was unreachable)
    // or permanent (a poison record).
    const own = err instanceof EventlineError && err.code === 'EVENTLINE_ERR_DECODE' ? err : undefined;
    throw new EventlineError(
      'EVENTLINE_ERR_DECODE',
      `${record.topic}/${record.partition}@${record.offset}: the ${part} is not valid ${codec.name}: ${
        err instanceof Error ? err.message : String(err)
      }`,
      {
        cause: err,
        ...(own ? { retryable: own.retryable } : {}),
        details: {
          poison: true,
          ...own?.details,
          topic: record.topic,
          partition: record.partition,
          offset: record.offset,
          part,
        },
      },
    );
  }
  return new DecodedMessage(record, key, value);
}

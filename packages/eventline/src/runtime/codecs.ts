import { type BoundCodec, bytes, type Codec, string } from '../codec.ts';
import type { StoredRecord } from '../engine/types.ts';
import type { SchemaRegistry } from '../schema/types.ts';
import type { Topic } from '../topic.ts';
import { validateTopicName } from '../topic.ts';

/** A topic's key and value codecs, bound to one connection. */
export interface TopicCodecs {
  readonly name: string;
  readonly key: BoundCodec<unknown>;
  readonly value: BoundCodec<unknown>;
}

const RAW: TopicCodecs = Object.freeze({
  name: '',
  key: string() as BoundCodec<unknown>,
  value: bytes() as BoundCodec<unknown>,
});

/**
 * Binds topics' codecs to a connection once per topic object: codecs that need the schema
 * registry get it here. A topic given by name reads raw bytes with string keys.
 */
export class CodecBinder {
  readonly #registry: () => Promise<SchemaRegistry>;
  readonly #bound = new WeakMap<object, TopicCodecs>();

  constructor(registry: () => Promise<SchemaRegistry>) {
    this.#registry = registry;
  }

  of(topic: Topic<unknown, unknown> | string): TopicCodecs {
    if (typeof topic === 'string') {
      validateTopicName(topic);
      return { ...RAW, name: topic };
    }
    let codecs = this.#bound.get(topic);
    if (codecs === undefined) {
      codecs = {
        name: topic.name,
        key: this.#bind(topic.name, 'key', topic.keyCodec),
        value: this.#bind(topic.name, 'value', topic.value),
      };
      this.#bound.set(topic, codecs);
    }
    return codecs;
  }

  #bind(topic: string, part: 'key' | 'value', codec: Codec<unknown>): BoundCodec<unknown> {
    return codec.bind ? codec.bind({ topic, part, registry: this.#registry }) : codec;
  }
}

/** Waits for what encoding needs (a schema registered); undefined when nothing is pending. */
export function prepareEncode(codecs: TopicCodecs): Promise<unknown> | undefined {
  const key = codecs.key.prepareEncode?.();
  const value = codecs.value.prepareEncode?.();
  if (key === undefined) return value;
  return value === undefined ? key : Promise.all([key, value]);
}

/** Waits for what decoding these records needs (writer schemas); undefined when nothing is pending. */
export function prepareDecode(
  codecs: TopicCodecs,
  records: readonly StoredRecord[],
): Promise<unknown> | undefined {
  const { key, value } = codecs;
  if (key.prepareDecode === undefined && value.prepareDecode === undefined) return undefined;
  const pending: Promise<unknown>[] = [];
  for (const r of records) {
    const k = r.key !== null ? key.prepareDecode?.(r.key) : undefined;
    const v = r.value !== null ? value.prepareDecode?.(r.value) : undefined;
    if (k !== undefined) pending.push(k);
    if (v !== undefined) pending.push(v);
  }
  return pending.length === 0 ? undefined : Promise.all(pending);
}

import type { SchemaRegistry } from './schema/types.ts';

/** What a codec may need from the connection it is used on. */
export interface CodecScope {
  readonly topic: string;
  readonly part: 'key' | 'value';
  /** The connection's schema registry, opened on first use. */
  registry(): Promise<SchemaRegistry>;
}

/**
 * A codec bound to one topic part of one connection. The two optional hooks let it do
 * asynchronous work (registering a schema, fetching a writer schema) before the synchronous
 * encode and decode; each returns undefined when nothing is pending, so the common path costs a
 * call.
 */
export interface BoundCodec<T> extends Codec<T> {
  /** Resolves what `encode` needs. Rejects with the reason publishing cannot proceed. */
  prepareEncode?(): Promise<void> | undefined;
  /** Resolves what `decode(bytes)` needs. Never rejects: `decode` reports the problem. */
  prepareDecode?(bytes: Buffer): Promise<void> | undefined;
}

/**
 * A codec turns a typed key or value into bytes and back. Topics carry one for keys and one for
 * values; the engines only ever see bytes.
 */
export interface Codec<T> {
  /** Short name shown by tools (`json`, `string`, `bytes`, `avro`). */
  readonly name: string;
  /** MIME type written to the CloudEvents `content-type` header, when the codec has one. */
  readonly contentType?: string;
  encode(value: T): Buffer;
  decode(bytes: Buffer): T;
  /** Codecs that depend on the connection (a schema registry) return a copy bound to it. */
  bind?(scope: CodecScope): BoundCodec<T>;
}

export interface JsonCodecOptions<T> {
  /**
   * Checks a value before it is published and after it is decoded; `false` rejects it. A value
   * rejected on publish is an EVENTLINE_ERR_ENCODE error and nothing is published.
   */
  validate?: (value: unknown) => value is T;
}

/** UTF-8 JSON values. The default value codec. */
export function json<T = unknown>(options: JsonCodecOptions<T> = {}): Codec<T> {
  const { validate } = options;
  return {
    name: 'json',
    contentType: 'application/json',
    encode(value: T): Buffer {
      if (validate && !validate(value)) throw new TypeError('value failed the topic validator');
      const text = JSON.stringify(value);
      if (text === undefined) throw new TypeError(`${typeof value} cannot be represented as JSON`);
      return Buffer.from(text, 'utf8');
    },
    decode(bytes: Buffer): T {
      const value: unknown = JSON.parse(bytes.toString('utf8'));
      if (validate && !validate(value)) throw new TypeError('stored value failed the topic validator');
      return value as T;
    },
  };
}

/** UTF-8 strings. The default key codec. */
export function string(): Codec<string> {
  return {
    name: 'string',
    contentType: 'text/plain; charset=utf-8',
    encode: (value) => {
      if (typeof value !== 'string') throw new TypeError(`expected a string, got ${typeof value}`);
      return Buffer.from(value, 'utf8');
    },
    decode: (bytes) => bytes.toString('utf8'),
  };
}

/** Raw bytes, passed through untouched. */
export function bytes(): Codec<Buffer> {
  return {
    name: 'bytes',
    encode: (value) => {
      const v: unknown = value;
      if (!(v instanceof Uint8Array)) throw new TypeError(`expected a Buffer, got ${typeof v}`);
      return Buffer.isBuffer(v) ? v : Buffer.from(v.buffer, v.byteOffset, v.byteLength);
    },
    decode: (value) => value,
  };
}

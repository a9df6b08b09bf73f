import { readFileSync } from 'node:fs';
import type avsc from 'avsc';
import type { BoundCodec, Codec, CodecScope } from '../codec.ts';
import { EventlineError, fail } from '../errors.ts';
import { describeType, findMismatches, parseAvro, parseSchemaText } from './avro-types.ts';
import type { InferAvro } from './infer.ts';
import type { SchemaReference, SchemaRegistry } from './types.ts';
import { HEADER_SIZE, schemaIdOf, wireProblem, writeHeader } from './wire.ts';

/**
 * How the registry subject of a topic's key or value schema is named (Confluent's strategies):
 * `topic` gives `<topic>-key` / `<topic>-value` (the default), `record` the schema's full name
 * (`namespace.Name`), `topic-record` `<topic>-<namespace.Name>`. `{ name }` fixes the subject.
 */
export type SubjectStrategy = 'topic' | 'record' | 'topic-record' | { name: string };

export interface AvroOptions {
  /** Default `'topic'`. */
  subject?: SubjectStrategy;
  /**
   * Default true: the schema is registered under its subject on first publish (as Confluent's
   * serializers do with `auto.register.schemas`). With false it must already be registered, and
   * publishing fails with EVENTLINE_ERR_SCHEMA_NOT_FOUND until it is.
   */
  autoRegister?: boolean;
}

/** A schema written in code: JSON text, a primitive name, a union, or a schema object (`as const`). */
export type AvroSchemaLiteral = string | readonly unknown[] | { readonly type: unknown };

/** An Avro codec: its schema, the avsc type, and binding to a connection's registry. */
export interface AvroCodec<T> extends Codec<T> {
  readonly name: 'avro';
  /** The schema as parsed JSON; undefined for a codec that reads any writer schema. */
  readonly schema: unknown;
  /** The avsc type (Eventline's value mapping); undefined without a schema. */
  readonly type: avsc.Type | undefined;
  bind(scope: CodecScope): BoundCodec<T>;
}

/**
 * An Avro codec in the Confluent wire format (magic byte 0, 4-byte schema id, Avro binary),
 * registered in the connection's schema registry. The schema is also the reader schema: records
 * written with older or newer compatible schemas are resolved into it. Without a schema the codec
 * only decodes, each record with the schema it was written with.
 *
 * Values follow docs/schemas.md: `long` is a number, or a bigint beyond 2^53; `timestamp-millis`
 * and `date` are Dates; `timestamp-micros` is a bigint; `decimal` is an exact string.
 *
 * Throws EVENTLINE_ERR_SCHEMA_INVALID when the schema is not valid Avro. Publishing a value that
 * does not match is EVENTLINE_ERR_ENCODE naming each field path and the type expected there.
 */
export function avro<const S extends AvroSchemaLiteral>(
  schema: S,
  options?: AvroOptions,
): AvroCodec<InferAvro<S>>;
export function avro<T = unknown>(schema?: unknown, options?: AvroOptions): AvroCodec<T>;
export function avro<T = unknown>(schema?: unknown, options: AvroOptions = {}): AvroCodec<T> {
  if (schema === undefined) return new AvroCodecImpl<T>(undefined, undefined, options);
  let json: unknown;
  let type: avsc.Type;
  try {
    json = typeof schema === 'string' ? parseSchemaText(schema) : structuredClone(schema);
    type = parseAvro(json);
  } catch (err) {
    fail('EVENTLINE_ERR_SCHEMA_INVALID', `invalid Avro schema: ${messageOf(err)}`, { cause: err });
  }
  return new AvroCodecImpl<T>(json, type, options);
}

/** An Avro codec whose schema is read from an `.avsc` file. See {@link avro}. */
export function avroFile<T = unknown>(path: string | URL, options: AvroOptions = {}): AvroCodec<T> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    fail('EVENTLINE_ERR_SCHEMA_INVALID', `cannot read Avro schema file ${String(path)}: ${messageOf(err)}`, {
      cause: err,
    });
  }
  try {
    return avro<T>(text, options);
  } catch (err) {
    fail('EVENTLINE_ERR_SCHEMA_INVALID', `${String(path)}: ${messageOf(err)}`, { cause: err });
  }
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** The full name of a named schema (`namespace.Name`), or undefined for unnamed ones. */
export function fullNameOf(schema: unknown): string | undefined {
  if (typeof schema !== 'object' || schema === null || Array.isArray(schema)) return undefined;
  const { name, namespace } = schema as { name?: unknown; namespace?: unknown };
  if (typeof name !== 'string') return undefined;
  if (name.includes('.')) return name;
  return typeof namespace === 'string' && namespace.length > 0 ? `${namespace}.${name}` : name;
}

/** The registry subject for a topic part under a strategy. */
export function subjectName(
  strategy: SubjectStrategy,
  topic: string,
  part: 'key' | 'value',
  schema: unknown,
): string {
  if (typeof strategy === 'object') return strategy.name;
  if (strategy === 'topic') return `${topic}-${part}`;
  const full = fullNameOf(schema);
  if (full === undefined) {
    fail(
      'EVENTLINE_ERR_INVALID_ARGUMENT',
      `topic ${topic}: the ${strategy} subject strategy needs a named schema (record, enum or fixed)`,
    );
  }
  return strategy === 'record' ? full : `${topic}-${full}`;
}

class AvroCodecImpl<T> implements AvroCodec<T> {
  readonly name = 'avro' as const;
  readonly contentType = 'application/vnd.apache.avro+binary';
  readonly schema: unknown;
  readonly type: avsc.Type | undefined;
  readonly options: AvroOptions;

  constructor(schema: unknown, type: avsc.Type | undefined, options: AvroOptions) {
    this.schema = schema;
    this.type = type;
    this.options = options;
  }

  encode(): Buffer {
    fail(
      'EVENTLINE_ERR_INVALID_ARGUMENT',
      'an avro codec encodes through a connection (it needs the schema registry); publish with bus.publish',
    );
  }

  decode(): T {
    fail(
      'EVENTLINE_ERR_INVALID_ARGUMENT',
      'an avro codec decodes through a connection (it needs the schema registry)',
    );
  }

  bind(scope: CodecScope): BoundCodec<T> {
    return new BoundAvro<T>(this, scope);
  }
}

interface Writer {
  /** Decodes a framed payload, or throws naming the problem. */
  read(bytes: Buffer): unknown;
}

// Encoding writes into this buffer after the header, then copies out exactly the bytes used.
let scratch = Buffer.allocUnsafe(64 * 1024);

class BoundAvro<T> implements BoundCodec<T> {
  readonly name = 'avro';
  readonly contentType = 'application/vnd.apache.avro+binary';
  readonly #codec: AvroCodecImpl<T>;
  readonly #scope: CodecScope;
  #id = -1;
  #registering: Promise<void> | undefined;
  readonly #writers = new Map<number, Writer>();
  readonly #resolving = new Map<number, Promise<void>>();
  #lastId = -1;
  #lastWriter: Writer | undefined;

  constructor(codec: AvroCodecImpl<T>, scope: CodecScope) {
    this.#codec = codec;
    this.#scope = scope;
  }

  get #where(): string {
    return `topic ${this.#scope.topic} (${this.#scope.part})`;
  }

  prepareEncode(): Promise<void> | undefined {
    if (this.#id >= 0) return undefined;
    this.#registering ??= this.#register().finally(() => {
      this.#registering = undefined;
    });
    return this.#registering;
  }

  async #register(): Promise<void> {
    const codec = this.#codec;
    if (codec.type === undefined) {
      fail('EVENTLINE_ERR_INVALID_ARGUMENT', `${this.#where}: an avro codec without a schema cannot encode`);
    }
    const registry = await this.#scope.registry();
    const subject = subjectName(
      codec.options.subject ?? 'topic',
      this.#scope.topic,
      this.#scope.part,
      codec.schema,
    );
    const input = { schema: JSON.stringify(codec.schema) };
    const { id } =
      codec.options.autoRegister === false
        ? await registry.lookup(subject, input)
        : await registry.register(subject, input);
    // Records this codec writes decode with its own type, without asking the registry.
    this.#writers.set(id, this.#direct(codec.type, id));
    this.#id = id;
  }

  encode(value: T): Buffer {
    const type = this.#codec.type;
    if (this.#id < 0 || type === undefined) {
      fail('EVENTLINE_ERR_INTERNAL', `${this.#where}: encode called before the schema was registered`);
    }
    let end: number;
    try {
      end = type.encode(value, scratch, HEADER_SIZE);
      if (end < 0) {
        scratch = Buffer.allocUnsafe(Math.max(scratch.length * 2, scratch.length - end + HEADER_SIZE));
        end = type.encode(value, scratch, HEADER_SIZE);
      }
    } catch (err) {
      throw mismatchError(type, value, err);
    }
    const out = Buffer.allocUnsafe(end);
    scratch.copy(out, 0, 0, end);
    writeHeader(out, this.#id);
    return out;
  }

  prepareDecode(bytes: Buffer): Promise<void> | undefined {
    if (wireProblem(bytes) !== undefined) return undefined;
    const id = schemaIdOf(bytes);
    if (this.#writers.has(id)) return undefined;
    let pending = this.#resolving.get(id);
    if (pending === undefined) {
      pending = this.#resolve(id).finally(() => this.#resolving.delete(id));
      this.#resolving.set(id, pending);
    }
    return pending;
  }

  async #resolve(id: number): Promise<void> {
    let writer: Writer;
    try {
      writer = await this.#writerFor(id);
    } catch (err) {
      const reason = messageOf(err);
      const retryable = err instanceof EventlineError && err.retryable;
      writer = {
        read: () => {
          throw new EventlineError(
            'EVENTLINE_ERR_DECODE',
            `written with schema id ${id}, which cannot be used: ${reason}`,
            { cause: err, retryable, details: { schemaId: id, poison: !retryable } },
          );
        },
      };
      // A registry that was unreachable, or an id registered a moment ago elsewhere, may answer
      // later: forget the failure once this delivery has seen it.
      setTimeout(() => {
        this.#writers.delete(id);
        if (this.#lastId === id) this.#lastId = -1;
      }, 1000).unref();
    }
    this.#writers.set(id, writer);
  }

  async #writerFor(id: number): Promise<Writer> {
    const registry = await this.#scope.registry();
    const found = await registry.getById(id);
    if (found.schemaType !== 'AVRO') {
      throw new Error(`it is a ${found.schemaType} schema, and this codec reads Avro`);
    }
    const named = await namedTypes(registry, found.references ?? []);
    const writerType = parseAvro(found.schema, named);
    const reader = this.#codec.type;
    if (reader === undefined || reader.equals(writerType)) return this.#direct(reader ?? writerType, id);
    let resolver: avsc.Resolver;
    try {
      resolver = reader.createResolver(writerType, { ignoreNamespaces: true } as never);
    } catch (err) {
      throw new Error(`records written with it cannot be read with this topic's schema: ${messageOf(err)}`);
    }
    return {
      read: (bytes) => decodeFramed(reader, bytes, id, resolver),
    };
  }

  #direct(type: avsc.Type, id: number): Writer {
    return { read: (bytes) => decodeFramed(type, bytes, id, undefined) };
  }

  decode(bytes: Buffer): T {
    const problem = wireProblem(bytes);
    if (problem !== undefined)
      throw poison(`the payload is not in the schema registry wire format: ${problem}`);
    const id = schemaIdOf(bytes);
    // Consecutive records nearly always share a schema: skip the map for them.
    const writer = id === this.#lastId ? this.#lastWriter : this.#writers.get(id);
    if (writer === undefined) throw poison(`schema id ${id} is unknown`, { schemaId: id });
    if (id !== this.#lastId) {
      this.#lastId = id;
      this.#lastWriter = writer;
    }
    return writer.read(bytes) as T;
  }
}

function decodeFramed(
  type: avsc.Type,
  bytes: Buffer,
  id: number,
  resolver: avsc.Resolver | undefined,
): unknown {
  let result: { value: unknown; offset: number };
  try {
    result = type.decode(bytes, HEADER_SIZE, resolver);
  } catch (err) {
    throw poison(`the Avro payload (schema id ${id}) is corrupt: ${messageOf(err)}`, { schemaId: id });
  }
  if (result.offset < 0) {
    throw poison(`the Avro payload (schema id ${id}) is truncated: ${bytes.length} bytes end mid-value`, {
      schemaId: id,
    });
  }
  if (result.offset !== bytes.length) {
    throw poison(
      `the Avro payload (schema id ${id}) has ${bytes.length - result.offset} bytes left over after the value`,
      { schemaId: id },
    );
  }
  return result.value;
}

/** A decode failure that will fail again on every delivery. */
function poison(message: string, details: Record<string, unknown> = {}): EventlineError {
  return new EventlineError('EVENTLINE_ERR_DECODE', message, { details: { ...details, poison: true } });
}

function mismatchError(type: avsc.Type, value: unknown, cause: unknown): Error {
  const mismatches = findMismatches(type, value);
  const what = describeType(type);
  const text =
    mismatches.length === 0
      ? `the value does not match ${what}: ${messageOf(cause)}`
      : `the value does not match ${what}: ${mismatches
          .map((m) => `${m.path === '' ? 'the value' : m.path} expected ${m.expected}, got ${m.actual}`)
          .join('; ')}`;
  const err = new Error(text, { cause });
  (err as Error & { details: unknown }).details = { mismatches };
  return err;
}

/** Named types defined by referenced schemas, keyed by full name. */
async function namedTypes(
  registry: SchemaRegistry,
  references: readonly SchemaReference[],
  into: Record<string, avsc.Type> = {},
): Promise<Record<string, avsc.Type>> {
  for (const ref of references) {
    if (into[ref.name] !== undefined) continue;
    const version = await registry.getVersion(ref.subject, ref.version, { deleted: true });
    await namedTypes(registry, version.references ?? [], into);
    parseAvro(version.schema, into);
    const registered = into[ref.name];
    if (registered === undefined) {
      throw new Error(`reference ${ref.name} (${ref.subject} version ${ref.version}) defines no such type`);
    }
  }
  return into;
}

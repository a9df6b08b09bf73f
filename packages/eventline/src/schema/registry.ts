import avro from 'avsc';
import type { AppendRecord, Engine, StoredRecord } from '../engine/types.ts';
import { type ErrorCode, EventlineError, isEventlineError } from '../errors.ts';
import { normalizeTopicConfig } from '../topic.ts';
import { checkCompatibility } from './compatibility.ts';
import {
  COMPATIBILITY_LEVELS,
  type CompatibilityLevel,
  type CompatibilityResult,
  type ListOptions,
  REGISTRY_MODES,
  type RegistryMode,
  type SchemaById,
  type SchemaInput,
  type SchemaReference,
  type SchemaRegistry,
  type SchemaType,
  type SubjectVersion,
} from './types.ts';

/**
 * The built-in schema registry: Confluent Schema Registry semantics, stored in a compacted
 * single-partition topic in Confluent's `_schemas` record format, so a `_schemas` topic can move
 * between this registry, Confluent, Karapace and Redpanda.
 *
 * Every instance keeps the whole topic in memory and follows it. Writes are not coordinated by a
 * leader: a writer catches up to the end of the topic, appends, then reads until its own record is
 * applied. Records are applied strictly in offset order and the first record to bind an id (or a
 * subject version) wins; a writer whose record lost repairs the key it wrote and tries again. So
 * two processes sharing a SQLite file never hand out one id to two schemas.
 */

/** Options of {@link openRegistry}. */
export interface RegistryOpenOptions {
  /** The topic holding the registry. Default `_schemas`. */
  topic?: string;
  /**
   * The largest schema text accepted, in UTF-8 bytes as submitted (before canonicalization).
   * Default 1 MiB (1,048,576). Larger schemas fail with EVENTLINE_ERR_SCHEMA_INVALID (42209). The
   * topic is created with a `maxMessageBytes` of twice this plus 64 KiB, since JSON escaping of the
   * schema text inside the record value can grow it.
   */
  maxSchemaBytes?: number;
}

/** The built-in registry: a {@link SchemaRegistry} plus what only a local store can offer. */
export interface BuiltInRegistry extends SchemaRegistry {
  /** The topic the registry lives in. */
  readonly topic: string;
  /** Resolves once every record written to the topic before the call has been applied. */
  sync(): Promise<void>;
  /** Ids of live schemas whose references name this subject version (the `referencedby` endpoint). */
  referencedBy(subject: string, version: number | 'latest'): Promise<number[]>;
}

export const DEFAULT_SCHEMAS_TOPIC = '_schemas';
export const DEFAULT_MAX_SCHEMA_BYTES = 1024 * 1024;
const DEFAULT_COMPATIBILITY: CompatibilityLevel = 'BACKWARD';
const DEFAULT_MODE: RegistryMode = 'READWRITE';
const MAX_WRITE_ATTEMPTS = 20;
const FOLLOW_WAIT_MS = 1000;

// ---------------------------------------------------------------------------------------------
// Errors

/**
 * Builds the EventlineError for a Confluent error code: the Eventline code follows from it, and
 * `details.errorCode` / `details.status` carry the Confluent code and the HTTP status.
 */
export function registryError(
  errorCode: number,
  message: string,
  options: { cause?: unknown; details?: Record<string, unknown>; retryable?: boolean; status?: number } = {},
): EventlineError {
  const status = options.status ?? (errorCode >= 1000 ? Math.floor(errorCode / 100) : errorCode);
  return new EventlineError(eventlineCodeFor(errorCode, status), message, {
    ...(options.cause === undefined ? {} : { cause: options.cause }),
    ...(options.retryable === undefined ? {} : { retryable: options.retryable }),
    details: { ...options.details, errorCode, status },
  });
}

/** The Eventline code for a Confluent error code (and HTTP status). */
export function eventlineCodeFor(errorCode: number, status: number): ErrorCode {
  if (errorCode === 42201 || errorCode === 42209) return 'EVENTLINE_ERR_SCHEMA_INVALID';
  if (errorCode === 42205) return 'EVENTLINE_ERR_REGISTRY_READONLY';
  if (errorCode === 409 || (errorCode >= 40900 && errorCode < 41000))
    return 'EVENTLINE_ERR_SCHEMA_INCOMPATIBLE';
  if (status === 404) return 'EVENTLINE_ERR_SCHEMA_NOT_FOUND';
  if (status === 422 || status === 400) return 'EVENTLINE_ERR_INVALID_ARGUMENT';
  if (status === 401 || status === 403) return 'EVENTLINE_ERR_NOT_AUTHORIZED';
  return 'EVENTLINE_ERR_REGISTRY';
}

const subjectNotFound = (subject: string): EventlineError =>
  registryError(40401, `Subject '${subject}' not found.`, { details: { subject } });
const versionNotFound = (subject: string, version: number | string): EventlineError =>
  registryError(40402, `Version ${version} not found.`, { details: { subject, version } });
const schemaNotFound = (id?: number): EventlineError =>
  registryError(40403, id === undefined ? 'Schema not found' : `Schema ${id} not found`, {
    details: id === undefined ? {} : { id },
  });
const invalidSchema = (why: string, cause?: unknown): EventlineError =>
  registryError(42201, `Invalid schema: ${why}`, cause === undefined ? {} : { cause });

// ---------------------------------------------------------------------------------------------
// Canonical form

const PRIMITIVES = new Set(['null', 'boolean', 'int', 'long', 'float', 'double', 'bytes', 'string']);
const NAMED = new Set(['record', 'error', 'enum', 'fixed']);
// Keys the canonical writer places itself; everything else is a custom property, written sorted.
const RESERVED = new Set([
  'type',
  'name',
  'namespace',
  'doc',
  'fields',
  'symbols',
  'default',
  'items',
  'values',
  'size',
  'aliases',
  'logicalType',
  'precision',
  'scale',
]);
const FIELD_RESERVED = new Set(['name', 'type', 'doc', 'default', 'order', 'aliases']);

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type JsonObject = { [key: string]: Json };

function isObject(v: unknown): v is JsonObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** JSON with object keys sorted, so defaults and custom properties do not depend on input order. */
function sorted(v: Json): Json {
  if (Array.isArray(v)) return v.map(sorted);
  if (!isObject(v)) return v;
  const out: JsonObject = {};
  for (const k of Object.keys(v).sort()) out[k] = sorted(v[k] as Json);
  return out;
}

function splitName(name: string, namespace: string | undefined, enclosing: string): [string, string] {
  const dot = name.lastIndexOf('.');
  if (dot >= 0) return [name.slice(dot + 1), name.slice(0, dot)];
  return [name, namespace ?? enclosing];
}

function fullName(short: string, space: string): string {
  return space === '' ? short : `${space}.${short}`;
}

/**
 * Writes Avro schema JSON the way Java's `Schema.toString()` lays it out: type, name, namespace
 * (only where it differs from the enclosing one), doc, then fields / symbols / items / values /
 * size, logical type attributes, other properties (sorted) and aliases. Named types seen before are
 * written as references. With `externals`, the first reference to a type defined in a referenced
 * schema is replaced by its definition, which yields one self-contained schema.
 */
class Canonicalizer {
  readonly #defined = new Set<string>();
  readonly #externals: ReadonlyMap<string, JsonObject> | undefined;

  constructor(externals?: ReadonlyMap<string, JsonObject>) {
    this.#externals = externals;
  }

  write(node: Json, ns: string): Json {
    if (typeof node === 'string') return this.#ref(node, ns);
    if (Array.isArray(node)) return node.map((b) => this.write(b, ns));
    if (!isObject(node)) throw new Error(`unexpected ${JSON.stringify(node)}`);
    const type = node.type;
    if (typeof type !== 'string') return this.write(type as Json, ns);
    if (PRIMITIVES.has(type)) {
      const props = this.#props(node, RESERVED);
      const logical = this.#logical(node);
      if (Object.keys(props).length === 0 && Object.keys(logical).length === 0) return type;
      return { type, ...logical, ...props };
    }
    if (type === 'array') return { type, items: this.write(node.items as Json, ns), ...this.#tail(node) };
    if (type === 'map') return { type, values: this.write(node.values as Json, ns), ...this.#tail(node) };
    if (!NAMED.has(type)) return this.#ref(type, ns);
    const [short, space] = splitName(String(node.name), node.namespace as string | undefined, ns);
    this.#defined.add(fullName(short, space));
    const out: JsonObject = { type, name: short };
    if (space !== ns) out.namespace = space;
    if (typeof node.doc === 'string') out.doc = node.doc;
    if (type === 'enum') {
      out.symbols = node.symbols as Json;
      if (node.default !== undefined) out.default = node.default;
    } else if (type === 'fixed') {
      out.size = node.size as Json;
    } else {
      out.fields = ((node.fields ?? []) as JsonObject[]).map((f) => this.#field(f, space));
    }
    const tail = this.#tail(node);
    Object.assign(out, tail);
    if (Array.isArray(node.aliases)) out.aliases = node.aliases;
    return out;
  }

  #field(f: JsonObject, ns: string): JsonObject {
    const out: JsonObject = { name: f.name as Json, type: this.write(f.type as Json, ns) };
    if (typeof f.doc === 'string') out.doc = f.doc;
    if (f.default !== undefined) out.default = sorted(f.default);
    if (typeof f.order === 'string' && f.order !== 'ascending') out.order = f.order;
    if (Array.isArray(f.aliases)) out.aliases = f.aliases;
    return Object.assign(out, this.#props(f, FIELD_RESERVED));
  }

  #ref(name: string, ns: string): Json {
    if (PRIMITIVES.has(name)) return name;
    const full = name.includes('.') ? name : this.#resolve(name, ns);
    const external = this.#externals?.get(full);
    if (external !== undefined && !this.#defined.has(full)) return this.write(external, ns);
    const dot = full.lastIndexOf('.');
    const space = dot < 0 ? '' : full.slice(0, dot);
    return space === ns ? full.slice(dot + 1) : full;
  }

  // An unqualified name means the enclosing namespace's type when one exists, else the bare name.
  #resolve(name: string, ns: string): string {
    const qualified = fullName(name, ns);
    if (this.#defined.has(qualified) || this.#externals?.has(qualified)) return qualified;
    if (this.#defined.has(name) || this.#externals?.has(name)) return name;
    return qualified;
  }

  #logical(node: JsonObject): JsonObject {
    const out: JsonObject = {};
    for (const k of ['logicalType', 'precision', 'scale'] as const) {
      if (node[k] !== undefined) out[k] = node[k];
    }
    return out;
  }

  #tail(node: JsonObject): JsonObject {
    return { ...this.#logical(node), ...this.#props(node, RESERVED) };
  }

  #props(node: JsonObject, reserved: ReadonlySet<string>): JsonObject {
    const out: JsonObject = {};
    for (const k of Object.keys(node).sort()) {
      if (!reserved.has(k)) out[k] = sorted(node[k] as Json);
    }
    return out;
  }
}

/** Every named type a schema defines, keyed by full name, with the name made absolute. */
function namedDefinitions(node: Json, ns: string, into: Map<string, JsonObject>): void {
  if (Array.isArray(node)) {
    for (const b of node) namedDefinitions(b, ns, into);
    return;
  }
  if (!isObject(node)) return;
  const type = node.type;
  if (typeof type !== 'string') {
    namedDefinitions(type as Json, ns, into);
    return;
  }
  if (type === 'array') namedDefinitions(node.items as Json, ns, into);
  else if (type === 'map') namedDefinitions(node.values as Json, ns, into);
  else if (NAMED.has(type)) {
    const [short, space] = splitName(String(node.name), node.namespace as string | undefined, ns);
    const { namespace: _ns, ...rest } = node;
    const full = fullName(short, space);
    into.set(full, { ...rest, name: full });
    for (const f of (node.fields ?? []) as JsonObject[]) namedDefinitions(f.type as Json, space, into);
  }
}

// ---------------------------------------------------------------------------------------------
// Records of the `_schemas` topic

interface VersionEntry {
  subject: string;
  version: number;
  id: number;
  deleted: boolean;
}

interface SchemaEntry {
  id: number;
  schemaType: SchemaType;
  schema: string;
  references: SchemaReference[];
  identity: string;
}

/** A validated, canonical schema ready to register or compare. */
interface Prepared {
  schemaType: SchemaType;
  schema: string;
  references: SchemaReference[];
  identity: string;
  /** Parsed Avro JSON with referenced types inlined, for the compatibility checker. */
  resolved: unknown;
}

function identityOf(schemaType: SchemaType, schema: string, references: readonly SchemaReference[]): string {
  const refs = references.map((r) => [r.name, r.subject, r.version]);
  return `${schemaType}\n${JSON.stringify(refs)}\n${schema}`;
}

const schemaKey = (subject: string, version: number): string =>
  JSON.stringify({ keytype: 'SCHEMA', subject, version, magic: 1 });
const configKey = (subject: string | null): string =>
  JSON.stringify({ keytype: 'CONFIG', subject, magic: 0 });
const modeKey = (subject: string | null): string => JSON.stringify({ keytype: 'MODE', subject, magic: 0 });
const deleteSubjectKey = (subject: string): string =>
  JSON.stringify({ keytype: 'DELETE_SUBJECT', subject, magic: 0 });
const NOOP_KEY = JSON.stringify({ keytype: 'NOOP', magic: 0 });

function record(key: string, value: unknown): AppendRecord {
  return {
    partition: 0,
    key: Buffer.from(key),
    value: value === null ? null : Buffer.from(JSON.stringify(value)),
    headers: [],
    timestamp: Date.now(),
  };
}

function schemaValue(entry: VersionEntry, schema: SchemaEntry): Record<string, unknown> {
  return {
    subject: entry.subject,
    version: entry.version,
    id: entry.id,
    ...(schema.schemaType === 'AVRO' ? {} : { schemaType: schema.schemaType }),
    ...(schema.references.length === 0 ? {} : { references: schema.references }),
    schema: schema.schema,
    deleted: entry.deleted,
  };
}

function isLevel(v: unknown): v is CompatibilityLevel {
  return typeof v === 'string' && (COMPATIBILITY_LEVELS as readonly string[]).includes(v);
}

function isMode(v: unknown): v is RegistryMode {
  return typeof v === 'string' && (REGISTRY_MODES as readonly string[]).includes(v);
}

function parseReferences(raw: unknown): SchemaReference[] | undefined {
  if (raw === undefined || raw === null) return [];
  if (!Array.isArray(raw)) return undefined;
  const out: SchemaReference[] = [];
  for (const r of raw) {
    if (!isObject(r) || typeof r.name !== 'string' || typeof r.subject !== 'string') return undefined;
    if (typeof r.version !== 'number' || !Number.isInteger(r.version)) return undefined;
    out.push({ name: r.name, subject: r.subject, version: r.version });
  }
  return out;
}

// ---------------------------------------------------------------------------------------------

/**
 * Opens the built-in registry on `engine`: creates the topic if missing (1 partition,
 * `cleanupPolicy: 'compact'`, retention forever), reads it to the end, and follows it until
 * `close()`. The engine stays the caller's: `close()` does not close it.
 *
 * Throws EVENTLINE_ERR_REGISTRY when the topic exists with more than one partition or a cleanup
 * policy other than compact, and the engine's errors when it cannot be read.
 */
export async function openRegistry(
  engine: Engine,
  options: RegistryOpenOptions = {},
): Promise<BuiltInRegistry> {
  const topic = options.topic ?? DEFAULT_SCHEMAS_TOPIC;
  const maxSchemaBytes = options.maxSchemaBytes ?? DEFAULT_MAX_SCHEMA_BYTES;
  if (!Number.isSafeInteger(maxSchemaBytes) || maxSchemaBytes < 1) {
    throw new EventlineError('EVENTLINE_ERR_INVALID_ARGUMENT', 'maxSchemaBytes must be a positive integer', {
      details: { maxSchemaBytes },
    });
  }
  await ensureTopic(engine, topic, maxSchemaBytes);
  const registry = new KafkaStoreRegistry(engine, topic, maxSchemaBytes);
  await registry.sync();
  registry.follow();
  return registry;
}

async function ensureTopic(engine: Engine, topic: string, maxSchemaBytes: number): Promise<void> {
  const config = normalizeTopicConfig(topic, {
    partitions: 1,
    cleanupPolicy: 'compact',
    retention: 'forever',
    maxMessageBytes: 2 * maxSchemaBytes + 64 * 1024,
  });
  try {
    await engine.createTopics([{ name: topic, ...config }]);
    return;
  } catch (err) {
    if (!isEventlineError(err, 'EVENTLINE_ERR_TOPIC_EXISTS')) throw err;
  }
  const [described] = await engine.describeTopics([topic]);
  const partitions = described?.partitions.length ?? 0;
  const policy = described?.config.cleanupPolicy;
  if (partitions !== 1 || (policy !== undefined && policy !== 'compact')) {
    throw new EventlineError(
      'EVENTLINE_ERR_REGISTRY',
      `the schema topic ${topic} must have exactly 1 partition and cleanupPolicy 'compact' (it has ${partitions} and '${policy}')`,
      { retryable: false, details: { topic, partitions, cleanupPolicy: policy } },
    );
  }
}

class KafkaStoreRegistry implements BuiltInRegistry {
  readonly description = 'built-in';
  readonly topic: string;
  readonly #engine: Engine;
  readonly #maxSchemaBytes: number;
  readonly #stop = new AbortController();
  #following: Promise<void> | undefined;
  #closed = false;

  // State, rebuilt from the topic.
  #position = 0;
  readonly #subjects = new Map<string, Map<number, VersionEntry>>();
  readonly #byId = new Map<number, SchemaEntry>();
  readonly #byIdentity = new Map<string, number>();
  /** How many versions (live or soft-deleted) use each id; an id with none no longer resolves. */
  readonly #uses = new Map<number, number>();
  #maxId = 0;
  #globalConfig: CompatibilityLevel | undefined;
  readonly #subjectConfig = new Map<string, CompatibilityLevel>();
  #globalMode: RegistryMode | undefined;
  readonly #subjectMode = new Map<string, RegistryMode>();
  /** Offsets of SCHEMA records that lost to an earlier record (rare; kept for writers to check). */
  readonly #rejected = new Set<number>();
  readonly #resolvedCache = new Map<number, unknown>();

  #readChain: Promise<unknown> = Promise.resolve();
  #writeChain: Promise<unknown> = Promise.resolve();

  constructor(engine: Engine, topic: string, maxSchemaBytes: number) {
    this.#engine = engine;
    this.topic = topic;
    this.#maxSchemaBytes = maxSchemaBytes;
  }

  // ----- following the topic

  follow(): void {
    const watch = this.#engine.watch();
    const signal = this.#stop.signal;
    this.#following = (async () => {
      while (!signal.aborted) {
        try {
          const applied = await this.#locked(() => this.#readAvailable());
          if (applied === 0) await watch.wait(FOLLOW_WAIT_MS, signal);
        } catch {
          if (signal.aborted) break;
          // The engine failed for a moment; writers surface such errors, the follower retries.
          await new Promise((r) => setTimeout(r, FOLLOW_WAIT_MS));
        }
      }
    })();
  }

  async sync(): Promise<void> {
    this.#check();
    const [offsets] = await this.#engine.listOffsets(this.topic, [0]);
    const end = offsets?.end ?? 0;
    await this.#locked(() => this.#readTo(end));
  }

  #locked<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#readChain.then(fn, fn);
    this.#readChain = run.catch(() => undefined);
    return run;
  }

  async #readAvailable(): Promise<number> {
    let total = 0;
    for (;;) {
      const records = await this.#engine.fetch(this.topic, 0, this.#position, { maxRecords: 1000 });
      if (records.length === 0) return total;
      this.#applyAll(records);
      total += records.length;
    }
  }

  async #readTo(end: number): Promise<void> {
    while (this.#position < end) {
      const records = await this.#engine.fetch(this.topic, 0, this.#position, { maxRecords: 1000 });
      // Nothing left below `end`: the rest was compacted away (or is not a record at all).
      if (records.length === 0) this.#position = end;
      else this.#applyAll(records);
    }
  }

  #applyAll(records: StoredRecord[]): void {
    for (const r of records) {
      if (r.offset < this.#position) continue;
      this.#apply(r);
      this.#position = r.offset + 1;
    }
  }

  #apply(r: StoredRecord): void {
    let key: unknown;
    let value: unknown = null;
    try {
      key = JSON.parse(r.key?.toString('utf8') ?? 'null');
      if (r.value !== null && r.value.length > 0) value = JSON.parse(r.value.toString('utf8'));
    } catch {
      return; // not ours: Confluent and Karapace skip records they cannot read as well
    }
    if (!isObject(key)) return;
    const subject = typeof key.subject === 'string' ? key.subject : null;
    switch (key.keytype) {
      case 'SCHEMA':
        if (subject !== null && typeof key.version === 'number') {
          if (!this.#applySchema(subject, key.version, value)) this.#rejected.add(r.offset);
        }
        return;
      case 'CONFIG': {
        const level = isObject(value) ? (value.compatibilityLevel ?? value.compatibility) : undefined;
        const next = isLevel(level) ? level : undefined;
        if (subject === null) this.#globalConfig = next;
        else if (next === undefined) this.#subjectConfig.delete(subject);
        else this.#subjectConfig.set(subject, next);
        return;
      }
      case 'MODE': {
        const mode = isObject(value) && isMode(value.mode) ? value.mode : undefined;
        if (subject === null) this.#globalMode = mode;
        else if (mode === undefined) this.#subjectMode.delete(subject);
        else this.#subjectMode.set(subject, mode);
        return;
      }
      case 'DELETE_SUBJECT': {
        if (subject === null || !isObject(value) || typeof value.version !== 'number') return;
        for (const v of this.#subjects.get(subject)?.values() ?? []) {
          if (v.version <= value.version) v.deleted = true;
        }
        return;
      }
      case 'NOOP':
        // Hard deletes leave the highest id here, so compaction cannot make an id reusable.
        if (isObject(value) && typeof value.maxId === 'number')
          this.#maxId = Math.max(this.#maxId, value.maxId);
        return;
      default:
        return;
    }
  }

  /** Applies a SCHEMA record; false when it lost to an earlier record (first writer wins). */
  #applySchema(subject: string, version: number, value: unknown): boolean {
    const versions = this.#subjects.get(subject);
    const existing = versions?.get(version);
    if (value === null) {
      if (existing !== undefined && versions !== undefined) {
        versions.delete(version);
        if (versions.size === 0) this.#subjects.delete(subject);
        this.#release(existing.id);
      }
      return true;
    }
    if (!isObject(value) || typeof value.id !== 'number' || typeof value.schema !== 'string') return true;
    const id = value.id;
    const schemaType: SchemaType =
      value.schemaType === 'JSON' || value.schemaType === 'PROTOBUF' ? value.schemaType : 'AVRO';
    const references = parseReferences(value.references) ?? [];
    const identity = identityOf(schemaType, value.schema, references);
    const bound = this.#byId.get(id);
    if (bound !== undefined && bound.identity !== identity) return false;
    if (existing !== undefined && existing.id !== id) return false;
    if (bound === undefined) {
      this.#byId.set(id, { id, schemaType, schema: value.schema, references, identity });
      if (!this.#byIdentity.has(identity)) this.#byIdentity.set(identity, id);
    }
    this.#maxId = Math.max(this.#maxId, id);
    const deleted = value.deleted === true;
    if (existing !== undefined) {
      existing.deleted = deleted;
      return true;
    }
    let map = versions;
    if (map === undefined) {
      map = new Map();
      this.#subjects.set(subject, map);
    }
    map.set(version, { subject, version, id, deleted });
    this.#uses.set(id, (this.#uses.get(id) ?? 0) + 1);
    return true;
  }

  #release(id: number): void {
    const n = (this.#uses.get(id) ?? 0) - 1;
    if (n > 0) this.#uses.set(id, n);
    else this.#uses.delete(id);
  }

  // ----- writing

  /**
   * Runs `plan` on caught-up state, appends its records and waits until they are applied. When a
   * SCHEMA record lost to a concurrent writer, the key it wrote is repaired (so compaction keeps
   * the winner) and the plan runs again on the new state.
   */
  #write<T>(plan: () => { records: AppendRecord[]; result: T }): Promise<T> {
    const run = this.#writeChain.then(() => this.#writeNow(plan));
    this.#writeChain = run.catch(() => undefined);
    return run;
  }

  async #writeNow<T>(plan: () => { records: AppendRecord[]; result: T }): Promise<T> {
    for (let attempt = 1; attempt <= MAX_WRITE_ATTEMPTS; attempt++) {
      await this.sync();
      const { records, result } = plan();
      if (records.length === 0) return result;
      const written = await this.#append(records);
      const end = Math.max(...written.map((w) => w.offset)) + 1;
      await this.#locked(() => this.#readTo(end));
      const lost = written.filter((w) => this.#rejected.has(w.offset));
      if (lost.length === 0) return result;
      await this.sync();
      const repairs: AppendRecord[] = [];
      for (const w of lost) {
        const key = records[w.index]?.key;
        if (key === null || key === undefined) continue;
        const parsed = JSON.parse(key.toString('utf8')) as { subject: string; version: number };
        const entry = this.#subjects.get(parsed.subject)?.get(parsed.version);
        const schema = entry === undefined ? undefined : this.#byId.get(entry.id);
        // Only a slot someone else won needs its winner written again (compaction keeps the last
        // record of a key). A lost record for a free slot lost on its id and loses again on any
        // replay; a tombstone there could delete a record another writer put in the slot since.
        if (entry !== undefined && schema !== undefined) {
          repairs.push(record(key.toString('utf8'), schemaValue(entry, schema)));
        }
      }
      if (repairs.length > 0) await this.#append(repairs);
    }
    throw registryError(50001, `could not write to ${this.topic}: concurrent writers kept winning`, {
      retryable: true,
    });
  }

  async #append(records: AppendRecord[]): Promise<{ offset: number; index: number }[]> {
    try {
      const results = await this.#engine.append(this.topic, records);
      return results.map((r, index) => ({ offset: r.offset, index }));
    } catch (err) {
      if (isEventlineError(err, 'EVENTLINE_ERR_MESSAGE_TOO_LARGE')) {
        throw registryError(42209, 'Schema too large for the schema topic', { cause: err });
      }
      throw err;
    }
  }

  #check(): void {
    if (this.#closed) throw new EventlineError('EVENTLINE_ERR_CLOSED', 'the schema registry is closed');
  }

  // ----- validation

  #validateSubject(subject: unknown): asserts subject is string {
    // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what we refuse
    if (typeof subject !== 'string' || subject.length === 0 || /[\u0000-\u001f]/.test(subject)) {
      throw registryError(42208, `Invalid subject ${JSON.stringify(subject)}`);
    }
  }

  #prepare(input: SchemaInput): Prepared {
    if (!isObject(input as unknown) || typeof input.schema !== 'string') {
      throw invalidSchema('the schema must be a string');
    }
    const schemaType = input.schemaType ?? 'AVRO';
    if (schemaType !== 'AVRO') {
      if (schemaType === 'JSON' || schemaType === 'PROTOBUF') {
        throw invalidSchema(`schema type ${schemaType} not supported; this registry accepts AVRO`);
      }
      throw invalidSchema(`unknown schema type ${JSON.stringify(schemaType)}`);
    }
    const size = Buffer.byteLength(input.schema, 'utf8');
    if (size > this.#maxSchemaBytes) {
      throw registryError(42209, `Schema too large: ${size} bytes; the limit is ${this.#maxSchemaBytes}`, {
        details: { size, limit: this.#maxSchemaBytes },
      });
    }
    const references = parseReferences(input.references);
    if (references === undefined) throw invalidSchema('references must be [{name, subject, version}]');
    let json: Json;
    try {
      json = JSON.parse(input.schema) as Json;
    } catch (err) {
      throw invalidSchema(`not JSON: ${(err as Error).message}`, err);
    }
    const ordered = this.#referencedSchemas(references);
    const externals = new Map<string, JsonObject>();
    const registry: Record<string, avro.Type> = {};
    try {
      for (const ref of ordered) {
        const refJson = JSON.parse(ref.schema) as Json;
        avro.Type.forSchema(refJson as avro.Schema, { registry });
        namedDefinitions(refJson, '', externals);
      }
    } catch (err) {
      throw invalidSchema(`a referenced schema does not parse: ${(err as Error).message}`, err);
    }
    let schema: string;
    let resolved: unknown;
    try {
      avro.Type.forSchema(json as avro.Schema, { registry });
      schema = JSON.stringify(new Canonicalizer().write(json, ''));
      resolved = references.length === 0 ? JSON.parse(schema) : new Canonicalizer(externals).write(json, '');
    } catch (err) {
      throw invalidSchema((err as Error).message, err);
    }
    return { schemaType, schema, references, identity: identityOf(schemaType, schema, references), resolved };
  }

  /** The schemas `references` name, transitively, each after the ones it references. */
  #referencedSchemas(references: readonly SchemaReference[]): SchemaEntry[] {
    const out: SchemaEntry[] = [];
    const seen = new Set<number>();
    const visit = (refs: readonly SchemaReference[], depth: number): void => {
      if (depth > 32) throw invalidSchema('references nest too deeply');
      for (const ref of refs) {
        const entry = this.#subjects.get(ref.subject)?.get(ref.version);
        const schema = entry === undefined ? undefined : this.#byId.get(entry.id);
        if (schema === undefined) {
          throw invalidSchema(
            `reference ${ref.name} to subject '${ref.subject}' version ${ref.version} does not exist`,
          );
        }
        if (seen.has(schema.id)) continue;
        seen.add(schema.id);
        visit(schema.references, depth + 1);
        out.push(schema);
      }
    };
    visit(references, 0);
    return out;
  }

  /** Parsed, self-contained Avro JSON of a stored schema, for the compatibility checker. */
  #resolvedById(id: number): unknown {
    let r = this.#resolvedCache.get(id);
    if (r === undefined) {
      const schema = this.#byId.get(id);
      if (schema === undefined) throw schemaNotFound(id);
      r =
        schema.references.length === 0
          ? JSON.parse(schema.schema)
          : this.#prepare({ schema: schema.schema, references: schema.references }).resolved;
      this.#resolvedCache.set(id, r);
    }
    return r;
  }

  #mode(subject: string): RegistryMode {
    return this.#subjectMode.get(subject) ?? this.#globalMode ?? DEFAULT_MODE;
  }

  #assertWritable(subject: string): void {
    const mode = this.#mode(subject);
    if (mode === 'READONLY') {
      throw registryError(42205, `Subject ${subject} is in read-only mode`, { details: { subject, mode } });
    }
  }

  #level(subject: string): CompatibilityLevel {
    return this.#subjectConfig.get(subject) ?? this.#globalConfig ?? DEFAULT_COMPATIBILITY;
  }

  #entries(subject: string): VersionEntry[] {
    return [...(this.#subjects.get(subject)?.values() ?? [])].sort((a, b) => a.version - b.version);
  }

  #live(subject: string): VersionEntry[] {
    return this.#entries(subject).filter((v) => !v.deleted);
  }

  #toVersion(entry: VersionEntry): SubjectVersion {
    const schema = this.#byId.get(entry.id);
    if (schema === undefined) throw registryError(50001, `schema ${entry.id} is missing from the store`);
    return {
      subject: entry.subject,
      version: entry.version,
      id: entry.id,
      schemaType: schema.schemaType,
      schema: schema.schema,
      ...(schema.references.length === 0 ? {} : { references: schema.references }),
      ...(entry.deleted ? { deleted: true } : {}),
    };
  }

  #compat(level: CompatibilityLevel, next: unknown, against: readonly VersionEntry[]): CompatibilityResult {
    if (level === 'NONE' || against.length === 0) return { compatible: true, messages: [] };
    const previous = against.map((e) => this.#resolvedById(e.id));
    const result = checkCompatibility(
      level,
      next,
      previous,
      against.map((e) => e.version),
    );
    return { compatible: result.compatible, messages: [...result.messages] };
  }

  /** Ids of live schemas that reference `subject` `version` (a delete would break them: 42206). */
  #referencedBy(subject: string, version: number): number[] {
    const ids = new Set<number>();
    for (const versions of this.#subjects.values()) {
      for (const v of versions.values()) {
        if (v.deleted) continue;
        const refs = this.#byId.get(v.id)?.references ?? [];
        if (refs.some((r) => r.subject === subject && r.version === version)) ids.add(v.id);
      }
    }
    return [...ids].sort((a, b) => a - b);
  }

  #assertUnreferenced(subject: string, versions: readonly number[]): void {
    for (const version of versions) {
      const ids = this.#referencedBy(subject, version);
      if (ids.length > 0) {
        throw registryError(
          42206,
          `One or more references exist to the schema {subject=${subject},version=${version}}`,
          { details: { subject, version, referencedBy: ids } },
        );
      }
    }
  }

  /** Tombstones that go with removing a subject's last version, and the id watermark. */
  #cleanupRecords(subject: string | undefined): AppendRecord[] {
    const out: AppendRecord[] = [];
    if (subject !== undefined) {
      if (this.#subjectConfig.has(subject)) out.push(record(configKey(subject), null));
      if (this.#subjectMode.has(subject)) out.push(record(modeKey(subject), null));
      out.push(record(deleteSubjectKey(subject), null));
    }
    out.push(record(NOOP_KEY, { maxId: this.#maxId }));
    return out;
  }

  /**
   * Runs a read against memory. A miss may only mean another process wrote a moment ago, so the
   * registry catches up once and tries again before reporting it.
   */
  async #read<T>(fn: () => T): Promise<T> {
    this.#check();
    try {
      return fn();
    } catch (err) {
      if (!isEventlineError(err, 'EVENTLINE_ERR_SCHEMA_NOT_FOUND')) throw err;
      await this.sync();
      return fn();
    }
  }

  // ----- the SchemaRegistry contract

  async register(subject: string, input: SchemaInput): Promise<{ id: number; version: number }> {
    this.#check();
    this.#validateSubject(subject);
    return this.#write(() => {
      const p = this.#prepare(input);
      this.#assertWritable(subject);
      const entries = this.#entries(subject);
      const same = entries.find((e) => !e.deleted && this.#byId.get(e.id)?.identity === p.identity);
      if (same !== undefined) return { records: [], result: { id: same.id, version: same.version } };
      // A schema keeps its id for good, even after a hard delete: ids are never reassigned.
      const id = this.#byIdentity.get(p.identity) ?? this.#maxId + 1;
      if (this.#mode(subject) !== 'IMPORT') {
        const result = this.#compat(
          this.#level(subject),
          p.resolved,
          entries.filter((e) => !e.deleted),
        );
        if (!result.compatible) {
          throw registryError(
            409,
            `Schema being registered is incompatible with an earlier schema for subject "${subject}", details: [${result.messages.join(', ')}]`,
            { details: { subject, messages: result.messages } },
          );
        }
      }
      const version = (entries.at(-1)?.version ?? 0) + 1;
      // Soft-deleted versions holding the same schema are removed, as Confluent does.
      const records = entries
        .filter((e) => e.deleted && e.id === id)
        .map((e) => record(schemaKey(subject, e.version), null));
      const entry: VersionEntry = { subject, version, id, deleted: false };
      const schema: SchemaEntry = { id, ...p };
      records.push(record(schemaKey(subject, version), schemaValue(entry, schema)));
      return { records, result: { id, version } };
    });
  }

  async lookup(
    subject: string,
    input: SchemaInput,
    options: { deleted?: boolean } = {},
  ): Promise<SubjectVersion> {
    return this.#read(() => {
      this.#validateSubject(subject);
      const p = this.#prepare(input);
      const entries = this.#entries(subject).filter((e) => options.deleted === true || !e.deleted);
      if (entries.length === 0) throw subjectNotFound(subject);
      const hit = entries.reverse().find((e) => this.#byId.get(e.id)?.identity === p.identity);
      if (hit === undefined) throw schemaNotFound();
      return this.#toVersion(hit);
    });
  }

  async getById(id: number): Promise<SchemaById> {
    return this.#read(() => {
      const schema = this.#byId.get(id);
      if (schema === undefined || !this.#uses.has(id)) throw schemaNotFound(id);
      return {
        schema: schema.schema,
        schemaType: schema.schemaType,
        ...(schema.references.length === 0 ? {} : { references: schema.references }),
      };
    });
  }

  #usesOf(id: number, options: ListOptions): VersionEntry[] {
    if (!this.#byId.has(id) || !this.#uses.has(id)) throw schemaNotFound(id);
    const out: VersionEntry[] = [];
    for (const versions of this.#subjects.values()) {
      for (const v of versions.values()) {
        if (v.id !== id) continue;
        if (options.deletedOnly === true ? v.deleted : options.deleted === true || !v.deleted) out.push(v);
      }
    }
    return out.sort((a, b) =>
      a.subject < b.subject ? -1 : a.subject > b.subject ? 1 : a.version - b.version,
    );
  }

  async subjectsForId(id: number, options: ListOptions = {}): Promise<string[]> {
    return this.#read(() => [...new Set(this.#usesOf(id, options).map((v) => v.subject))]);
  }

  async versionsForId(
    id: number,
    options: ListOptions = {},
  ): Promise<{ subject: string; version: number }[]> {
    return this.#read(() =>
      this.#usesOf(id, options).map((v) => ({ subject: v.subject, version: v.version })),
    );
  }

  async subjects(options: ListOptions & { prefix?: string } = {}): Promise<string[]> {
    this.#check();
    const out: string[] = [];
    for (const [subject, versions] of this.#subjects) {
      if (options.prefix !== undefined && !subject.startsWith(options.prefix)) continue;
      const live = [...versions.values()].some((v) => !v.deleted);
      if (options.deletedOnly === true ? !live : options.deleted === true || live) out.push(subject);
    }
    return out.sort();
  }

  async versions(subject: string, options: ListOptions = {}): Promise<number[]> {
    return this.#read(() => {
      const entries = this.#entries(subject);
      const live = entries.filter((e) => !e.deleted);
      if (
        entries.length === 0 ||
        (live.length === 0 && options.deleted !== true && options.deletedOnly !== true)
      ) {
        throw subjectNotFound(subject);
      }
      if (options.deletedOnly === true) return entries.filter((e) => e.deleted).map((e) => e.version);
      return (options.deleted === true ? entries : live).map((e) => e.version);
    });
  }

  async getVersion(
    subject: string,
    version: number | 'latest',
    options: { deleted?: boolean } = {},
  ): Promise<SubjectVersion> {
    const v = checkVersion(version);
    return this.#read(() => {
      const entries = this.#entries(subject).filter((e) => options.deleted === true || !e.deleted);
      if (entries.length === 0) throw subjectNotFound(subject);
      const entry = v === 'latest' ? entries.at(-1) : entries.find((e) => e.version === v);
      if (entry === undefined) throw versionNotFound(subject, v);
      return this.#toVersion(entry);
    });
  }

  async deleteSubject(subject: string, options: { permanent?: boolean } = {}): Promise<number[]> {
    this.#check();
    return this.#write(() => {
      this.#assertWritable(subject);
      const entries = this.#entries(subject);
      const last = entries.at(-1);
      if (last === undefined) throw subjectNotFound(subject);
      const live = entries.filter((e) => !e.deleted);
      if (options.permanent !== true) {
        if (live.length === 0) {
          throw registryError(
            40404,
            `Subject '${subject}' was soft deleted. Set permanent=true to delete permanently`,
            { details: { subject } },
          );
        }
        this.#assertUnreferenced(
          subject,
          live.map((e) => e.version),
        );
        return {
          records: [record(deleteSubjectKey(subject), { subject, version: last.version })],
          result: live.map((e) => e.version),
        };
      }
      if (live.length > 0) {
        throw registryError(
          40405,
          `Subject '${subject}' was not deleted first before being permanently deleted`,
          { details: { subject } },
        );
      }
      return {
        records: [
          ...entries.map((e) => record(schemaKey(subject, e.version), null)),
          ...this.#cleanupRecords(subject),
        ],
        result: entries.map((e) => e.version),
      };
    });
  }

  async deleteVersion(
    subject: string,
    version: number | 'latest',
    options: { permanent?: boolean } = {},
  ): Promise<number> {
    this.#check();
    const v = checkVersion(version);
    return this.#write(() => {
      this.#assertWritable(subject);
      const entries = this.#entries(subject);
      if (entries.length === 0) throw subjectNotFound(subject);
      const permanent = options.permanent === true;
      const entry =
        v === 'latest'
          ? (permanent ? entries : entries.filter((e) => !e.deleted)).at(-1)
          : entries.find((e) => e.version === v);
      if (entry === undefined) throw versionNotFound(subject, v);
      const schema = this.#byId.get(entry.id);
      if (!permanent) {
        if (entry.deleted) {
          throw registryError(
            40406,
            `Subject '${subject}' Version ${entry.version} was soft deleted. Set permanent=true to delete permanently`,
            { details: { subject, version: entry.version } },
          );
        }
        this.#assertUnreferenced(subject, [entry.version]);
        if (schema === undefined) throw schemaNotFound(entry.id);
        const value = schemaValue({ ...entry, deleted: true }, schema);
        return { records: [record(schemaKey(subject, entry.version), value)], result: entry.version };
      }
      if (!entry.deleted) {
        throw registryError(
          40407,
          `Subject '${subject}' Version ${entry.version} was not deleted first before being permanently deleted`,
          { details: { subject, version: entry.version } },
        );
      }
      const records = [record(schemaKey(subject, entry.version), null)];
      records.push(...this.#cleanupRecords(entries.length === 1 ? subject : undefined));
      return { records, result: entry.version };
    });
  }

  async testCompatibility(
    subject: string,
    input: SchemaInput,
    version?: number | 'latest',
  ): Promise<CompatibilityResult> {
    const v = version === undefined ? undefined : checkVersion(version);
    this.#validateSubject(subject);
    return this.#read(() => {
      const p = this.#prepare(input);
      const level = this.#level(subject);
      const live = this.#live(subject);
      if (v === undefined) return this.#compat(level, p.resolved, live);
      if (v === 'latest') return this.#compat(level, p.resolved, live.slice(-1));
      const entries = this.#entries(subject);
      if (entries.length === 0) throw subjectNotFound(subject);
      const entry = live.find((e) => e.version === v);
      if (entry === undefined) throw versionNotFound(subject, v);
      return this.#compat(level, p.resolved, [entry]);
    });
  }

  async getConfig(
    subject?: string,
    options: { defaultToGlobal?: boolean } = {},
  ): Promise<CompatibilityLevel> {
    return this.#read(() => {
      const global = this.#globalConfig ?? DEFAULT_COMPATIBILITY;
      if (subject === undefined) return global;
      const level = this.#subjectConfig.get(subject);
      if (level !== undefined) return level;
      if (options.defaultToGlobal === true) return global;
      throw registryError(
        40408,
        `Subject '${subject}' does not have subject-level compatibility configured`,
        { details: { subject } },
      );
    });
  }

  async setConfig(subject: string | undefined, level: CompatibilityLevel): Promise<CompatibilityLevel> {
    this.#check();
    if (subject !== undefined) this.#validateSubject(subject);
    if (!isLevel(level)) {
      throw registryError(
        42203,
        `Invalid compatibility level. Valid values are ${COMPATIBILITY_LEVELS.join(', ')}`,
        { details: { level } },
      );
    }
    return this.#write(() => ({
      records: [record(configKey(subject ?? null), { compatibilityLevel: level })],
      result: level,
    }));
  }

  async deleteConfig(subject?: string): Promise<CompatibilityLevel> {
    this.#check();
    return this.#write(() => {
      if (subject === undefined) {
        return {
          records: [record(configKey(null), null)],
          result: this.#globalConfig ?? DEFAULT_COMPATIBILITY,
        };
      }
      const old = this.#subjectConfig.get(subject);
      if (old === undefined) throw subjectNotFound(subject);
      return { records: [record(configKey(subject), null)], result: old };
    });
  }

  async getMode(subject?: string, options: { defaultToGlobal?: boolean } = {}): Promise<RegistryMode> {
    return this.#read(() => {
      const global = this.#globalMode ?? DEFAULT_MODE;
      if (subject === undefined) return global;
      const mode = this.#subjectMode.get(subject);
      if (mode !== undefined) return mode;
      if (options.defaultToGlobal === true) return global;
      throw registryError(40409, `Subject '${subject}' does not have subject-level mode configured`, {
        details: { subject },
      });
    });
  }

  async setMode(subject: string | undefined, mode: RegistryMode): Promise<RegistryMode> {
    this.#check();
    if (subject !== undefined) this.#validateSubject(subject);
    if (!isMode(mode)) {
      throw registryError(42204, `Invalid mode. Valid values are ${REGISTRY_MODES.join(', ')}`, {
        details: { mode },
      });
    }
    return this.#write(() => ({ records: [record(modeKey(subject ?? null), { mode })], result: mode }));
  }

  async deleteMode(subject?: string): Promise<RegistryMode> {
    this.#check();
    return this.#write(() => {
      if (subject === undefined) {
        return { records: [record(modeKey(null), null)], result: this.#globalMode ?? DEFAULT_MODE };
      }
      const old = this.#subjectMode.get(subject);
      if (old === undefined) {
        throw registryError(40409, `Subject '${subject}' does not have subject-level mode configured`, {
          details: { subject },
        });
      }
      return { records: [record(modeKey(subject), null)], result: old };
    });
  }

  async referencedBy(subject: string, version: number | 'latest'): Promise<number[]> {
    return this.getVersion(subject, version, { deleted: true }).then((v) =>
      this.#referencedBy(subject, v.version),
    );
  }

  async schemaTypes(): Promise<SchemaType[]> {
    return ['AVRO'];
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#stop.abort();
    await this.#following;
    await this.#writeChain;
  }
}

/**
 * Checks a version argument: a positive 32-bit integer, `'latest'` (any case) or -1 (latest).
 * Anything else is EVENTLINE_ERR_INVALID_ARGUMENT (42202).
 */
export function checkVersion(version: unknown): number | 'latest' {
  if (typeof version === 'string') {
    if (version.toLowerCase() === 'latest') return 'latest';
    if (/^-?\d+$/.test(version)) return checkVersion(Number(version));
  } else if (version === -1) {
    return 'latest';
  } else if (
    typeof version === 'number' &&
    Number.isInteger(version) &&
    version >= 1 &&
    version <= 2 ** 31 - 1
  ) {
    return version;
  }
  throw registryError(
    42202,
    `The specified version '${String(version)}' is not a valid version id. Allowed values are between [1, 2^31-1] and the string "latest"`,
    { details: { version } },
  );
}

import avro from 'avsc';

/**
 * avsc types with Eventline's value mapping:
 * - `long`: a number while it is a safe integer (|n| ≤ 2^53 − 1), a bigint beyond; never rounded.
 *   Writing accepts both.
 * - `timestamp-millis`, `local-timestamp-millis`: Date (writing also accepts epoch milliseconds).
 * - `timestamp-micros`, `local-timestamp-micros`: bigint microseconds (a Date would lose them).
 * - `date`: Date at UTC midnight (writing also accepts `YYYY-MM-DD`).
 * - `uuid`: string, checked on write.
 * - `decimal` (bytes or fixed): exact decimal string such as `"-12.50"`; writing accepts a string,
 *   a number or a bigint, and refuses more digits than the scale or precision allow.
 * Unions whose branches values cannot tell apart (two records, a map and a record, int and double,
 * string and enum) are written and read in avsc's wrapped form `{ "branch.Name": value }`; all
 * others are plain values. `long` and the logical types are told apart by value at write time, so a
 * value two of those branches both accept (a safe integer for `["int", "long"]`) is refused as
 * ambiguous.
 */

type Tap = { buf: Buffer; pos: number; readLong(): number; writeLong(n: number): void; skipLong(): void };
type AnyType = avro.Type & Record<string, unknown>;

const MAX_LONG = (1n << 63n) - 1n;
const MIN_LONG = -(1n << 63n);
// avsc's varint arithmetic on numbers is exact only below 2^52.
const FAST_LIMIT = 2 ** 52;

function readBigLong(tap: Tap): bigint {
  const buf = tap.buf;
  let z = 0n;
  let shift = 0n;
  let b: number;
  do {
    b = buf[tap.pos++]!;
    z |= BigInt(b & 0x7f) << shift;
    shift += 7n;
  } while (b & 0x80 && shift < 70n);
  return BigInt.asIntN(64, (z >> 1n) ^ -(z & 1n));
}

function writeBigLong(tap: Tap, v: bigint): void {
  let z = BigInt.asUintN(64, (v << 1n) ^ (v >> 63n));
  const buf = tap.buf;
  while (z > 0x7fn) {
    buf[tap.pos++] = Number(z & 0x7fn) | 0x80;
    z >>= 7n;
  }
  buf[tap.pos++] = Number(z);
}

function isLong(v: unknown): v is number | bigint {
  if (typeof v === 'number') return Number.isSafeInteger(v);
  return typeof v === 'bigint' && v >= MIN_LONG && v <= MAX_LONG;
}

let longType: avro.Type | undefined;

/** The `long` type: numbers when safe, bigints beyond. */
function createLongType(): avro.Type {
  // Built through avsc's extension point, then given varint readers and writers that do not
  // allocate for the common case.
  const base = avro.types.LongType.__with({
    fromBuffer: () => 0,
    toBuffer: () => Buffer.alloc(8),
    fromJSON: (v: unknown) => v,
    toJSON: (v: unknown) => v,
    isValid: isLong,
    compare: () => 0,
  }) as unknown as AnyType;
  const Ctor = Object.getPrototypeOf(base).constructor as new (noUnpack: boolean) => AnyType;
  const t = new Ctor(true);
  Object.assign(t, {
    _fromBuffer: () => 0,
    _toBuffer: () => Buffer.alloc(8),
    _fromJSON: (v: unknown) => (typeof v === 'string' ? BigInt(v) : v),
    _toJSON: (v: number | bigint) => (typeof v === 'bigint' ? v.toString() : v),
    _isValid: isLong,
    compare: (a: number | bigint, b: number | bigint) => (a < b ? -1 : a > b ? 1 : 0),
    _read(tap: Tap): number | bigint {
      const start = tap.pos;
      const n = tap.readLong();
      if (n > -FAST_LIMIT && n < FAST_LIMIT) return n;
      tap.pos = start;
      const big = readBigLong(tap);
      return big >= BigInt(Number.MIN_SAFE_INTEGER) && big <= BigInt(Number.MAX_SAFE_INTEGER)
        ? Number(big)
        : big;
    },
    _write(tap: Tap, v: unknown): void {
      if (typeof v === 'number' && v > -FAST_LIMIT && v < FAST_LIMIT && Number.isInteger(v)) {
        tap.writeLong(v);
      } else if (isLong(v)) {
        writeBigLong(tap, BigInt(v));
      } else {
        const shown = typeof v === 'bigint' ? `${v}n` : typeof v === 'number' ? String(v) : JSON.stringify(v);
        throw new Error(`invalid "long": ${shown ?? String(v)}`);
      }
    },
    _copy: (v: unknown) => v,
  });
  return Object.freeze(t);
}

function decimalParams(schema: Record<string, unknown>): { precision: number; scale: number } {
  return { precision: Number(schema.precision), scale: Number(schema.scale ?? 0) };
}

class TimestampMillis extends avro.types.LogicalType {
  override _fromValue(v: number | bigint): Date {
    return new Date(Number(v));
  }
  override _toValue(v: unknown): number | undefined {
    if (v instanceof Date) {
      const t = v.getTime();
      return Number.isNaN(t) ? undefined : t;
    }
    return typeof v === 'number' && Number.isSafeInteger(v) ? v : undefined;
  }
  override _resolve(type: avro.Type): ((v: number | bigint) => Date) | undefined {
    return isLongLike(type) ? (v) => this._fromValue(v) : undefined;
  }
}

class TimestampMicros extends avro.types.LogicalType {
  override _fromValue(v: number | bigint): bigint {
    return BigInt(v);
  }
  override _toValue(v: unknown): number | bigint | undefined {
    return isLong(v) ? v : undefined;
  }
  override _resolve(type: avro.Type): ((v: number | bigint) => bigint) | undefined {
    return isLongLike(type) ? (v) => BigInt(v) : undefined;
  }
}

const DAY_MS = 86_400_000;
const ISO_DATE = /^(\d{4})-(\d{2})-(\d{2})$/;

class DateType extends avro.types.LogicalType {
  override _fromValue(days: number): Date {
    return new Date(days * DAY_MS);
  }
  override _toValue(v: unknown): number | undefined {
    if (typeof v === 'string' && ISO_DATE.test(v)) v = new Date(`${v}T00:00:00Z`);
    if (!(v instanceof Date) || Number.isNaN(v.getTime())) return undefined;
    return Math.floor(v.getTime() / DAY_MS);
  }
  override _resolve(type: avro.Type): ((v: number) => Date) | undefined {
    return type.typeName === 'int' || type.typeName === 'logical:date'
      ? (v) => this._fromValue(v)
      : undefined;
  }
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

class UuidType extends avro.types.LogicalType {
  override _fromValue(v: string): string {
    return v;
  }
  override _toValue(v: unknown): string | undefined {
    return typeof v === 'string' && UUID.test(v) ? v : undefined;
  }
  override _resolve(type: avro.Type): ((v: string) => string) | undefined {
    return type.typeName === 'string' || type.typeName === 'logical:uuid' ? (v) => v : undefined;
  }
}

class DecimalType extends avro.types.LogicalType {
  readonly #precision: number;
  readonly #scale: number;
  readonly #size: number | undefined;
  constructor(schema: Record<string, unknown>, opts?: unknown) {
    super(schema as avro.Schema, opts);
    const { precision, scale } = decimalParams(schema);
    if (!Number.isInteger(precision) || precision < 1)
      throw new Error('decimal: precision must be a positive integer');
    if (!Number.isInteger(scale) || scale < 0 || scale > precision) {
      throw new Error('decimal: scale must be an integer between 0 and the precision');
    }
    this.#precision = precision;
    this.#scale = scale;
    const u = this.underlyingType as AnyType;
    this.#size = u.typeName === 'fixed' ? (u.size as number) : undefined;
  }
  override _fromValue(buf: Buffer): string {
    let n = 0n;
    for (const b of buf) n = (n << 8n) | BigInt(b);
    if (buf.length > 0 && buf[0]! & 0x80) n -= 1n << BigInt(buf.length * 8);
    const neg = n < 0n;
    const digits = (neg ? -n : n).toString().padStart(this.#scale + 1, '0');
    const int = digits.slice(0, digits.length - this.#scale);
    const frac = this.#scale > 0 ? `.${digits.slice(digits.length - this.#scale)}` : '';
    return `${neg ? '-' : ''}${int}${frac}`;
  }
  override _toValue(v: unknown): Buffer | undefined {
    let text: string;
    if (typeof v === 'bigint') text = v.toString();
    else if (typeof v === 'number' && Number.isFinite(v)) text = String(v);
    else if (typeof v === 'string') text = v.trim();
    else return undefined;
    const m = /^([+-]?)(\d+)(?:\.(\d+))?$/.exec(text);
    if (!m) return undefined;
    const frac = m[3] ?? '';
    if (frac.replace(/0+$/, '').length > this.#scale) return undefined;
    const unscaled = BigInt(`${m[2]}${frac.padEnd(this.#scale, '0')}`);
    if (unscaled.toString().length > this.#precision) return undefined;
    const n = m[1] === '-' ? -unscaled : unscaled;
    let bytes = 1;
    while (n < -(1n << BigInt(bytes * 8 - 1)) || n >= 1n << BigInt(bytes * 8 - 1)) bytes++;
    const size = this.#size ?? bytes;
    if (bytes > size) return undefined;
    const out = Buffer.alloc(size);
    let u = BigInt.asUintN(size * 8, n);
    for (let i = size - 1; i >= 0; i--) {
      out[i] = Number(u & 0xffn);
      u >>= 8n;
    }
    return out;
  }
  override _resolve(type: avro.Type): ((v: Buffer) => string) | undefined {
    const t = type as AnyType;
    if (t.typeName === 'logical:decimal' && t instanceof DecimalType) {
      return t.#scale === this.#scale ? (v) => this._fromValue(v) : undefined;
    }
    return t.typeName === 'bytes' || t.typeName === 'fixed' ? (v) => this._fromValue(v) : undefined;
  }
  override _export(schema: avro.Schema): void {
    Object.assign(schema, { precision: this.#precision, scale: this.#scale });
  }
}

function isLongLike(type: avro.Type): boolean {
  const name = type.typeName;
  return name === 'long' || name === 'abstract:long' || name === 'int' || name.startsWith('logical:');
}

const LOGICAL_TYPES = {
  'timestamp-millis': TimestampMillis,
  'local-timestamp-millis': TimestampMillis,
  'timestamp-micros': TimestampMicros,
  'local-timestamp-micros': TimestampMicros,
  date: DateType,
  uuid: UuidType,
  decimal: DecimalType,
} as unknown as Record<string, new (schema: avro.Schema, opts?: unknown) => avro.types.LogicalType>;

/**
 * Parses an Avro schema (JSON text or the parsed JSON) into an avsc type with Eventline's value
 * mapping. `registry` holds named types defined by referenced schemas; the schema's own named types
 * are added to it. Throws avsc's error for an invalid schema.
 */
export function parseAvro(schema: unknown, registry: Record<string, avro.Type> = {}): avro.Type {
  const json = typeof schema === 'string' ? parseSchemaText(schema) : schema;
  longType ??= createLongType();
  return avro.Type.forSchema(
    json as avro.Schema,
    {
      logicalTypes: LOGICAL_TYPES,
      registry: Object.assign(registry, { long: longType }),
      wrapUnions: 'auto',
      typeHook: longHook,
    } as unknown as Partial<avro.ForSchemaOptions>,
  );
}

// Schemas whose underlying long is being built right now (see longHook).
const building = new WeakSet<object>();

/**
 * avsc builds `{"type": "long", ...}` objects with its own long type, bypassing the registry; this
 * hook hands out Eventline's long instead, also underneath long-based logical types.
 */
function longHook(schema: unknown, opts: unknown): avro.Type | undefined {
  if (typeof schema !== 'object' || schema === null || (schema as { type?: unknown }).type !== 'long') {
    return undefined;
  }
  if (building.has(schema)) return longType;
  const logical = (schema as { logicalType?: unknown }).logicalType;
  const Derived = typeof logical === 'string' ? LOGICAL_TYPES[logical] : undefined;
  if (Derived === undefined) return longType;
  building.add(schema);
  try {
    return new Derived(schema as avro.Schema, opts);
  } catch {
    return longType; // an invalid logical type falls back to its underlying type (Avro spec)
  } finally {
    building.delete(schema);
  }
}

/** Parses schema text: JSON, or a bare primitive name such as `string`. */
export function parseSchemaText(text: string): unknown {
  const trimmed = text.trim();
  if (/^[A-Za-z_][A-Za-z0-9_.]*$/.test(trimmed)) return trimmed;
  return JSON.parse(trimmed);
}

export interface SchemaMismatch {
  /** Where in the value, as `.field[2].inner` (empty for the value itself). */
  path: string;
  /** The Avro type expected there, as `string`, `enum Priority (A|B)`, `record Task`. */
  expected: string;
  /** A short rendering of the value found. */
  actual: string;
}

/** Lists where a value does not match a type; empty when it does. */
export function findMismatches(type: avro.Type, value: unknown, limit = 5): SchemaMismatch[] {
  const out: SchemaMismatch[] = [];
  type.isValid(value, {
    errorHook: (path: string[], val: unknown, t: avro.Type) => {
      if (out.length >= limit) return;
      out.push({ path: renderPath(path), expected: describeType(t), actual: describeValue(val) });
    },
  });
  return out;
}

function renderPath(path: readonly string[]): string {
  return path.map((p) => (/^\d+$/.test(p) ? `[${p}]` : `.${p}`)).join('');
}

/** Names an avsc type for messages. */
export function describeType(t: avro.Type): string {
  const any = t as AnyType;
  const name = t.typeName;
  if (name === 'abstract:long') return 'long';
  if (name === 'enum') return `enum ${any.name as string} (${(any.symbols as string[]).join('|')})`;
  if (name === 'record' || name === 'error' || name === 'fixed') return `${name} ${any.name as string}`;
  if (name === 'array') return `array of ${describeType(any.itemsType as avro.Type)}`;
  if (name === 'map') return `map of ${describeType(any.valuesType as avro.Type)}`;
  if (name.startsWith('logical:')) {
    const under = describeType((t as avro.types.LogicalType).underlyingType);
    return `${name.slice(8)} (${under})`;
  }
  if (name.endsWith('union:unwrapped') || name.endsWith('union:wrapped') || name === 'union') {
    return (any.types as avro.Type[]).map(describeType).join(' | ');
  }
  return name;
}

function describeValue(v: unknown): string {
  if (v === undefined) return 'nothing (missing)';
  if (v === null) return 'null';
  if (typeof v === 'bigint') return `${v}n`;
  if (v instanceof Date) return `Date ${Number.isNaN(v.getTime()) ? 'Invalid' : v.toISOString()}`;
  if (Buffer.isBuffer(v)) return `Buffer(${v.length})`;
  if (Array.isArray(v)) return `array(${v.length})`;
  if (typeof v === 'object') return 'object';
  const text = JSON.stringify(v) ?? String(v);
  return `${typeof v} ${text.length > 40 ? `${text.slice(0, 40)}…` : text}`;
}

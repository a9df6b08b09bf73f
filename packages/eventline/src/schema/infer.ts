/**
 * TypeScript types of Avro values, computed from a schema written as an `as const` literal:
 *
 * ```ts
 * const TaskCreated = { type: 'record', name: 'TaskCreated', fields: [...] } as const;
 * type TaskCreated = InferAvro<typeof TaskCreated>;
 * ```
 *
 * The mapping is the one Eventline's Avro codec decodes with (see `codegen.ts`, which writes the
 * same types out as source for schemas that live in files):
 *
 * - `null` → `null`, `boolean` → `boolean`, `int` / `float` / `double` → `number`,
 *   `long` → `number | bigint` (a bigint only beyond ±2^53), `string` → `string`,
 *   `bytes` / `fixed` → `Buffer`.
 * - Logical types: `timestamp-millis` / `local-timestamp-millis` (long) and `date` (int) → `Date`;
 *   `timestamp-micros` / `local-timestamp-micros` (long) → `bigint`; `uuid` (string) and `decimal`
 *   (bytes or fixed) → `string`; `time-millis` (int) → `number`; `time-micros` (long) →
 *   `number | bigint`. A logical type on another underlying type, an unknown one, or a `decimal`
 *   whose precision and scale are invalid, is its underlying type. Publishing also accepts epoch
 *   milliseconds for `timestamp-millis` / `local-timestamp-millis`, a `YYYY-MM-DD` string for
 *   `date`, and a number or a bigint for `decimal`.
 * - `record` → an object type (fields with a default are still present), `enum` → the union of
 *   its symbols, `array` → `T[]`, `map` → `Record<string, T>`.
 * - A union is the union of its branches' values when avsc (with `wrapUnions: 'auto'`) can tell
 *   them apart by their JavaScript value. It is wrapped, `null | { 'ns.A': A } | { 'ns.B': B }`, when
 *   it is ambiguous: when two of its branches fall in the same bucket among numbers (`int`,
 *   `float`, `double`), buffers (`bytes`, `fixed`), strings (`string`, `enum`) and objects (`map`,
 *   `record`). A wrapped branch's key is its full name for a named type, `array`, `map`, or the
 *   type name of a primitive; a logical type's key is that of its underlying type; `null` stays
 *   plain. `long` (a custom type in this codec) and the logical types the codec implements
 *   (`timestamp-*`, `local-timestamp-*`, `date`, `uuid`, valid `decimal`) are matched by value
 *   instead, so they never make a union ambiguous: `["null", "int", "long"]` stays plain.
 * - A named type referenced by name resolves against the records, enums and fixeds defined
 *   anywhere in the same literal: by full name, by the name qualified with the enclosing
 *   namespace, or by its short name when only one type has it. Recursive records give recursive
 *   types.
 *
 * Whatever cannot be resolved (an unknown or ambiguous name, a schema that was not written
 * `as const` and so lost its literal types) is `unknown`, never `any`.
 */

/** Which side of the codec a type describes. */
type Side = 'decoded' | 'input';

type Primitives = {
  null: null;
  boolean: boolean;
  int: number;
  long: number | bigint;
  float: number;
  double: number;
  string: string;
  bytes: Buffer;
};

/** A named type found in the schema literal. */
interface NamedEntry {
  /** `namespace.name`, or just the name in the null namespace. */
  full: string;
  short: string;
  /** The namespace the type's own nested definitions and references inherit. */
  ns: string;
  schema: unknown;
}

type IsAny<T> = 0 extends 1 & T ? true : false;
type IsUnion<T> = [T] extends [UnionToIntersection<T>] ? false : true;
type UnionToIntersection<U> = (U extends unknown ? (x: U) => void : never) extends (x: infer I) => void
  ? I
  : never;
type Simplify<T> = { [K in keyof T]: T[K] };

type LastSegment<N extends string> = N extends `${string}.${infer Rest}` ? LastSegment<Rest> : N;
type BeforeLastDot<N extends string, Acc extends string = ''> = N extends `${infer Head}.${infer Rest}`
  ? BeforeLastDot<Rest, Acc extends '' ? Head : `${Acc}.${Head}`>
  : Acc;
type Qualify<Name extends string, NS extends string> = Name extends `${string}.${string}`
  ? Name
  : NS extends ''
    ? Name
    : `${NS}.${Name}`;

/** The namespace of a named schema: from a dotted name, its own `namespace`, or the enclosing one. */
type OwnNamespace<S, NS extends string> = S extends { name: infer N extends string }
  ? N extends `${string}.${string}`
    ? BeforeLastDot<N>
    : S extends { namespace: infer X extends string }
      ? X
      : NS
  : NS;

/** Every named type defined in `S`, as a union of NamedEntry. */
type Collect<S, NS extends string> =
  IsAny<S> extends true
    ? never
    : S extends readonly unknown[]
      ? Collect<S[number], NS>
      : S extends { type: 'record' | 'error'; name: infer N extends string; fields: readonly unknown[] }
        ? Entry<S, N, NS> | CollectFields<S['fields'][number], OwnNamespace<S, NS>>
        : S extends { type: 'enum' | 'fixed'; name: infer N extends string }
          ? Entry<S, N, NS>
          : S extends { type: 'array'; items: infer I }
            ? Collect<I, NS>
            : S extends { type: 'map'; values: infer V }
              ? Collect<V, NS>
              : S extends { type: infer T extends object }
                ? Collect<T, NS>
                : never;
type CollectFields<F, NS extends string> = F extends { type: infer T } ? Collect<T, NS> : never;
type Entry<S, N extends string, NS extends string> = {
  full: Qualify<N, OwnNamespace<S, NS>>;
  short: LastSegment<N>;
  ns: OwnNamespace<S, NS>;
  schema: S;
};

/** Full name in the enclosing namespace first, then the name as a full name, then a short name. */
type Lookup<N extends string, Ctx, NS extends string> =
  Extract<Ctx, { full: Qualify<N, NS> }> extends infer E1
    ? [E1] extends [never]
      ? Extract<Ctx, { full: N }> extends infer E2
        ? [E2] extends [never]
          ? Extract<Ctx, { short: N }>
          : E2
        : never
      : E1
    : never;

/** The one entry a reference names, or Unresolved. */
type Resolve<N extends string, Ctx, NS extends string> =
  Lookup<N, Ctx, NS> extends infer E
    ? [E] extends [never]
      ? Unresolved
      : IsUnion<E> extends true
        ? Unresolved
        : E extends NamedEntry
          ? E
          : Unresolved
    : never;

type Ref<N extends string, Ctx, NS extends string, M extends Side> =
  Lookup<N, Ctx, NS> extends infer E
    ? [E] extends [never]
      ? unknown
      : IsUnion<E> extends true
        ? unknown
        : E extends NamedEntry
          ? Value<E['schema'], Ctx, E['ns'], M>
          : unknown
    : never;

/** Marks a logical type the mapping does not cover, so the underlying type applies. */
interface NotLogical {
  readonly notLogical: true;
}

type Logical<S, L, T, M extends Side> = [L, T] extends ['timestamp-millis' | 'local-timestamp-millis', 'long']
  ? M extends 'input'
    ? Date | number
    : Date
  : [L, T] extends ['timestamp-micros' | 'local-timestamp-micros', 'long']
    ? bigint
    : [L, T] extends ['date', 'int']
      ? M extends 'input'
        ? Date | string
        : Date
      : [L, T] extends ['uuid', 'string']
        ? string
        : [L, T] extends ['decimal', 'bytes' | 'fixed']
          ? ValidDecimal<S> extends true
            ? M extends 'input'
              ? string | number | bigint
              : string
            : NotLogical
          : [L, T] extends ['time-millis', 'int']
            ? number
            : [L, T] extends ['time-micros', 'long']
              ? number | bigint
              : NotLogical;

/** The logical types Eventline's codec implements (avsc builds the others as their underlying type). */
type CodecLogical =
  | 'timestamp-millis'
  | 'local-timestamp-millis'
  | 'timestamp-micros'
  | 'local-timestamp-micros'
  | 'date'
  | 'uuid'
  | 'decimal';

type Digit = '0' | '1' | '2' | '3' | '4' | '5' | '6' | '7' | '8' | '9';
/** `Number(v)` of a schema attribute as decimal digits; `string` when the literal is lost. */
type NumberText<V> = V extends number
  ? number extends V
    ? string
    : `${V}`
  : V extends string
    ? string extends V
      ? string
      : V
    : V extends null | false
      ? '0'
      : V extends true
        ? '1'
        : 'NaN';
type IsDigits<T extends string> = T extends `${Digit}${infer R}`
  ? R extends ''
    ? true
    : IsDigits<R>
  : false;
type TrimZeros<T extends string> = T extends `0${infer R extends `${Digit}${string}`}` ? TrimZeros<R> : T;
type LengthOrder<A extends string, B extends string> = A extends `${Digit}${infer RA}`
  ? B extends `${Digit}${infer RB}`
    ? LengthOrder<RA, RB>
    : 'longer'
  : B extends ''
    ? 'same'
    : 'shorter';
type DigitBefore<
  A extends string,
  B extends string,
> = '0123456789' extends `${string}${A}${string}${B}${string}` ? true : false;
type DigitsAtMost<A extends string, B extends string> = A extends `${infer DA extends Digit}${infer RA}`
  ? B extends `${infer DB extends Digit}${infer RB}`
    ? DA extends DB
      ? DigitsAtMost<RA, RB>
      : DigitBefore<DA, DB>
    : false
  : true;
/** A ≤ B for two non-negative integers written in digits. */
type AtMost<A extends string, B extends string> =
  LengthOrder<TrimZeros<A>, TrimZeros<B>> extends infer O
    ? O extends 'shorter'
      ? true
      : O extends 'longer'
        ? false
        : DigitsAtMost<TrimZeros<A>, TrimZeros<B>>
    : never;
/**
 * Whether the codec accepts a `decimal`: an integer precision of at least 1 and an integer scale
 * (default 0) between 0 and the precision. Otherwise avsc falls back to the underlying type.
 * Precision and scale that are not literals are taken to be valid.
 */
type ValidDecimal<S> = [
  NumberText<S extends { precision: infer P } ? P : undefined>,
  NumberText<S extends { scale: infer Sc } ? Sc : null>,
] extends [infer P extends string, infer Sc extends string]
  ? string extends P | Sc
    ? true
    : [IsDigits<P>, IsDigits<Sc>] extends [true, true]
      ? TrimZeros<P> extends '0'
        ? false
        : AtMost<Sc, P>
      : false
  : never;

type FieldName<F> = F extends { name: infer N extends string } ? N : never;
type FieldValue<F, Ctx, NS extends string, M extends Side> = F extends { type: infer T }
  ? Value<T, Ctx, NS, M>
  : unknown;

type RecordValue<F, Ctx, NS extends string, M extends Side> = M extends 'input'
  ? Simplify<
      { [K in F as K extends { default: unknown } ? never : FieldName<K>]: FieldValue<K, Ctx, NS, M> } & {
        [K in F as K extends { default: unknown } ? FieldName<K> : never]?: FieldValue<K, Ctx, NS, M>;
      }
    >
  : { [K in F as FieldName<K>]: FieldValue<K, Ctx, NS, M> };

/** Everything but logical types. */
type Structural<S, Ctx, NS extends string, M extends Side> = S extends {
  type: 'record' | 'error';
  fields: readonly unknown[];
}
  ? RecordValue<S['fields'][number], Ctx, OwnNamespace<S, NS>, M>
  : S extends { type: 'enum'; symbols: readonly (infer Sym extends string)[] }
    ? Sym
    : S extends { type: 'fixed' }
      ? Buffer
      : S extends { type: 'array'; items: infer I }
        ? Value<I, Ctx, NS, M>[]
        : S extends { type: 'map'; values: infer V }
          ? Record<string, Value<V, Ctx, NS, M>>
          : S extends { type: infer T }
            ? Value<T, Ctx, NS, M>
            : unknown;

type Value<S, Ctx, NS extends string, M extends Side> =
  IsAny<S> extends true
    ? unknown
    : S extends string
      ? string extends S
        ? unknown
        : S extends keyof Primitives
          ? Primitives[S]
          : Ref<S, Ctx, NS, M>
      : S extends readonly unknown[]
        ? UnionValue<S, Ctx, NS, M>
        : S extends { type: infer T; logicalType: infer L }
          ? Logical<S, L, T, M> extends infer R
            ? [R] extends [NotLogical]
              ? Structural<S, Ctx, NS, M>
              : R
            : never
          : Structural<S, Ctx, NS, M>;

/** Marks what cannot be resolved: an unknown or ambiguous name, a lost literal. */
interface Unresolved {
  readonly unresolved: true;
}

/**
 * avsc's bucket for a union branch (`getTypeBucket`): two branches in the same bucket make the
 * union ambiguous. `dynamic` for branches avsc matches by value (`long`, the codec's logical
 * types), which it leaves out of the check.
 */
type Bucket<B, Ctx, NS extends string> =
  IsAny<B> extends true
    ? Unresolved
    : B extends string
      ? string extends B
        ? Unresolved
        : B extends 'long'
          ? 'dynamic'
          : B extends 'int' | 'float' | 'double'
            ? 'number'
            : B extends 'bytes'
              ? 'buffer'
              : B extends keyof Primitives
                ? B
                : Resolve<B, Ctx, NS> extends infer E
                  ? E extends NamedEntry
                    ? Bucket<E['schema'], Ctx, E['ns']>
                    : Unresolved
                  : never
      : B extends readonly unknown[]
        ? Unresolved
        : B extends { logicalType: infer L extends CodecLogical }
          ? L extends 'decimal'
            ? ValidDecimal<B> extends true
              ? 'dynamic'
              : StructuralBucket<B, Ctx, NS>
            : 'dynamic'
          : StructuralBucket<B, Ctx, NS>;
type StructuralBucket<B, Ctx, NS extends string> = B extends { type: 'record' | 'error' | 'map' }
  ? 'object'
  : B extends { type: 'enum' }
    ? 'string'
    : B extends { type: 'fixed' }
      ? 'buffer'
      : B extends { type: 'array' }
        ? 'array'
        : B extends { type: infer T }
          ? Bucket<T, Ctx, NS>
          : Unresolved;

/** avsc's `branchName`: the key of a branch in a wrapped union. */
type BranchName<B, Ctx, NS extends string> = B extends string
  ? B extends keyof Primitives
    ? B
    : Resolve<B, Ctx, NS> extends infer E
      ? E extends NamedEntry
        ? E['full']
        : never
      : never
  : B extends { type: 'record' | 'error' | 'enum' | 'fixed'; name: infer N extends string }
    ? Qualify<N, OwnNamespace<B, NS>>
    : B extends { type: 'array' | 'map' }
      ? B['type']
      : B extends { type: infer T }
        ? BranchName<T, Ctx, NS>
        : never;

/** `wrapped` when two branches share a bucket, `unresolved` when a bucket cannot be told. */
type Ambiguity<Bs extends readonly unknown[], Seen = never> = Bs extends readonly [infer H, ...infer R]
  ? [H] extends ['dynamic']
    ? Ambiguity<R, Seen>
    : [H] extends [Seen]
      ? 'wrapped'
      : Ambiguity<R, Seen | H>
  : 'plain';

type UnionValue<S extends readonly unknown[], Ctx, NS extends string, M extends Side> = {
  [I in keyof S]: Bucket<S[I], Ctx, NS>;
} extends infer Bs extends readonly unknown[]
  ? [Extract<Bs[number], Unresolved>] extends [never]
    ? Ambiguity<Bs> extends 'wrapped'
      ? WrappedBranch<S[number], Ctx, NS, M>
      : Value<S[number], Ctx, NS, M>
    : unknown
  : never;

/** A branch of a wrapped union: `{ "<branch name>": value }`, or plain `null`. */
type WrappedBranch<B, Ctx, NS extends string, M extends Side> = B extends unknown
  ? BranchName<B, Ctx, NS> extends infer K extends string
    ? K extends 'null'
      ? null
      : { [P in K]: Value<B, Ctx, NS, M> }
    : never
  : never;

/**
 * The type of the values Eventline's Avro codec decodes for schema `S` (an `as const` literal).
 * Every field is present, defaulted or not.
 */
export type InferAvro<S> = Value<S, Collect<S, ''>, '', 'decoded'>;

/**
 * The type of the values accepted when publishing with schema `S`: as {@link InferAvro}, except
 * that fields with a `default` may be left out, `timestamp-millis` / `local-timestamp-millis`
 * also accept epoch milliseconds, `date` a `YYYY-MM-DD` string and `decimal` a number or a bigint.
 */
export type InferAvroInput<S> = Value<S, Collect<S, ''>, '', 'input'>;

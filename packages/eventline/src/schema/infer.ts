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
 *   `number | bigint`. A logical type on another underlying type, or an unknown one, is its
 *   underlying type.
 * - `record` → an object type (fields with a default are still present), `enum` → the union of
 *   its symbols, `array` → `T[]`, `map` → `Record<string, T>`, union → the union of its branches
 *   (plain values, not wrapped).
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

type Logical<L, T, M extends Side> = [L, T] extends ['timestamp-millis' | 'local-timestamp-millis', 'long']
  ? M extends 'input'
    ? Date | number
    : Date
  : [L, T] extends ['timestamp-micros' | 'local-timestamp-micros', 'long']
    ? bigint
    : [L, T] extends ['date', 'int']
      ? Date
      : [L, T] extends ['uuid', 'string']
        ? string
        : [L, T] extends ['decimal', 'bytes' | 'fixed']
          ? string
          : [L, T] extends ['time-millis', 'int']
            ? number
            : [L, T] extends ['time-micros', 'long']
              ? number | bigint
              : NotLogical;

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
        ? Value<S[number], Ctx, NS, M>
        : S extends { type: infer T; logicalType: infer L }
          ? Logical<L, T, M> extends infer R
            ? [R] extends [NotLogical]
              ? Structural<S, Ctx, NS, M>
              : R
            : never
          : Structural<S, Ctx, NS, M>;

/**
 * The type of the values Eventline's Avro codec decodes for schema `S` (an `as const` literal).
 * Every field is present, defaulted or not.
 */
export type InferAvro<S> = Value<S, Collect<S, ''>, '', 'decoded'>;

/**
 * The type of the values accepted when publishing with schema `S`: as {@link InferAvro}, except
 * that fields with a `default` may be left out and `timestamp-millis` / `local-timestamp-millis`
 * also accept epoch milliseconds.
 */
export type InferAvroInput<S> = Value<S, Collect<S, ''>, '', 'input'>;

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseAvro } from '../../src/schema/avro-types.ts';
import type { InferAvro, InferAvroInput } from '../../src/schema/infer.ts';
import { type TASK_COMPLETED, type TASK_CREATED, UNIONS } from './fixtures.ts';

// This file is mostly checked by `tsc --noEmit -p .`: an `Expect<Equal<...>>` that does not hold and
// a `@ts-expect-error` line that compiles are both compile errors.

/** True only when A and B are the same type (not merely assignable, and `any` equals nothing else). */
type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
type Expect<T extends true> = T;

type TaskCreated = InferAvro<typeof TASK_CREATED>;
type TaskCreatedInput = InferAvroInput<typeof TASK_CREATED>;
type TaskCompleted = InferAvro<typeof TASK_COMPLETED>;

type Priority = 'CRITICAL' | 'HIGH' | 'MEDIUM' | 'LOW';

export type SeedChecks = [
  Expect<
    Equal<
      TaskCreated,
      {
        eventId: string;
        eventTimestamp: number | bigint;
        userId: string;
        taskId: string;
        title: string;
        description: null | string;
        priority: Priority;
        dueDate: null | number | bigint;
        categoryId: null | string;
        tags: string[];
      }
    >
  >,
  Expect<
    Equal<
      TaskCreatedInput,
      {
        eventId: string;
        eventTimestamp: number | bigint;
        userId: string;
        taskId: string;
        title: string;
        description?: null | string;
        priority?: Priority;
        dueDate?: null | number | bigint;
        categoryId?: null | string;
        tags?: string[];
      }
    >
  >,
  Expect<
    Equal<
      TaskCompleted,
      {
        eventId: string;
        eventTimestamp: number | bigint;
        userId: string;
        taskId: string;
        completedAt: number | bigint;
        timeToComplete: null | number | bigint;
      }
    >
  >,
];

/** Every primitive and logical type, nested and recursive records, references by full and short name. */
const Everything = {
  type: 'record',
  name: 'Everything',
  namespace: 'com.example',
  fields: [
    { name: 'nothing', type: 'null' },
    { name: 'flag', type: 'boolean' },
    { name: 'count', type: 'int' },
    { name: 'big', type: 'long' },
    { name: 'ratio', type: 'float' },
    { name: 'score', type: 'double' },
    { name: 'text', type: 'string' },
    { name: 'blob', type: 'bytes' },
    { name: 'boxed', type: { type: 'string' } },
    { name: 'hash', type: { type: 'fixed', name: 'Md5', size: 16 } },
    { name: 'createdAt', type: { type: 'long', logicalType: 'timestamp-millis' } },
    { name: 'seenAt', type: { type: 'long', logicalType: 'local-timestamp-millis' } },
    { name: 'preciseAt', type: { type: 'long', logicalType: 'timestamp-micros' } },
    { name: 'localPreciseAt', type: { type: 'long', logicalType: 'local-timestamp-micros' } },
    { name: 'birthday', type: { type: 'int', logicalType: 'date' } },
    { name: 'id', type: { type: 'string', logicalType: 'uuid' } },
    { name: 'price', type: { type: 'bytes', logicalType: 'decimal', precision: 10, scale: 2 } },
    {
      name: 'amount',
      type: { type: 'fixed', name: 'Amount', size: 8, logicalType: 'decimal', precision: 18, scale: 4 },
    },
    { name: 'opensAt', type: { type: 'int', logicalType: 'time-millis' } },
    { name: 'closesAt', type: { type: 'long', logicalType: 'time-micros' } },
    { name: 'madeUp', type: { type: 'string', logicalType: 'made-up' } },
    { name: 'misplaced', type: { type: 'string', logicalType: 'date' } },
    {
      name: 'address',
      type: {
        type: 'record',
        name: 'Address',
        fields: [
          { name: 'street', type: 'string' },
          { name: 'zip', type: ['null', 'string'], default: null },
        ],
      },
    },
    {
      name: 'status',
      type: {
        type: 'enum',
        name: 'Status',
        namespace: 'com.example.shared',
        symbols: ['ACTIVE', 'SUSPENDED'],
      },
      default: 'ACTIVE',
    },
    { name: 'labels', type: { type: 'map', values: ['null', 'long'] }, default: {} },
    { name: 'history', type: { type: 'array', items: 'com.example.shared.Status' } },
    { name: 'previous', type: 'Status' },
    { name: 'billing', type: ['null', 'Address'], default: null },
    { name: 'choice', type: ['null', 'int', 'string', 'Md5'] },
    { name: 'matrix', type: { type: 'array', items: { type: 'array', items: 'double' } } },
    {
      name: 'tree',
      type: {
        type: 'record',
        name: 'TreeNode',
        fields: [
          { name: 'label', type: 'string' },
          { name: 'children', type: { type: 'array', items: 'TreeNode' }, default: [] },
        ],
      },
    },
  ],
} as const;

interface TreeNode {
  label: string;
  children: TreeNode[];
}
interface TreeNodeInput {
  label: string;
  children?: TreeNodeInput[];
}

interface ExpectedEverything {
  nothing: null;
  flag: boolean;
  count: number;
  big: number | bigint;
  ratio: number;
  score: number;
  text: string;
  blob: Buffer;
  boxed: string;
  hash: Buffer;
  createdAt: Date;
  seenAt: Date;
  preciseAt: bigint;
  localPreciseAt: bigint;
  birthday: Date;
  id: string;
  price: string;
  amount: string;
  opensAt: number;
  closesAt: number | bigint;
  madeUp: string;
  misplaced: string;
  address: { street: string; zip: null | string };
  status: 'ACTIVE' | 'SUSPENDED';
  labels: Record<string, null | number | bigint>;
  history: ('ACTIVE' | 'SUSPENDED')[];
  previous: 'ACTIVE' | 'SUSPENDED';
  billing: null | { street: string; zip: null | string };
  choice: null | number | string | Buffer;
  matrix: number[][];
  tree: TreeNode;
}

type Everything = InferAvro<typeof Everything>;
type EverythingInput = InferAvroInput<typeof Everything>;

export type EverythingChecks = [
  Expect<Equal<Everything, ExpectedEverything>>,
  Expect<Equal<Everything['tree']['children'][number]['children'][number], TreeNode>>,
  Expect<Equal<EverythingInput['createdAt'], Date | number>>,
  Expect<Equal<EverythingInput['seenAt'], Date | number>>,
  Expect<Equal<EverythingInput['preciseAt'], bigint>>,
  Expect<Equal<EverythingInput['address'], { street: string; zip?: null | string }>>,
  Expect<Equal<EverythingInput['tree'], TreeNodeInput>>,
  Expect<
    Equal<
      Pick<EverythingInput, 'status' | 'labels' | 'billing'>,
      {
        status?: 'ACTIVE' | 'SUSPENDED';
        labels?: Record<string, null | number | bigint>;
        billing?: null | { street: string; zip?: null | string };
      }
    >
  >,
];

// Resolution that cannot succeed gives `unknown`, never `any`.
const Unresolvable = {
  type: 'record',
  name: 'Unresolvable',
  fields: [
    { name: 'missing', type: 'com.example.Nowhere' },
    { name: 'a', type: { type: 'enum', name: 'Dup', namespace: 'one', symbols: ['A'] } },
    { name: 'b', type: { type: 'enum', name: 'Dup', namespace: 'two', symbols: ['B'] } },
    { name: 'ambiguous', type: 'Dup' },
    { name: 'byFullName', type: 'two.Dup' },
  ],
} as const;
type Unresolvable = InferAvro<typeof Unresolvable>;
// A schema that was not written `as const` has lost the literal types the inference needs.
const widened = { type: 'record', name: 'Widened', fields: [{ name: 'x', type: 'string' }] };

export type FallbackChecks = [
  Expect<Equal<Unresolvable['missing'], unknown>>,
  Expect<Equal<Unresolvable['ambiguous'], unknown>>,
  Expect<Equal<Unresolvable['byFullName'], 'B'>>,
  Expect<Equal<InferAvro<typeof widened>, unknown>>,
  // biome-ignore lint/suspicious/noExplicitAny: proves `any` in gives `unknown` out
  Expect<Equal<InferAvro<any>, unknown>>,
  Expect<Equal<InferAvro<'string'>, string>>,
  Expect<Equal<InferAvro<readonly ['null', 'long']>, null | number | bigint>>,
];

const created: TaskCreated = {
  eventId: 'e-1',
  eventTimestamp: 1_700_000_000_000,
  userId: 'u-1',
  taskId: 't-1',
  title: 'Write tests',
  description: null,
  priority: 'MEDIUM',
  dueDate: 2n ** 60n,
  categoryId: null,
  tags: ['a'],
};

test('decoded values must carry every field, defaulted ones too', () => {
  // @ts-expect-error description has a default, but decoded values always carry it
  const missingDefaulted: TaskCreated = { ...created, description: undefined };
  // @ts-expect-error priority is one of the enum symbols
  const badSymbol: TaskCreated = { ...created, priority: 'URGENT' };
  // @ts-expect-error a long is a number or a bigint, not a string
  const badLong: TaskCreated = { ...created, eventTimestamp: '1700000000000' };
  // @ts-expect-error tags is an array of strings
  const badArray: TaskCreated = { ...created, tags: [1] };
  // @ts-expect-error a nullable union does not take undefined
  const badUnion: TaskCompleted = { ...created, completedAt: 1, timeToComplete: undefined };
  assert.equal([missingDefaulted, badSymbol, badLong, badArray, badUnion].length, 5);
});

test('publish input may leave defaulted fields out, but not the others', () => {
  const minimal: TaskCreatedInput = {
    eventId: 'e',
    eventTimestamp: 1n,
    userId: 'u',
    taskId: 't',
    title: 'x',
  };
  // @ts-expect-error title has no default
  const missingTitle: TaskCreatedInput = { eventId: 'e', eventTimestamp: 1, userId: 'u', taskId: 't' };
  // @ts-expect-error optional fields still take only their schema's values
  const badSymbol: TaskCreatedInput = { ...minimal, priority: 'URGENT' };
  // @ts-expect-error exactOptionalPropertyTypes: leave a defaulted field out rather than undefined
  const explicitUndefined: TaskCreatedInput = { ...minimal, tags: undefined };
  assert.equal([minimal, missingTitle, badSymbol, explicitUndefined].length, 4);
});

test('timestamp-millis decodes to Date and accepts epoch milliseconds on publish', () => {
  const at: EverythingInput['createdAt'] = Date.now();
  // @ts-expect-error decoded timestamps are Dates
  const decoded: Everything['createdAt'] = Date.now();
  // @ts-expect-error timestamp-micros stays a bigint: a Date would lose the microseconds
  const micros: Everything['preciseAt'] = new Date();
  // @ts-expect-error a recursive record checks its nested levels too
  const tree: Everything['tree'] = { label: 'root', children: [{ label: 'leaf', children: [{ label: 1 }] }] };
  assert.equal([at, decoded, micros, tree].length, 4);
});

test('the seed values type-check as written', () => {
  const value: TaskCreated = created;
  assert.equal(value.priority, 'MEDIUM');
});

type A = { x: number };
type Unions = InferAvro<typeof UNIONS>;
type UnionsInput = InferAvroInput<typeof UNIONS>;

export type UnionChecks = [
  Expect<Equal<Unions['either'], null | { 'ns.A': A } | { 'other.B': { y: string } }>>,
  Expect<Equal<UnionsInput['either'], null | { 'ns.A': A } | { 'other.B': { y?: string } }>>,
  Expect<Equal<Unions['amount'], null | { int: number } | { double: number }>>,
  Expect<Equal<Unions['big'], null | string | number | bigint>>,
  Expect<Equal<Unions['intOrLong'], null | number | bigint>>,
  Expect<Equal<Unions['symbol'], { string: string } | { 'ns.E': 'X' | 'Y' }>>,
  Expect<Equal<Unions['mapOrRecord'], { map: Record<string, number> } | { 'ns.A': A }>>,
  Expect<Equal<Unions['bytesOrFixed'], { bytes: Buffer } | { 'ns.F': Buffer }>>,
  Expect<Equal<Unions['decimalOrFixed'], string | Buffer>>,
  Expect<Equal<UnionsInput['decimalOrFixed'], string | number | bigint | Buffer>>,
  Expect<Equal<Unions['badDecimal'], { bytes: Buffer } | { 'ns.F': Buffer }>>,
  Expect<Equal<Unions['timed'], null | { long: Date } | { int: number } | { float: number }>>,
  Expect<Equal<UnionsInput['timed'], null | { long: Date | number } | { int: number } | { float: number }>>,
  Expect<Equal<Unions['day'], Date | number>>,
  Expect<Equal<UnionsInput['day'], Date | string | number>>,
  Expect<Equal<Unions['clock'], { int: number } | { double: number }>>,
  Expect<Equal<Unions['list'], null | ({ int: number } | { float: number })[] | boolean>>,
  Expect<Equal<Unions['byFullName'], null | { 'other.B': { y: string } } | { 'ns.A': A }>>,
  Expect<Equal<Unions['nested'], Record<string, null | { 'ns.A': A } | { 'other.B': { y: string } }>>>,
  Expect<Equal<UnionsInput['nested'], Record<string, null | { 'ns.A': A } | { 'other.B': { y?: string } }>>>,
  // Top-level unions, in the null namespace, and the publish-input widenings.
  Expect<
    Equal<
      InferAvro<
        readonly [
          'null',
          { type: 'record'; name: 'P'; fields: readonly [{ name: 'on'; type: 'boolean' }] },
          { type: 'map'; values: 'long' },
        ]
      >,
      null | { P: { on: boolean } } | { map: Record<string, number | bigint> }
    >
  >,
  Expect<Equal<InferAvroInput<{ type: 'int'; logicalType: 'date' }>, Date | string>>,
  Expect<Equal<InferAvro<{ type: 'int'; logicalType: 'date' }>, Date>>,
  Expect<
    Equal<
      InferAvroInput<{ type: 'bytes'; logicalType: 'decimal'; precision: 12; scale: 3 }>,
      string | number | bigint
    >
  >,
  Expect<Equal<InferAvro<{ type: 'bytes'; logicalType: 'decimal'; precision: 12; scale: 3 }>, string>>,
  // A decimal the codec refuses is its underlying type.
  Expect<Equal<InferAvro<{ type: 'bytes'; logicalType: 'decimal'; precision: 0 }>, Buffer>>,
  Expect<Equal<InferAvro<{ type: 'bytes'; logicalType: 'decimal'; precision: 9; scale: 10 }>, Buffer>>,
  Expect<Equal<InferAvro<{ type: 'bytes'; logicalType: 'decimal'; precision: 100; scale: 99 }>, string>>,
  Expect<Equal<InferAvro<{ type: 'bytes'; logicalType: 'decimal'; precision: 1.5 }>, Buffer>>,
  Expect<Equal<InferAvro<{ type: 'bytes'; logicalType: 'decimal' }>, Buffer>>,
  // A branch that cannot be resolved leaves the whole union unknown.
  Expect<Equal<InferAvro<readonly ['null', 'Nowhere', 'int']>, unknown>>,
];

/** Copies a decoded value into plain objects (avsc wraps union branches in classes of its own). */
function plain(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(plain);
  if (value === null || typeof value !== 'object' || value instanceof Date || Buffer.isBuffer(value))
    return value;
  return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, plain(v)]));
}

test('values of the inferred shapes round-trip through the codec, wrapped exactly where avsc wraps', () => {
  const type = parseAvro(UNIONS);
  const fields = (type as unknown as { fields: { name: string; type: { typeName: string } }[] }).fields;
  const wrapped = fields.filter((f) => f.type.typeName === 'union:wrapped').map((f) => f.name);
  assert.deepEqual(wrapped, [
    'either',
    'amount',
    'symbol',
    'mapOrRecord',
    'bytesOrFixed',
    'badDecimal',
    'timed',
    'clock',
    'byFullName',
  ]);

  // [written, read back]: the fields that come back as written are given once, in `same`.
  const same1 = {
    either: { 'ns.A': { x: 1 } },
    amount: { double: 1.5 },
    big: 2n ** 60n,
    intOrLong: null,
    symbol: { 'ns.E': 'Y' },
    mapOrRecord: { map: { a: 1 } },
    badDecimal: { bytes: Buffer.from('z') },
    clock: { int: 1000 },
    list: [{ int: 1 }, { float: 0.5 }],
    nested: { a: { 'ns.A': { x: 1 } }, b: null },
  } satisfies Partial<Unions>;
  // Every field given and none changed: a decoded value is also a publish input.
  const unchanged: Unions = {
    either: { 'other.B': { y: 'b' } },
    amount: { int: 7 },
    big: 'text',
    intOrLong: 2n ** 62n,
    symbol: { string: 'free' },
    mapOrRecord: { 'ns.A': { x: 2 } },
    bytesOrFixed: { 'ns.F': Buffer.from('cd') },
    decimalOrFixed: Buffer.from('ef'),
    badDecimal: { 'ns.F': Buffer.from('gh') },
    timed: { int: -1 },
    day: 2.5,
    clock: { double: 0.25 },
    list: true,
    byFullName: { 'ns.A': { x: 3 } },
    nested: { c: { 'other.B': { y: 'c' } } },
  };
  const same3 = {
    either: null,
    amount: null,
    big: 42,
    intOrLong: null,
    symbol: { 'ns.E': 'X' },
    mapOrRecord: { map: {} },
    decimalOrFixed: '-0.01',
    badDecimal: { bytes: Buffer.alloc(0) },
    timed: { float: 0.5 },
    day: new Date('2000-01-01T00:00:00Z'),
    clock: { int: 0 },
    list: null,
    byFullName: null,
    nested: {},
  } satisfies Partial<Unions>;
  const cases: [UnionsInput, Unions][] = [
    [
      {
        ...same1,
        decimalOrFixed: 12.5,
        timed: { long: 1_700_000_000_000 },
        day: '2024-02-29',
        byFullName: { 'other.B': {} },
      },
      {
        ...same1,
        bytesOrFixed: { bytes: Buffer.from('ab') },
        decimalOrFixed: '12.50',
        timed: { long: new Date(1_700_000_000_000) },
        day: new Date('2024-02-29T00:00:00Z'),
        byFullName: { 'other.B': { y: '' } },
      },
    ],
    [unchanged, unchanged],
    [same3, { ...same3, bytesOrFixed: { bytes: Buffer.from('ab') } }],
  ];
  cases.forEach(([input, expected], i) => {
    // As the codec writes: fields left out are written with their default.
    const decoded = type.fromBuffer(type.toBuffer(input));
    assert.deepEqual(plain(decoded), plain(expected), `value ${i}`);
  });
});

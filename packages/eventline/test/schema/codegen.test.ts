import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { isEventlineError } from '../../src/errors.ts';
import { parseAvro } from '../../src/schema/avro-types.ts';
import { generateTypes, typeNameOf } from '../../src/schema/codegen.ts';
import { TASK_COMPLETED, TASK_CREATED, UNIONS } from './fixtures.ts';

const repo = fileURLToPath(new URL('../../../../', import.meta.url));
const inferModule = fileURLToPath(new URL('../../src/schema/infer.ts', import.meta.url));

/**
 * Not the seed's TaskCompletedEvent: one whose timestamp is a logical type and whose priority refers
 * to the enum TASK_CREATED defines.
 */
const completedWithPriority = {
  type: 'record',
  name: 'TaskCompletedEvent',
  namespace: 'com.todoapp.events',
  fields: [
    { name: 'eventId', type: 'string' },
    { name: 'completedAt', type: { type: 'long', logicalType: 'timestamp-millis' }, doc: 'Completion time' },
    { name: 'priority', type: 'Priority', doc: 'Refers to the enum TaskCreatedEvent defines' },
  ],
};

/** Every primitive and logical type, nested and recursive records, references, awkward names and docs. */
const everything = {
  type: 'record',
  name: 'Everything',
  namespace: 'com.example',
  doc: 'A record with "quotes", an apostrophe\'s and a */ comment end.\nSecond line.',
  fields: [
    { name: 'nothing', type: 'null' },
    { name: 'flag', type: 'boolean' },
    { name: 'count', type: 'int' },
    { name: 'big', type: 'long' },
    { name: 'ratio', type: 'float' },
    { name: 'score', type: 'double' },
    { name: 'text', type: 'string', default: "it's" },
    { name: 'blob', type: 'bytes' },
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
      type: { type: 'fixed', name: 'Amount', size: 8, logicalType: 'decimal', precision: 18 },
    },
    { name: 'opensAt', type: { type: 'int', logicalType: 'time-millis' } },
    { name: 'closesAt', type: { type: 'long', logicalType: 'time-micros' } },
    { name: 'madeUp', type: { type: 'string', logicalType: 'made-up' } },
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
    { name: 'labels', type: { type: 'map', values: ['null', 'long'] }, default: { a: 1 } },
    { name: 'history', type: { type: 'array', items: 'com.example.shared.Status' } },
    { name: 'billing', type: ['null', 'Address'], default: null },
    { name: 'matrix', type: { type: 'array', items: { type: 'array', items: 'double' } }, default: [[1, 2]] },
    { name: 'one', type: { type: 'enum', name: 'Kind', namespace: 'one', symbols: ['A'] } },
    { name: 'two', type: { type: 'enum', name: 'Kind', namespace: 'two', symbols: ['B'] } },
    { name: 'clock', type: { type: 'record', name: 'Date', fields: [{ name: 'day', type: 'int' }] } },
    {
      name: 'aVeryLongFieldNameThatPushesTheUnionPastTheLineWidth',
      type: ['null', 'Address', 'com.example.shared.Status', 'Md5', 'Amount', 'string', 'boolean'],
    },
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
};

/** The seed's TaskCreatedEvent, a schema that refers to it, and everything else. */
const SCHEMAS = [{ schema: TASK_CREATED }, { schema: completedWithPriority }, { schema: everything }];

/** A top-level union of two records in the null namespace. */
const choice = [
  { type: 'record', name: 'Left', fields: [{ name: 'at', type: { type: 'int', logicalType: 'date' } }] },
  { type: 'record', name: 'Right', fields: [{ name: 'n', type: 'long' }] },
];

test('the seed schemas give the checked-in examples/schemas/todo-events.ts, less its header', () => {
  // examples.test.ts checks the whole file against the CLI; here, generateTypes alone.
  const file = readFileSync(join(repo, 'examples/schemas/todo-events.ts'), 'utf8');
  const body = file.slice(file.indexOf('\n\n') + 2);
  assert.equal(generateTypes([{ schema: TASK_CREATED }, { schema: TASK_COMPLETED }], { header: '' }), body);
  // TaskCreatedEvent alone: decoded interface, publish input, enum and schema constant, default header.
  const created = body.slice(
    0,
    body.indexOf('/** Avro record `com.todoapp.events.TaskCompletedEvent`. */') - 1,
  );
  assert.equal(
    generateTypes([{ schema: TASK_CREATED }]),
    `// Generated by eventline from Avro schemas. Do not edit: regenerate instead.\n\n${created}`,
  );
});

test('the same schemas give the same text, whether given as objects or JSON text', () => {
  const again = SCHEMAS.map((s) => ({ schema: JSON.stringify(s.schema, null, 2) }));
  assert.equal(generateTypes(SCHEMAS), generateTypes(again));
});

test('names, references across schemas, logical types and collisions', () => {
  const text = generateTypes(SCHEMAS);
  const lines = text.split('\n');
  const has = (line: string) => assert.ok(lines.includes(line), `missing line: ${line}`);
  // Priority is defined once and TaskCompletedEvent refers to it by its short name.
  assert.equal(lines.filter((l) => l.startsWith('export type Priority =')).length, 1);
  has('  priority: Priority;');
  has('  completedAt: Date;');
  has('  completedAt: Date | number;');
  // Field-by-field mapping.
  for (const line of [
    '  nothing: null;',
    '  big: number | bigint;',
    '  blob: Buffer;',
    '  hash: Md5;',
    'export type Md5 = Buffer;',
    'export type Amount = string;',
    '  preciseAt: bigint;',
    '  birthday: Date;',
    '  price: string;',
    '  closesAt: number | bigint;',
    '  madeUp: string;',
    '  address: Address;',
    '  address: AddressInput;',
    "export type Status = 'ACTIVE' | 'SUSPENDED';",
    '  labels: Record<string, null | number | bigint>;',
    '  history: Status[];',
    '  billing?: null | AddressInput;',
    '  matrix: number[][];',
    '  children: TreeNode[];',
    '  children?: TreeNodeInput[];',
    // Two types named Kind, and one named Date, get their namespace in front.
    '  one: OneKind;',
    '  two: TwoKind;',
    '  clock: ComExampleDate;',
    // A record without defaults or timestamps is its own publish input.
    'export type ComExampleDateInput = ComExampleDate;',
    // Status (an enum) and string make this union ambiguous: avsc wraps it. The decimal Amount is
    // matched by value, so Md5 is the only buffer.
    '  aVeryLongFieldNameThatPushesTheUnionPastTheLineWidth:',
    "    | { 'com.example.Address': AddressInput }",
    "    | { 'com.example.shared.Status': Status }",
    '    | { string: string }',
    "    | { 'com.example.Amount': AmountInput }",
    'export type AmountInput = string | number | bigint;',
    '  birthday: Date | string;',
    '  price: string | number | bigint;',
  ]) {
    has(line);
  }
  has(' * A record with "quotes", an apostrophe\'s and a *\\/ comment end.');
  has('  /** @defaultValue "it\'s" */');
  has('  /** @defaultValue [[1, 2]] */');
});

test('the output compiles under strict settings, passes Biome and agrees with InferAvro', () => {
  const dir = mkdtempSync(join(tmpdir(), 'eventline-codegen-'));
  try {
    const generated = generateTypes([...SCHEMAS, { schema: UNIONS }, { schema: choice, name: 'Choice' }], {
      header: 'Checked by codegen.test.ts.\n\nSecond paragraph.',
    });
    writeFileSync(join(dir, 'generated.ts'), generated);
    writeFileSync(join(dir, 'package.json'), '{ "type": "module" }\n');
    writeFileSync(
      join(dir, 'check.ts'),
      `import type { InferAvro, InferAvroInput } from '${inferModule}';
import type * as G from './generated.ts';

type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
type Expect<T extends true> = T;

export type Checks = [
  Expect<Equal<InferAvro<typeof G.TaskCreatedEventSchema>, G.TaskCreatedEvent>>,
  Expect<Equal<InferAvroInput<typeof G.TaskCreatedEventSchema>, G.TaskCreatedEventInput>>,
  Expect<Equal<InferAvro<typeof G.EverythingSchema>, G.Everything>>,
  Expect<Equal<InferAvroInput<typeof G.EverythingSchema>, G.EverythingInput>>,
  Expect<Equal<G.Priority, (typeof G.PrioritySymbols)[number]>>,
  Expect<Equal<InferAvro<typeof G.UnionsSchema>, G.Unions>>,
  Expect<Equal<InferAvroInput<typeof G.UnionsSchema>, G.UnionsInput>>,
  Expect<Equal<InferAvro<typeof G.ChoiceSchema>, G.Choice>>,
  Expect<Equal<InferAvroInput<typeof G.ChoiceSchema>, G.ChoiceInput>>,
  Expect<Equal<G.Choice, { Left: G.Left } | { Right: G.Right }>>,
  Expect<Equal<G.Unions['either'], null | { 'ns.A': G.A } | { 'other.B': G.B }>>,
  Expect<Equal<G.Unions['big'], null | string | number | bigint>>,
];

export const wrapped: G.UnionsInput = {
  either: { 'other.B': {} },
  amount: { double: 1.5 },
  big: 2n ** 60n,
  intOrLong: null,
  symbol: { 'ns.E': 'X' },
  mapOrRecord: { map: {} },
  decimalOrFixed: 1.25,
  badDecimal: { bytes: Buffer.alloc(1) },
  timed: { long: 0 },
  day: '2024-01-31',
  clock: { int: 0 },
  list: [{ int: 1 }],
  byFullName: null,
  nested: { a: { 'ns.A': { x: 1 } } },
};
// @ts-expect-error an ambiguous union takes wrapped values only
export const unwrapped: G.UnionsInput['amount'] = 1.5;

export const input: G.TaskCompletedEventInput = { eventId: 'e', completedAt: Date.now(), priority: 'LOW' };
// @ts-expect-error decoded values carry Dates
export const decoded: G.TaskCompletedEvent = { eventId: 'e', completedAt: Date.now(), priority: 'LOW' };
`,
    );
    const biomeConfig = JSON.parse(readFileSync(join(repo, 'biome.json'), 'utf8'));
    delete biomeConfig.$schema;
    // Outside the repository there is no git ignore file to consult.
    writeFileSync(
      join(dir, 'biome.json'),
      JSON.stringify({ ...biomeConfig, vcs: { enabled: false }, files: { includes: ['**'] } }),
    );
    const tsc = join(repo, 'node_modules/typescript/bin/tsc');
    const biome = join(repo, 'node_modules/@biomejs/biome/bin/biome');
    const flags = ['--strict', '--noEmit', '--target', 'es2024', '--module', 'nodenext'];
    flags.push('--types', 'node', '--typeRoots', join(repo, 'node_modules/@types'), '--skipLibCheck');
    flags.push('--noUncheckedIndexedAccess', '--exactOptionalPropertyTypes', '--verbatimModuleSyntax');
    flags.push('--erasableSyntaxOnly', '--allowImportingTsExtensions');
    const run = (args: string[]) => {
      try {
        execFileSync(process.execPath, args, { cwd: dir, encoding: 'utf8', stdio: 'pipe' });
      } catch (err) {
        const { stdout, stderr } = err as { stdout?: string; stderr?: string };
        assert.fail(`${args[0]} failed:\n${stdout}${stderr}\n--- generated.ts ---\n${generated}`);
      }
    };
    run([tsc, ...flags, 'generated.ts', 'check.ts']);
    run([biome, 'check', 'generated.ts']);
    assert.match(generated, /^\/\/ Checked by codegen\.test\.ts\.\n\/\/\n\/\/ Second paragraph\.\n\n/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('unions are wrapped exactly where avsc wraps them, under its branch names', () => {
  const F = { type: 'fixed', name: 'F', namespace: 'ns', size: 2 };
  const R = { type: 'record', name: 'R', namespace: 'ns', fields: [] };
  const cases: unknown[] = [
    ['null', 'int', 'double'],
    ['null', 'int', 'long'],
    ['null', 'float', 'long', 'string'],
    ['int', 'float'],
    ['null', 'string', { type: 'enum', name: 'E', symbols: ['A'] }],
    ['null', { type: 'enum', name: 'E', symbols: ['A'] }, 'bytes'],
    ['bytes', F],
    [{ type: 'bytes', logicalType: 'decimal', precision: 3 }, F],
    [{ type: 'bytes', logicalType: 'decimal', precision: 0 }, F],
    [{ type: 'bytes', logicalType: 'decimal', precision: 3, scale: 4 }, F],
    [{ type: 'fixed', name: 'D', size: 4, logicalType: 'decimal', precision: 4, scale: 1 }, 'bytes'],
    [{ type: 'fixed', name: 'D', size: 4, logicalType: 'decimal', precision: 0 }, 'bytes'],
    [R, { type: 'map', values: 'int' }],
    [R, { type: 'record', name: 'S', fields: [] }],
    ['null', R, { type: 'error', name: 'Oops', namespace: 'err', fields: [] }],
    [R, { type: 'array', items: 'int' }],
    ['null', { type: 'long', logicalType: 'timestamp-millis' }, 'int', 'double'],
    ['null', { type: 'long', logicalType: 'timestamp-micros' }, 'int'],
    [{ type: 'int', logicalType: 'date' }, 'float', 'string'],
    [{ type: 'int', logicalType: 'time-millis' }, 'float'],
    [{ type: 'long', logicalType: 'time-micros' }, 'float'],
    [
      { type: 'string', logicalType: 'uuid' },
      { type: 'enum', name: 'E', symbols: ['A'] },
    ],
    [
      { type: 'string', logicalType: 'made-up' },
      { type: 'enum', name: 'E', symbols: ['A'] },
    ],
    [{ type: 'map', values: 'int', logicalType: 'uuid' }, R],
    ['boolean', { type: 'array', items: 'int' }, { type: 'map', values: 'long' }],
  ];
  for (const schema of cases) {
    const avro = parseAvro(schema) as unknown as { typeName: string; types: { branchName: string }[] };
    const text = generateTypes([{ schema, name: 'U' }], { header: '' });
    const alias = text.slice(
      text.indexOf('export type U ='),
      text.indexOf(';\n', text.indexOf('export type U =')),
    );
    const keys = [...alias.matchAll(/\{ (?:'([^']*)'|(\w+)): /g)].map((m) => m[1] ?? m[2]);
    const expected =
      avro.typeName === 'union:wrapped'
        ? avro.types.map((t) => t.branchName).filter((k) => k !== 'null')
        : [];
    assert.deepEqual(keys, expected, `${JSON.stringify(schema)}\n${alias}`);
    if (avro.typeName === 'union:wrapped' && avro.types.some((t) => t.branchName === 'null')) {
      assert.match(alias, /= null \| \{|\n {2}\| null\n/, JSON.stringify(schema));
    }
  }
});

test('unions cannot be directly nested', () => {
  assert.throws(
    () => generateTypes([{ schema: ['null', ['int', 'string']], name: 'Nested' }]),
    (err) => isEventlineError(err, 'EVENTLINE_ERR_SCHEMA_INVALID'),
  );
});

test('a schema without a name of its own needs one', () => {
  const union = ['null', { type: 'long', logicalType: 'timestamp-millis' }];
  assert.throws(
    () => generateTypes([{ schema: union }]),
    (err) => isEventlineError(err, 'EVENTLINE_ERR_INVALID_ARGUMENT'),
  );
  const text = generateTypes([{ schema: union, name: 'MaybeTime' }]);
  assert.ok(text.includes('export type MaybeTime = null | Date;\n'));
  assert.ok(text.includes('export type MaybeTimeInput = null | Date | number;\n'));
  assert.ok(
    text.includes(
      "export const MaybeTimeSchema = ['null', { type: 'long', logicalType: 'timestamp-millis' }] as const;",
    ),
  );
});

test('a name given for a named schema renames its type', () => {
  const text = generateTypes([{ schema: TASK_CREATED, name: 'Created' }]);
  assert.ok(text.includes('export interface Created {'));
  assert.ok(text.includes('export type CreatedInput = {'));
  assert.ok(text.includes('export const CreatedSchema = {'));
  assert.throws(
    () => generateTypes([{ schema: TASK_CREATED, name: 'not-an-identifier' }]),
    (err) => isEventlineError(err, 'EVENTLINE_ERR_INVALID_ARGUMENT'),
  );
});

test('unknown names and conflicting definitions are invalid schemas', () => {
  const unknownRef = { type: 'record', name: 'R', fields: [{ name: 'x', type: 'Nowhere' }] };
  assert.throws(
    () => generateTypes([{ schema: unknownRef }]),
    (err) => isEventlineError(err, 'EVENTLINE_ERR_SCHEMA_INVALID') && err.details.path === 'R.x',
  );
  const other = {
    ...completedWithPriority,
    fields: [{ name: 'p', type: { type: 'enum', name: 'Priority', symbols: ['X'] } }],
  };
  assert.throws(
    () => generateTypes([{ schema: TASK_CREATED }, { schema: other }]),
    (err) => isEventlineError(err, 'EVENTLINE_ERR_SCHEMA_INVALID'),
  );
  for (const bad of [
    { type: 'record', name: 'R' },
    { type: 'enum', name: 'E', symbols: [1] },
    { name: 'x' },
    42,
  ]) {
    assert.throws(
      () => generateTypes([{ schema: bad, name: 'Bad' }]),
      (err) => isEventlineError(err, 'EVENTLINE_ERR_SCHEMA_INVALID'),
      JSON.stringify(bad),
    );
  }
});

test('typeNameOf gives the short name of named schemas only', () => {
  assert.equal(typeNameOf(TASK_CREATED), 'TaskCreatedEvent');
  assert.equal(typeNameOf(JSON.stringify({ type: 'fixed', name: 'a.b.Md5', size: 16 })), 'Md5');
  assert.equal(typeNameOf(['null', 'string']), undefined);
  assert.equal(typeNameOf('string'), undefined);
});

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isEventlineError } from '../../src/errors.ts';
import {
  checkCompatibility,
  checkReaderWriter,
  type Incompatibility,
  type IncompatibilityType,
} from '../../src/schema/compatibility.ts';
import { COMPATIBILITY_LEVELS, type CompatibilityLevel } from '../../src/schema/types.ts';
import { TASK_CREATED as SEED_TASK_CREATED } from './fixtures.ts';

type Json = Record<string, unknown>;
type Edit = (fields: Json[]) => Json[];

// The seed's TaskCreatedEvent (task.created topic), seen as plain JSON.
const TASK_CREATED: Json = SEED_TASK_CREATED;

/** TaskCreatedEvent with `edit` applied to a copy of its fields and `top` merged into the record. */
function task(edit: Edit = (f) => f, top: Json = {}): Json {
  const copy = structuredClone(TASK_CREATED);
  return { ...copy, fields: edit(copy.fields as Json[]), ...top };
}
const add =
  (...extra: Json[]): Edit =>
  (fields) => [...fields, ...extra];
const drop =
  (name: string): Edit =>
  (fields) =>
    fields.filter((f) => f.name !== name);
const patch =
  (name: string, change: Json): Edit =>
  (fields) =>
    fields.map((f) => (f.name === name ? { ...f, ...change } : f));
const retype = (name: string, type: unknown): Edit => patch(name, { type });
const priority = (symbols: string[], extra: Json = {}): Edit =>
  retype('priority', { type: 'enum', name: 'Priority', symbols, ...extra });

const R = (name: string, fields: Json[], extra: Json = {}): Json => ({
  type: 'record',
  name,
  fields,
  ...extra,
});
const F = (name: string, type: unknown, extra: Json = {}): Json => ({ name, type, ...extra });
const md5 = (size: number, name = 'Md5'): Json => ({ type: 'fixed', name, size });
const SYMBOLS = ['CRITICAL', 'HIGH', 'MEDIUM', 'LOW'];

/** [rule, path, what the message must say: the field and the rule]. */
type Expected = [IncompatibilityType, string, RegExp];

function assertFound(actual: Incompatibility[], expected: readonly Expected[], label: string): void {
  assert.deepEqual(
    actual.map((i) => `${i.type} ${i.path}`),
    expected.map(([type, path]) => `${type} ${path}`),
    `${label}: ${JSON.stringify(actual, null, 1)}`,
  );
  for (const [i, [, , mentions]] of expected.entries())
    assert.match(actual[i]?.message ?? '', mentions, label);
}

function rejects(fn: () => unknown, code: string, mentions: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(isEventlineError(err), `expected an EventlineError, got ${err}`);
    assert.equal(err.code, code);
    assert.match(err.message, mentions);
    return true;
  });
}

// ---------------------------------------------------------------------------------------------
// Primitives and promotions

const PRIMITIVES = ['null', 'boolean', 'int', 'long', 'float', 'double', 'bytes', 'string'];
const PROMOTIONS = new Set([
  'int>long',
  'int>float',
  'int>double',
  'long>float',
  'long>double',
  'float>double',
  'string>bytes',
  'bytes>string',
]);

test('every primitive pair: the same type or an Avro promotion reads, anything else is TYPE_MISMATCH', () => {
  let allowed = 0;
  for (const writer of PRIMITIVES) {
    for (const reader of PRIMITIVES) {
      const found = checkReaderWriter(reader, writer);
      const label = `${writer} -> ${reader}`;
      if (reader === writer || PROMOTIONS.has(`${writer}>${reader}`)) {
        assert.deepEqual(found, [], label);
        if (reader !== writer) allowed++;
      } else {
        assertFound(
          found,
          [['TYPE_MISMATCH', '/', new RegExp(`writer type ${writer}.*reader type ${reader}`)]],
          label,
        );
      }
    }
  }
  assert.equal(allowed, PROMOTIONS.size);
});

test('each promotion is allowed inside a record field and its reverse is refused with the field named', () => {
  for (const promotion of PROMOTIONS) {
    const [from, to] = promotion.split('>') as [string, string];
    const schema = (type: string) => R('R', [F('amount', type)]);
    assert.deepEqual(checkReaderWriter(schema(to), schema(from)), [], promotion);
    if (PROMOTIONS.has(`${to}>${from}`)) continue; // string <-> bytes goes both ways
    const mentions = new RegExp(
      `^field 'amount' at /fields/0/type: writer type ${to} .* ${from} .*promotion`,
    );
    assertFound(
      checkReaderWriter(schema(from), schema(to)),
      [['TYPE_MISMATCH', '/fields/0/type', mentions]],
      promotion,
    );
  }
});

test('logical types are ignored: only the underlying types are compared', () => {
  const date = { type: 'int', logicalType: 'date' };
  const millis = { type: 'long', logicalType: 'timestamp-millis' };
  const decimal = { type: 'bytes', logicalType: 'decimal', precision: 10, scale: 2 };
  assert.deepEqual(checkReaderWriter(date, 'int'), []);
  assert.deepEqual(checkReaderWriter(millis, date), []); // int -> long promotion
  assert.deepEqual(checkReaderWriter({ ...decimal, precision: 4 }, decimal), []);
  assert.deepEqual(checkReaderWriter('string', decimal), []);
  assertFound(checkReaderWriter(date, millis), [['TYPE_MISMATCH', '/', /long.*int/]], 'date');
});

// ---------------------------------------------------------------------------------------------
// Reader/writer rules, one row per rule and direction: [name, reader, writer, ...expected]

type RuleCase = [string, unknown, unknown, ...Expected[]];

const listNode = (...extra: Json[]): Json =>
  R('Node', [F('value', 'int'), F('next', ['null', 'Node'], { default: null }), ...extra], {
    namespace: 'list',
  });
const tree = (weight: string): Json =>
  R('Tree', [F('children', { type: 'array', items: R('Branch', [F('tree', 'Tree'), F('w', weight)]) })]);
const address = (...fields: Json[]): Json => R('Task', [F('address', ['null', R('Address', fields)])]);
const outer = (): Json =>
  R('Outer', [F('in', R('Top', [], { namespace: '' })), F('again', 'Top')], { namespace: 'deep' });

const RULES: RuleCase[] = [
  ['identical schemas', TASK_CREATED, TASK_CREATED],
  ['null reads null', 'null', { type: 'null' }],
  ['reader adds a field with a default', task(add(F('email', 'string', { default: '' }))), TASK_CREATED],
  [
    'reader adds a field without a default',
    task(add(F('email', 'string'))),
    TASK_CREATED,
    [
      'READER_FIELD_MISSING_DEFAULT_VALUE',
      '/fields/10',
      /^reader field 'email' at \/fields\/10 has no default value and is missing from the writer schema$/,
    ],
  ],
  ['writer-only field is ignored', task(drop('title')), TASK_CREATED],
  [
    'reader keeps a field the writer dropped, without a default',
    TASK_CREATED,
    task(drop('title')),
    ['READER_FIELD_MISSING_DEFAULT_VALUE', '/fields/4', /field 'title'.*no default/],
  ],
  ['reader keeps a dropped field with a default (null counts)', TASK_CREATED, task(drop('description'))],
  ['namespace-only change passes', task(undefined, { namespace: 'com.todoapp.events.v2' }), TASK_CREATED],
  [
    'namespace written into the name passes',
    task(undefined, { name: 'org.other.TaskCreatedEvent' }),
    TASK_CREATED,
  ],
  [
    'renamed record without an alias',
    task(undefined, { name: 'TaskAdded' }),
    TASK_CREATED,
    ['NAME_MISMATCH', '/name', /record 'com\.todoapp\.events\.TaskAdded'.*TaskCreatedEvent.*alias/],
  ],
  [
    'renamed record, short alias',
    task(undefined, { name: 'TaskAdded', aliases: ['TaskCreatedEvent'] }),
    TASK_CREATED,
  ],
  [
    'renamed record, short alias, other namespace',
    task(undefined, { name: 'TaskAdded', namespace: 'x', aliases: ['TaskCreatedEvent'] }),
    TASK_CREATED,
  ],
  [
    'renamed record, full-name alias, other namespace',
    task(undefined, { name: 'TaskAdded', namespace: 'x', aliases: ['com.todoapp.events.TaskCreatedEvent'] }),
    TASK_CREATED,
  ],
  [
    'the alias belongs to the reader: a writer alias does not help',
    TASK_CREATED,
    task(undefined, { name: 'TaskAdded', aliases: ['TaskCreatedEvent'] }),
    ['NAME_MISMATCH', '/name', /TaskAdded/],
  ],
  [
    'renamed field with a reader field alias',
    task(patch('userId', { name: 'ownerId', aliases: ['userId'] })),
    TASK_CREATED,
  ],
  [
    'renamed field without an alias',
    task(patch('userId', { name: 'ownerId' })),
    TASK_CREATED,
    ['READER_FIELD_MISSING_DEFAULT_VALUE', '/fields/2', /field 'ownerId'/],
  ],
  [
    'field type changed',
    task(retype('taskId', 'int')),
    TASK_CREATED,
    ['TYPE_MISMATCH', '/fields/3/type', /^field 'taskId' at \/fields\/3\/type: writer type string .* int/],
  ],
  [
    'writer adds enum symbols the reader lacks',
    TASK_CREATED,
    task(priority([...SYMBOLS, 'URGENT', 'BACKLOG'])),
    [
      'MISSING_ENUM_SYMBOLS',
      '/fields/6/type/symbols',
      /field 'priority'.*enum 'com\.todoapp\.events\.Priority' lacks writer symbols \[BACKLOG, URGENT\]/,
    ],
  ],
  [
    'writer adds an enum symbol, reader enum has a default symbol',
    task(priority(SYMBOLS, { default: 'MEDIUM' })),
    task(priority([...SYMBOLS, 'URGENT'])),
  ],
  ['writer removes an enum symbol', TASK_CREATED, task(priority(['CRITICAL', 'HIGH', 'MEDIUM']))],
  [
    'renamed enum',
    task(retype('priority', { type: 'enum', name: 'Urgency', symbols: SYMBOLS })),
    TASK_CREATED,
    ['NAME_MISMATCH', '/fields/6/type/name', /field 'priority'.*enum .*Urgency.*Priority/],
  ],
  ['same fixed', md5(16), md5(16)],
  [
    'fixed size change',
    R('Doc', [F('hash', md5(16))]),
    R('Doc', [F('hash', md5(20))]),
    ['FIXED_SIZE_MISMATCH', '/fields/0/type/size', /field 'hash'.*size 16.*size 20/],
  ],
  [
    'fixed renamed and resized: both reported',
    md5(16),
    md5(32, 'Sha256'),
    ['NAME_MISMATCH', '/name', /Md5.*Sha256/],
    ['FIXED_SIZE_MISMATCH', '/size', /16.*32/],
  ],
  ['array items promoted', { type: 'array', items: 'long' }, { type: 'array', items: 'int' }],
  [
    'array items narrowed',
    task(retype('tags', { type: 'array', items: 'int' })),
    TASK_CREATED,
    ['TYPE_MISMATCH', '/fields/9/type/items', /field 'tags'.*string.*int/],
  ],
  [
    'map values',
    { type: 'map', values: 'float' },
    { type: 'map', values: 'double' },
    ['TYPE_MISMATCH', '/values', /double.*float/],
  ],
  [
    'array versus map',
    { type: 'array', items: 'string' },
    { type: 'map', values: 'string' },
    ['TYPE_MISMATCH', '/', /array<string>.*map<string>/],
  ],
  [
    'record versus enum',
    R('A', []),
    { type: 'enum', name: 'A', symbols: ['X'] },
    ['TYPE_MISMATCH', '/', /record 'A'.*enum 'A'/],
  ],
  ['reader union gains a branch', task(retype('dueDate', ['null', 'long', 'string'])), TASK_CREATED],
  [
    'writer union gains a branch the reader lacks',
    TASK_CREATED,
    task(retype('dueDate', ['null', 'long', 'string'])),
    [
      'MISSING_UNION_BRANCH',
      '/fields/7/type/2',
      /field 'dueDate'.*no branch of reader union \[null, long\] can read writer union branch 2 \(string\)/,
    ],
  ],
  ['union branch promoted', ['null', 'double'], ['null', 'int']],
  ['non-union widened to a union', task(retype('title', ['null', 'string'])), TASK_CREATED],
  [
    'union narrowed back to a non-union',
    TASK_CREATED,
    task(retype('title', ['null', 'string'])),
    [
      'MISSING_UNION_BRANCH',
      '/fields/4/type/0',
      /field 'title'.*reader type string cannot read writer union branch 0 \(null\)/,
    ],
  ],
  [
    'reader union without the writer type',
    ['null', 'long'],
    'string',
    ['MISSING_UNION_BRANCH', '/', /no branch of reader union \[null, long\] can read writer type string/],
  ],
  [
    'nullable nested record: the branch and the deeper reason',
    address(F('city', 'string'), F('zip', 'string')),
    address(F('city', 'string')),
    ['MISSING_UNION_BRANCH', '/fields/0/type/1', /field 'address'.*branch 1 \(record 'Address'\)/],
    [
      'READER_FIELD_MISSING_DEFAULT_VALUE',
      '/fields/0/type/1/fields/1',
      /^reader field 'address\.zip' at \/fields\/0\/type\/1\/fields\/1 has no default/,
    ],
  ],
  [
    'every incompatibility is returned, in reader order',
    task(add(F('email', 'string')), { name: 'Other' }),
    task(retype('eventTimestamp', 'string')),
    ['NAME_MISMATCH', '/name', /Other/],
    ['TYPE_MISMATCH', '/fields/1/type', /eventTimestamp/],
    ['READER_FIELD_MISSING_DEFAULT_VALUE', '/fields/10', /email/],
  ],
  [
    'named references by short and full name, namespace inherited',
    R(
      'Pair',
      [
        F('a', md5(16)),
        F('b', 'Md5'),
        F('c', 'ns.Md5'),
        F('d', { type: 'array', items: { type: 'ns.Md5' } }),
      ],
      {
        namespace: 'ns',
      },
    ),
    R('ns.Pair', [F('a', md5(16)), F('b', 'ns.Md5'), F('c', 'Md5'), F('d', { type: 'array', items: 'Md5' })]),
  ],
  [
    'a resolved reference is checked like its definition',
    R('Pair', [F('a', md5(16)), F('b', 'Md5')]),
    R('Pair', [F('a', md5(16)), F('b', 'string')]),
    ['TYPE_MISMATCH', '/fields/1/type', /field 'b'.*fixed 'Md5'.*string/],
  ],
  ['a short reference falls back to the null namespace', outer(), outer()],
  ['recursive schema against itself', listNode(), listNode()],
  [
    'recursive schema with a new field lacking a default',
    listNode(F('label', 'string')),
    listNode(),
    ['READER_FIELD_MISSING_DEFAULT_VALUE', '/fields/2', /field 'label'/],
  ],
  [
    'recursive schema with a promoted value',
    R('Node', [F('value', 'long'), F('next', ['null', 'Node'])], { namespace: 'list' }),
    listNode(),
  ],
  ['mutually recursive records', tree('double'), tree('float')],
  [
    'mutually recursive records, narrowed',
    tree('float'),
    tree('double'),
    ['TYPE_MISMATCH', '/fields/0/type/items/fields/1/type', /^field 'children\.w' at .*double.*float/],
  ],
];

for (const [name, reader, writer, ...expected] of RULES) {
  test(`rule: ${name}`, () => assertFound(checkReaderWriter(reader, writer), expected, name));
}

test('the Java quirk for enum-typed reader fields is not copied: a missing default is reported as such', () => {
  const reader = R('R', [F('level', { type: 'enum', name: 'Level', symbols: ['A'], default: 'A' })]);
  const expected: Expected = ['READER_FIELD_MISSING_DEFAULT_VALUE', '/fields/0', /field 'level'/];
  assertFound(checkReaderWriter(reader, R('R', [])), [expected], 'enum default is no field default');
});

test('schemas that cannot be walked are EVENTLINE_ERR_SCHEMA_INVALID', () => {
  const bad: [unknown, RegExp][] = [
    ['Unknown', /unknown type 'Unknown'/],
    [R('R', [F('x', 'Later')]), /\/fields\/0\/type.*unknown type 'Later'/],
    [{ type: 'record', name: 'R' }, /without a "fields" array/],
    [{ type: 'fixed', name: 'F' }, /size/],
    [{ type: 'array' }, /without "items"/],
    [['null', ['int']], /union directly containing a union/],
    [R('R', [F('a', md5(1)), F('b', md5(1))]), /redefines the type 'Md5'/],
    [42, /not a type name/],
    [R('R', [{ type: 'int' }]), /without a string "name"/],
  ];
  for (const [schema, mentions] of bad) {
    rejects(() => checkReaderWriter(schema, 'int'), 'EVENTLINE_ERR_SCHEMA_INVALID', mentions);
    rejects(() => checkReaderWriter('int', schema), 'EVENTLINE_ERR_SCHEMA_INVALID', mentions);
  }
});

// ---------------------------------------------------------------------------------------------
// Levels against one earlier version, every level.
// [name, new schema, new reads old (BACKWARD), old reads new (FORWARD), what a failure reports, old schema]

type Evolution = [string, Json, boolean, boolean, (string | undefined)?, Json?];

const EVOLUTIONS: Evolution[] = [
  ['no change', TASK_CREATED, true, true],
  ['add an optional field', task(add(F('assignee', ['null', 'string'], { default: null }))), true, true],
  [
    'add a required field',
    task(add(F('assignee', 'string'))),
    false,
    true,
    "READER_FIELD_MISSING_DEFAULT_VALUE .*reader field 'assignee' at /fields/10",
  ],
  ['remove an optional field', task(drop('categoryId')), true, true],
  [
    'remove a required field',
    task(drop('title')),
    true,
    false,
    "READER_FIELD_MISSING_DEFAULT_VALUE .*reader field 'title' at /fields/4",
  ],
  [
    'promote long to double',
    task(retype('eventTimestamp', 'double')),
    true,
    false,
    "TYPE_MISMATCH .*field 'eventTimestamp' at /fields/1/type",
  ],
  [
    'make a field nullable',
    task(retype('title', ['null', 'string'])),
    true,
    false,
    "MISSING_UNION_BRANCH .*field 'title' at /fields/4/type/0",
  ],
  [
    'add an enum symbol',
    task(priority([...SYMBOLS, 'URGENT'])),
    true,
    false,
    "MISSING_ENUM_SYMBOLS .*field 'priority' at /fields/6/type/symbols.*\\[URGENT\\]",
  ],
  [
    'add an enum symbol when the enum has a default',
    task(priority([...SYMBOLS, 'URGENT'], { default: 'MEDIUM' })),
    true,
    true,
    undefined,
    task(priority(SYMBOLS, { default: 'MEDIUM' })),
  ],
  [
    'remove an enum symbol',
    task(priority(['CRITICAL', 'HIGH', 'MEDIUM'])),
    false,
    true,
    "MISSING_ENUM_SYMBOLS .*field 'priority'.*\\[LOW\\]",
  ],
  ['change the namespace', task(undefined, { namespace: 'com.todoapp.events.v2' }), true, true],
  [
    'rename the record with an alias',
    task(undefined, { name: 'TaskAdded', aliases: ['TaskCreatedEvent'] }),
    true,
    false,
    'NAME_MISMATCH .*at /name',
  ],
  [
    'rename a field with an alias',
    task(patch('userId', { name: 'ownerId', aliases: ['userId'] })),
    true,
    false,
    "READER_FIELD_MISSING_DEFAULT_VALUE .*reader field 'userId' at /fields/2",
  ],
  [
    'change a field type',
    task(retype('taskId', 'int')),
    false,
    false,
    "TYPE_MISMATCH .*field 'taskId' at /fields/3/type",
  ],
  [
    'resize a fixed',
    R('Doc', [F('hash', md5(32))]),
    false,
    false,
    "FIXED_SIZE_MISMATCH .*field 'hash' at /fields/0/type/size",
    R('Doc', [F('hash', md5(16))]),
  ],
];

function expectedVerdict(level: CompatibilityLevel, backward: boolean, forward: boolean): boolean {
  if (level === 'NONE') return true;
  if (level.startsWith('BACKWARD')) return backward;
  if (level.startsWith('FORWARD')) return forward;
  return backward && forward;
}

for (const [name, next, backward, forward, breaks, old = TASK_CREATED] of EVOLUTIONS) {
  test(`level matrix: ${name}`, () => {
    for (const level of COMPATIBILITY_LEVELS) {
      const { compatible, messages } = checkCompatibility(level, next, [old]);
      const label = `${name} under ${level}:\n${messages.join('\n')}`;
      const ok = expectedVerdict(level, backward, forward);
      assert.equal(compatible, ok, label);
      if (ok) {
        assert.deepEqual(messages, [], label);
        continue;
      }
      assert.ok(messages.length > 0, label);
      for (const line of messages) assert.match(line, /^[A-Z_]+ against version 1 \(/, label);
      assert.ok(breaks !== undefined && messages.some((line) => new RegExp(breaks).test(line)), label);
    }
  });
}

test('the direction is stated: BACKWARD has the new schema read, FORWARD has the old one read', () => {
  const next = task(retype('taskId', 'int'));
  const [backward] = checkCompatibility('BACKWARD', next, [TASK_CREATED], [4]).messages;
  assert.equal(
    backward,
    'TYPE_MISMATCH against version 4 (the new schema reading data written with version 4): ' +
      "field 'taskId' at /fields/3/type: writer type string cannot be read as reader type int (not an Avro promotion)",
  );
  const [forward] = checkCompatibility('FORWARD', next, [TASK_CREATED], [4]).messages;
  assert.match(
    forward ?? '',
    /^TYPE_MISMATCH against version 4 \(version 4 reading data written with the new schema\)/,
  );
  assert.match(forward ?? '', /writer type int cannot be read as reader type string/);
});

test('FULL reports both directions for the failing version', () => {
  const next = task((f) => add(F('assignee', 'string'))(drop('title')(f)));
  for (const level of ['FULL', 'FULL_TRANSITIVE'] as const) {
    const { compatible, messages } = checkCompatibility(level, next, [TASK_CREATED]);
    assert.equal(compatible, false);
    assert.equal(messages.length, 2, messages.join('\n'));
    assert.match(messages[0] ?? '', /^READER_FIELD_MISSING_DEFAULT_VALUE .*new schema reading.*'assignee'/);
    assert.match(messages[1] ?? '', /^READER_FIELD_MISSING_DEFAULT_VALUE .*version 1 reading.*'title'/);
  }
});

// ---------------------------------------------------------------------------------------------
// Levels against several versions

test('no earlier versions, or NONE, is always compatible', () => {
  for (const level of COMPATIBILITY_LEVELS) {
    assert.deepEqual(checkCompatibility(level, TASK_CREATED, []), { compatible: true, messages: [] }, level);
  }
  // NONE does not even look at the schemas.
  assert.deepEqual(checkCompatibility('NONE', 'Unknown', ['string']), { compatible: true, messages: [] });
});

test('BACKWARD_TRANSITIVE catches a break against an older version that the latest alone passes', () => {
  const v1 = TASK_CREATED;
  const v2 = task(add(F('assignee', 'string', { default: 'nobody' })));
  const v3 = task(add(F('assignee', 'string')));
  assert.deepEqual(checkCompatibility('BACKWARD', v3, [v1, v2]), { compatible: true, messages: [] });
  assert.deepEqual(checkCompatibility('FULL', v3, [v1, v2]), { compatible: true, messages: [] });
  for (const level of ['BACKWARD_TRANSITIVE', 'FULL_TRANSITIVE'] as const) {
    assert.deepEqual(checkCompatibility(level, v3, [v1, v2], [3, 7]), {
      compatible: false,
      messages: [
        'READER_FIELD_MISSING_DEFAULT_VALUE against version 3 (the new schema reading data written with version 3): ' +
          "reader field 'assignee' at /fields/10 has no default value and is missing from the writer schema",
      ],
    });
  }
});

test('FORWARD_TRANSITIVE catches a break against an older version that the latest alone passes', () => {
  const v1 = task(add(F('assignee', 'string')));
  const v2 = task(add(F('assignee', 'string', { default: 'nobody' })));
  const v3 = TASK_CREATED;
  assert.equal(checkCompatibility('FORWARD', v3, [v1, v2]).compatible, true);
  for (const level of ['FORWARD_TRANSITIVE', 'FULL_TRANSITIVE'] as const) {
    const { compatible, messages } = checkCompatibility(level, v3, [v1, v2]);
    assert.equal(compatible, false, level);
    assert.equal(messages.length, 1, level);
    assert.match(
      messages[0] ?? '',
      /^READER_FIELD_MISSING_DEFAULT_VALUE against version 1 \(version 1 reading data written with the new schema\): reader field 'assignee' at \/fields\/10/,
    );
  }
});

test('transitive levels go newest to oldest and stop at the first failing version', () => {
  const withScore = (type: string) => task(add(F('score', type)));
  // The new schema's required `score` is missing from v1 and v2 and mistyped in v5; v9 is fine.
  const previous = [TASK_CREATED, TASK_CREATED, withScore('boolean'), withScore('int')];
  const next = withScore('long');
  assert.equal(checkCompatibility('BACKWARD', next, previous).compatible, true);
  const { messages } = checkCompatibility('BACKWARD_TRANSITIVE', next, previous, [1, 2, 5, 9]);
  assert.equal(messages.length, 1);
  assert.match(
    messages[0] ?? '',
    /^TYPE_MISMATCH against version 5 .*field 'score' at \/fields\/10\/type: writer type boolean/,
  );
});

test('versions must be parallel to previous', () => {
  rejects(
    () => checkCompatibility('BACKWARD', TASK_CREATED, [TASK_CREATED], [1, 2]),
    'EVENTLINE_ERR_INVALID_ARGUMENT',
    /1 previous schemas but 2 version numbers/,
  );
});

test('an invalid earlier version is reported as EVENTLINE_ERR_SCHEMA_INVALID', () => {
  const invalid = { type: 'record' };
  rejects(
    () => checkCompatibility('BACKWARD', TASK_CREATED, [invalid]),
    'EVENTLINE_ERR_SCHEMA_INVALID',
    /name/,
  );
});

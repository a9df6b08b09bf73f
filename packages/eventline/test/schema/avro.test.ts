import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import avsc from 'avsc';
import { connect } from '../../src/client.ts';
import { isEventlineError } from '../../src/errors.ts';
import { avro, avroFile, subjectName } from '../../src/schema/avro.ts';
import { findMismatches, parseAvro } from '../../src/schema/avro-types.ts';
import { defineTopic } from '../../src/topic.ts';

const roundTrip = (schema: unknown, value: unknown): unknown => {
  const t = parseAvro(schema);
  return t.fromBuffer(t.toBuffer(value));
};

test('long: numbers while safe, bigint beyond 2^53, exact at every boundary, in both directions', () => {
  const plain = avsc.Type.forSchema('long');
  const ours = parseAvro('long');
  const edges = [
    0,
    1,
    -1,
    2 ** 31,
    -(2 ** 31) - 1,
    2 ** 52 - 1,
    2 ** 52,
    -(2 ** 52),
    2 ** 53 - 1,
    -(2 ** 53 - 1),
  ];
  for (const n of edges) {
    assert.equal(roundTrip('long', n), n, String(n));
    if (Math.abs(n) < 2 ** 52)
      assert.deepEqual(ours.toBuffer(n), plain.toBuffer(n), `same bytes as avsc for ${n}`);
  }
  for (const n of [2n ** 53n, -(2n ** 53n), 2n ** 62n + 7n, 2n ** 63n - 1n, -(2n ** 63n)]) {
    assert.equal(roundTrip('long', n), n, String(n));
  }
  // A bigint that fits comes back as a number.
  assert.equal(roundTrip('long', 5n), 5);
  assert.throws(() => ours.toBuffer(2n ** 63n), /invalid "long"/);
  assert.throws(() => ours.toBuffer(1.5), /invalid "long"/);
  assert.throws(() => ours.toBuffer(2 ** 53), /invalid "long"/, 'an unsafe number is refused, not rounded');
  // Java-written maximum decodes without loss where plain avsc refuses.
  const max = Buffer.from([0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
  assert.equal(ours.fromBuffer(max), 2n ** 63n - 1n);
  assert.throws(() => plain.fromBuffer(max), /precision/);
});

test('logical types decode to natural values and encode from them', () => {
  const at = new Date('2026-11-29T10:11:12.345Z');
  assert.deepEqual(roundTrip({ type: 'long', logicalType: 'timestamp-millis' }, at), at);
  assert.deepEqual(roundTrip({ type: 'long', logicalType: 'timestamp-millis' }, at.getTime()), at);
  assert.equal(
    roundTrip({ type: 'long', logicalType: 'timestamp-micros' }, 1_795_000_000_123_456n),
    1_795_000_000_123_456n,
  );
  assert.deepEqual(
    roundTrip({ type: 'int', logicalType: 'date' }, '2026-11-29'),
    new Date('2026-11-29T00:00:00Z'),
  );
  const uuid = { type: 'string', logicalType: 'uuid' };
  assert.equal(
    roundTrip(uuid, '9f1c6c3e-2b1a-4c53-9d6e-0c8f5b7a1e22'),
    '9f1c6c3e-2b1a-4c53-9d6e-0c8f5b7a1e22',
  );
  assert.throws(() => parseAvro(uuid).toBuffer('not-a-uuid'));
  const dec = { type: 'bytes', logicalType: 'decimal', precision: 6, scale: 2 };
  for (const [input, out] of [
    ['1234.5', '1234.50'],
    ['-0.01', '-0.01'],
    [0, '0.00'],
    [12n, '12.00'],
    ['-9999.99', '-9999.99'],
  ] as const) {
    assert.equal(roundTrip(dec, input), out, String(input));
  }
  // Two's complement big-endian, as Java's BigDecimal writes it: -1.00 is -100 = 0x9c.
  assert.deepEqual(parseAvro(dec).toBuffer('-1'), Buffer.from([0x02, 0x9c]));
  assert.throws(
    () => parseAvro(dec).toBuffer('1.234'),
    'more digits than the scale are refused, not rounded',
  );
  assert.throws(() => parseAvro(dec).toBuffer('100000'), 'more digits than the precision are refused');
  const fixed = { type: 'fixed', name: 'Money', size: 4, logicalType: 'decimal', precision: 8, scale: 3 };
  assert.equal(roundTrip(fixed, '-12.5'), '-12.500');
});

test('mismatches name the path, the type expected there and what was found', () => {
  const t = parseAvro({
    type: 'record',
    name: 'Task',
    fields: [
      { name: 'id', type: 'string' },
      { name: 'priority', type: { type: 'enum', name: 'Priority', symbols: ['LOW', 'HIGH'] } },
      { name: 'tags', type: { type: 'array', items: 'string' } },
      { name: 'sub', type: { type: 'record', name: 'Sub', fields: [{ name: 'n', type: 'int' }] } },
    ],
  });
  assert.deepEqual(findMismatches(t, { id: 'a', priority: 'LOW', tags: [], sub: { n: 1 } }), []);
  assert.deepEqual(findMismatches(t, { id: 1, priority: 'URGENT', tags: ['a', 2], sub: { n: 'x' } }), [
    { path: '.id', expected: 'string', actual: 'number 1' },
    { path: '.priority', expected: 'enum Priority (LOW|HIGH)', actual: 'string "URGENT"' },
    { path: '.tags[1]', expected: 'string', actual: 'number 2' },
    { path: '.sub.n', expected: 'int', actual: 'string "x"' },
  ]);
  assert.deepEqual(findMismatches(t, { priority: 'LOW', tags: [], sub: { n: 1 } }), [
    { path: '.id', expected: 'string', actual: 'nothing (missing)' },
  ]);
});

test('invalid schemas are refused when the codec is made, naming the reason and the file', () => {
  assert.throws(
    () => avro({ type: 'record', name: 'R', fields: [{ name: 'x', type: 'nope' }] }),
    (err) =>
      isEventlineError(err, 'EVENTLINE_ERR_SCHEMA_INVALID') && /undefined type name: nope/.test(err.message),
  );
  assert.throws(
    () => avro('{"type": "record",'),
    (err) => isEventlineError(err, 'EVENTLINE_ERR_SCHEMA_INVALID'),
  );
  const dir = mkdtempSync(join(tmpdir(), 'eventline-avsc-'));
  try {
    const good = join(dir, 'user.avsc');
    writeFileSync(
      good,
      JSON.stringify({ type: 'record', name: 'User', fields: [{ name: 'id', type: 'string' }] }),
    );
    assert.equal(avroFile(good).type?.typeName, 'record');
    const bad = join(dir, 'bad.avsc');
    writeFileSync(bad, '{"type": "enum", "name": "E"}');
    assert.throws(
      () => avroFile(bad),
      (err) => isEventlineError(err, 'EVENTLINE_ERR_SCHEMA_INVALID') && err.message.includes('bad.avsc'),
    );
    assert.throws(
      () => avroFile(join(dir, 'missing.avsc')),
      (err) => isEventlineError(err, 'EVENTLINE_ERR_SCHEMA_INVALID') && err.message.includes('missing.avsc'),
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('subject names follow the topic, record and topic-record strategies', () => {
  const schema = { type: 'record', name: 'User', namespace: 'acme', fields: [] };
  assert.equal(subjectName('topic', 'users', 'value', schema), 'users-value');
  assert.equal(subjectName('topic', 'users', 'key', schema), 'users-key');
  assert.equal(subjectName('record', 'users', 'value', schema), 'acme.User');
  assert.equal(subjectName('topic-record', 'users', 'value', schema), 'users-acme.User');
  assert.equal(subjectName({ name: 'fixed' }, 'users', 'value', schema), 'fixed');
  assert.throws(() => subjectName('record', 'users', 'value', 'string'), /needs a named schema/);
});

test('an avro codec used outside a connection says it needs one', () => {
  const codec = avro({ type: 'record', name: 'R', fields: [] });
  assert.throws(() => codec.encode({}), /needs the schema registry/);
  assert.throws(() => codec.decode(Buffer.alloc(5)), /needs the schema registry/);
});

test('types: the value type is inferred from the schema; a wrong shape does not compile', async () => {
  const Task = {
    type: 'record',
    name: 'Task',
    fields: [
      { name: 'id', type: 'string' },
      { name: 'priority', type: { type: 'enum', name: 'Priority', symbols: ['LOW', 'HIGH'] } },
      { name: 'due', type: ['null', { type: 'long', logicalType: 'timestamp-millis' }], default: null },
    ],
  } as const;
  const tasks = defineTopic('typed-tasks', { value: avro(Task) });
  const bus = await connect('sqlite::memory:');
  try {
    await bus.ensureTopics([tasks]);
    await bus.publish(tasks, { id: 'a', priority: 'HIGH', due: new Date(0) });
    // @ts-expect-error 'URGENT' is not a symbol of Priority
    await assert.rejects(bus.publish(tasks, { id: 'b', priority: 'URGENT', due: null }), /URGENT/);
    // @ts-expect-error id must be a string
    await assert.rejects(bus.publish(tasks, { id: 1, priority: 'LOW', due: null }), /\.id expected string/);
    const [m] = await bus.reader.read(tasks, { partition: 0, from: 'earliest' });
    const priority: 'LOW' | 'HIGH' = m!.value.priority;
    const due: Date | null = m!.value.due;
    assert.equal(priority, 'HIGH');
    assert.deepEqual(due, new Date(0));
  } finally {
    await bus.close();
  }
});

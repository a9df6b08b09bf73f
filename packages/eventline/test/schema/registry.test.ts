import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { openEngine } from '../../src/engine/index.ts';
import type { Engine } from '../../src/engine/types.ts';
import { type BuiltInRegistry, openRegistry } from '../../src/schema/registry.ts';
import { unique, waitFor } from '../helpers.ts';
import { avro, CASE_MAX_SCHEMA_BYTES, registryCases, rejectsWith, userV1, userV2 } from './registry-cases.ts';

let engine: Engine;
let registry: BuiltInRegistry;
const dir = mkdtempSync(join(tmpdir(), 'eventline-registry-'));

before(async () => {
  engine = await openEngine('sqlite::memory:');
  registry = await openRegistry(engine, { maxSchemaBytes: CASE_MAX_SCHEMA_BYTES });
});

after(async () => {
  await registry.close();
  await engine.close();
  rmSync(dir, { recursive: true, force: true });
});

registryCases('built-in', () => registry);

const record = (name: string, extra: object[] = []): object => ({
  type: 'record',
  name,
  fields: [{ name: 'id', type: 'string' }, ...extra],
});

test('built-in: the topic is single-partition, compacted, kept forever, in Confluent record format', async () => {
  const [t] = await engine.describeTopics(['_schemas']);
  assert.equal(t?.partitions.length, 1);
  assert.equal(t?.config.cleanupPolicy, 'compact');
  assert.equal(t?.config.retentionMs, null);
  const s = unique('format');
  const { id } = await registry.register(s, avro(userV1));
  const [offsets] = await engine.listOffsets('_schemas');
  const records = await engine.fetch('_schemas', 0, 0, { maxRecords: 100_000 });
  assert.equal(records.length, offsets?.end);
  const mine = records.find((r) => r.key?.toString().includes(`"subject":"${s}"`));
  assert.equal(
    mine?.key?.toString(),
    JSON.stringify({ keytype: 'SCHEMA', subject: s, version: 1, magic: 1 }),
  );
  assert.deepEqual(JSON.parse(mine?.value?.toString() ?? 'null'), {
    subject: s,
    version: 1,
    id,
    schema:
      '{"type":"record","name":"User","namespace":"com.example","fields":[{"name":"id","type":"string"}]}',
    deleted: false,
  });
});

test('built-in: canonical text keeps doc, defaults, order and custom properties in a fixed order', async () => {
  const s = unique('canonical');
  const schema = {
    fields: [
      { default: 0, name: 'n', type: { logicalType: 'timestamp-millis', type: 'long' }, doc: 'when' },
      {
        order: 'descending',
        name: 'tag',
        type: { symbols: ['A', 'B'], name: 'Tag', type: 'enum', default: 'A' },
      },
      { name: 'list', type: { items: 'string', type: 'array' }, default: [] },
      { name: 'plain', type: { type: 'string' } },
    ],
    'x-owner': { team: 'core', an: 1 },
    doc: 'an event',
    namespace: 'ns',
    name: 'Event',
    type: 'record',
  };
  const { id } = await registry.register(s, avro(schema));
  assert.equal(
    (await registry.getById(id)).schema,
    '{"type":"record","name":"Event","namespace":"ns","doc":"an event","fields":[' +
      '{"name":"n","type":{"type":"long","logicalType":"timestamp-millis"},"doc":"when","default":0},' +
      '{"name":"tag","type":{"type":"enum","name":"Tag","symbols":["A","B"],"default":"A"},"order":"descending"},' +
      '{"name":"list","type":{"type":"array","items":"string"},"default":[]},' +
      '{"name":"plain","type":"string"}],"x-owner":{"an":1,"team":"core"}}',
  );
  // A doc change is another schema (Confluent keeps doc in the identity too).
  const other = await registry.register(s, avro({ ...schema, doc: 'changed' }));
  assert.notEqual(other.id, id);
});

test('built-in: global READONLY refuses writes; a subject-level READWRITE overrides it', async () => {
  const s = unique('global-mode');
  await registry.setMode(s, 'READWRITE');
  await registry.setMode(undefined, 'READONLY');
  try {
    await rejectsWith(registry.register(unique('x'), avro(userV1)), 'EVENTLINE_ERR_REGISTRY_READONLY', 42205);
    assert.equal((await registry.register(s, avro(userV1))).version, 1);
  } finally {
    assert.equal(await registry.deleteMode(), 'READONLY');
  }
  assert.equal(await registry.getMode(), 'READWRITE');
});

test('built-in: global compatibility level applies where a subject has none', async () => {
  const s = unique('global-config');
  await registry.register(s, avro(userV1));
  await registry.setConfig(undefined, 'FORWARD');
  try {
    assert.equal(await registry.getConfig(), 'FORWARD');
    assert.equal(await registry.getConfig(s, { defaultToGlobal: true }), 'FORWARD');
    // Adding a field passes FORWARD; dropping one old readers need (no default) does not.
    const withAge = { ...userV1, fields: [...userV1.fields, { name: 'age', type: 'int' }] };
    assert.equal((await registry.register(s, avro(withAge))).version, 2);
    const onlyAge = { ...userV1, fields: [{ name: 'age', type: 'int' }] };
    await rejectsWith(registry.register(s, avro(onlyAge)), 'EVENTLINE_ERR_SCHEMA_INCOMPATIBLE', 409);
  } finally {
    assert.equal(await registry.deleteConfig(), 'FORWARD');
  }
  assert.equal(await registry.getConfig(), 'BACKWARD');
});

test('built-in: a closed registry refuses calls; its engine stays open', async () => {
  const r = await openRegistry(engine);
  await r.close();
  await assert.rejects(r.register(unique('c'), avro(userV1)), { code: 'EVENTLINE_ERR_CLOSED' });
  assert.ok((await engine.listTopics()).includes('_schemas'));
});

test('built-in: reopening on the same file keeps ids, and a hard-deleted id is never handed out again', async () => {
  const url = `sqlite:${join(dir, 'restart.db')}`;
  let e = await openEngine(url);
  let r = await openRegistry(e);
  const a = await r.register('a-value', avro(record('A')));
  const b = await r.register('b-value', avro(record('B')));
  const a2 = await r.register('a-value', avro(record('A', [{ name: 'x', type: 'int', default: 0 }])));
  await r.deleteSubject('b-value');
  await r.deleteSubject('b-value', { permanent: true });
  await r.setConfig('a-value', 'FULL');
  await r.close();
  await e.close();

  e = await openEngine(url);
  await e.runMaintenance(); // compaction drops the records the tombstones replaced
  r = await openRegistry(e);
  try {
    assert.equal((await r.getVersion('a-value', 1)).id, a.id);
    assert.equal((await r.getVersion('a-value', 'latest')).id, a2.id);
    assert.equal(await r.getConfig('a-value'), 'FULL');
    await rejectsWith(r.getById(b.id), 'EVENTLINE_ERR_SCHEMA_NOT_FOUND', 40403);
    const c = await r.register('c-value', avro(record('C')));
    assert.equal(c.id, Math.max(a.id, b.id, a2.id) + 1, 'the highest id ever given stays taken');
  } finally {
    await r.close();
    await e.close();
  }
});

test('built-in: two registries on one SQLite file converge and never give one id to two schemas', async () => {
  const url = `sqlite:${join(dir, 'shared.db')}`;
  const e1 = await openEngine(url);
  const e2 = await openEngine(url);
  const r1 = await openRegistry(e1);
  const r2 = await openRegistry(e2);
  try {
    // Different schemas on the same and on different subjects, from both sides at once. The shared
    // subject changes record name each time, so it takes any schema.
    await r1.setConfig('shared-value', 'NONE');
    await r2.sync();
    const jobs: Promise<{ schema: string; id: number; subject: string; version: number }>[] = [];
    for (let i = 0; i < 12; i++) {
      for (const [side, r] of [
        ['l', r1],
        ['r', r2],
      ] as const) {
        const schema = JSON.stringify(record(`T_${side}_${i}`));
        const subject = i % 3 === 0 ? 'shared-value' : `${side}-${i}-value`;
        jobs.push(r.register(subject, { schema }).then((res) => ({ schema, subject, ...res })));
      }
    }
    const results = await Promise.all(jobs);
    const idToSchema = new Map<number, string>();
    for (const x of results) {
      const prior = idToSchema.get(x.id);
      assert.ok(prior === undefined || prior === x.schema, `id ${x.id} given to ${prior} and ${x.schema}`);
      idToSchema.set(x.id, x.schema);
    }
    // The subject shared by both sides has distinct, dense versions.
    await r1.sync();
    await r2.sync();
    for (const r of [r1, r2]) {
      for (const x of results) {
        assert.equal(JSON.parse((await r.getById(x.id)).schema).name, JSON.parse(x.schema).name);
        assert.equal((await r.getVersion(x.subject, x.version)).id, x.id);
      }
    }
    assert.deepEqual(await r1.subjects(), await r2.subjects());
    assert.deepEqual(await r1.versions('shared-value'), await r2.versions('shared-value'));
    assert.deepEqual(await r1.versions('shared-value'), [1, 2, 3, 4, 5, 6, 7, 8], 'distinct, dense versions');
    // A write on one side shows up on the other without being asked for.
    const late = await r1.register('late-value', avro(userV2));
    await waitFor('r2 to follow r1', async () => (await r2.subjects()).includes('late-value'));
    assert.equal((await r2.getVersion('late-value', 'latest')).id, late.id);
  } finally {
    await r1.close();
    await r2.close();
    await e1.close();
    await e2.close();
  }
});

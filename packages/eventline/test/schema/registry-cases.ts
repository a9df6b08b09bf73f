/**
 * Registry semantics as one table of cases, run against the built-in registry and against
 * httpRegistry → startRegistryServer → built-in registry, so both implementations of
 * SchemaRegistry answer alike. Each case uses its own subjects.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type ErrorCode, isEventlineError } from '../../src/errors.ts';
import type { SchemaRegistry } from '../../src/schema/types.ts';
import { unique } from '../helpers.ts';

/** The registry under test; opened with `maxSchemaBytes` of {@link CASE_MAX_SCHEMA_BYTES}. */
export type RegistryTarget = () => SchemaRegistry;
export const CASE_MAX_SCHEMA_BYTES = 64 * 1024;

export const userV1 = {
  type: 'record',
  name: 'User',
  namespace: 'com.example',
  fields: [{ name: 'id', type: 'string' }],
};
export const userV2 = {
  ...userV1,
  fields: [...userV1.fields, { name: 'email', type: ['null', 'string'], default: null }],
};
/** Adds a field without a default: not BACKWARD compatible with v1. */
export const userBad = { ...userV1, fields: [...userV1.fields, { name: 'age', type: 'int' }] };

export const avro = (schema: unknown): { schema: string } => ({ schema: JSON.stringify(schema) });

/** Asserts `promise` rejects with an EventlineError of `code` and Confluent `errorCode`. */
export async function rejectsWith(
  promise: Promise<unknown>,
  code: ErrorCode,
  errorCode: number,
): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(isEventlineError(err), `expected an EventlineError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    assert.equal(err.details.errorCode, errorCode, err.message);
    return true;
  });
}

export function registryCases(label: string, target: RegistryTarget): void {
  const r = (): SchemaRegistry => target();

  test(`${label}: register gives stable ids; re-registering ignores whitespace and key order`, async () => {
    const s = unique('users-value');
    const first = await r().register(s, avro(userV1));
    assert.equal(first.version, 1);
    const reordered = JSON.stringify(
      { fields: [{ type: 'string', name: 'id' }], namespace: 'com.example', name: 'User', type: 'record' },
      null,
      2,
    );
    assert.deepEqual(await r().register(s, { schema: reordered }), first);
    assert.deepEqual(await r().versions(s), [1]);
    const byId = await r().getById(first.id);
    assert.equal(byId.schemaType, 'AVRO');
    assert.equal(
      byId.schema,
      '{"type":"record","name":"User","namespace":"com.example","fields":[{"name":"id","type":"string"}]}',
    );
    const found = await r().lookup(s, { schema: reordered });
    assert.deepEqual([found.id, found.version, found.subject], [first.id, 1, s]);
  });

  test(`${label}: the same schema under another subject reuses its id`, async () => {
    const a = await r().register(unique('a'), avro(userV1));
    const other = unique('b');
    const b = await r().register(other, avro(userV1));
    assert.equal(b.id, a.id);
    assert.equal(b.version, 1);
    assert.ok((await r().subjectsForId(a.id)).includes(other));
    assert.ok((await r().versionsForId(a.id)).some((v) => v.subject === other && v.version === 1));
  });

  test(`${label}: versions, latest and compatibility on register`, async () => {
    const s = unique('evolve');
    const v1 = await r().register(s, avro(userV1));
    const v2 = await r().register(s, avro(userV2));
    assert.equal(v2.version, 2);
    assert.notEqual(v2.id, v1.id);
    assert.equal((await r().getVersion(s, 'latest')).id, v2.id);
    assert.equal((await r().getVersion(s, 1)).id, v1.id);
    await rejectsWith(r().register(s, avro(userBad)), 'EVENTLINE_ERR_SCHEMA_INCOMPATIBLE', 409);
    const verdict = await r().testCompatibility(s, avro(userBad));
    assert.equal(verdict.compatible, false);
    assert.ok(verdict.messages.length > 0);
    assert.equal((await r().testCompatibility(s, avro(userV2), 'latest')).compatible, true);
    assert.equal((await r().testCompatibility(unique('none'), avro(userBad), 'latest')).compatible, true);
    await rejectsWith(r().testCompatibility(s, avro(userV2), 9), 'EVENTLINE_ERR_SCHEMA_NOT_FOUND', 40402);
    // With NONE on the subject, anything goes.
    await r().setConfig(s, 'NONE');
    assert.equal((await r().register(s, avro(userBad))).version, 3);
  });

  test(`${label}: not found: subject 40401, version 40402, id 40403, schema 40403`, async () => {
    const s = unique('missing');
    await rejectsWith(r().getVersion(s, 'latest'), 'EVENTLINE_ERR_SCHEMA_NOT_FOUND', 40401);
    await rejectsWith(r().versions(s), 'EVENTLINE_ERR_SCHEMA_NOT_FOUND', 40401);
    await rejectsWith(r().lookup(s, avro(userV1)), 'EVENTLINE_ERR_SCHEMA_NOT_FOUND', 40401);
    await r().register(s, avro(userV1));
    await rejectsWith(r().getVersion(s, 7), 'EVENTLINE_ERR_SCHEMA_NOT_FOUND', 40402);
    await rejectsWith(r().getById(987_654_321), 'EVENTLINE_ERR_SCHEMA_NOT_FOUND', 40403);
    await rejectsWith(r().lookup(s, avro(userV2)), 'EVENTLINE_ERR_SCHEMA_NOT_FOUND', 40403);
  });

  test(`${label}: invalid input: 42201 schema, 42202 version, 42203 level, 42204 mode, 42209 size`, async () => {
    const s = unique('invalid');
    await rejectsWith(r().register(s, { schema: '{"type":"record"' }), 'EVENTLINE_ERR_SCHEMA_INVALID', 42201);
    await rejectsWith(
      r().register(s, avro({ type: 'record', name: 'X', fields: [{ name: 'a', type: 'Nope' }] })),
      'EVENTLINE_ERR_SCHEMA_INVALID',
      42201,
    );
    await rejectsWith(
      r().register(s, { schema: '{"type":"object"}', schemaType: 'JSON' }),
      'EVENTLINE_ERR_SCHEMA_INVALID',
      42201,
    );
    await rejectsWith(r().getVersion(s, 0), 'EVENTLINE_ERR_INVALID_ARGUMENT', 42202);
    await rejectsWith(r().setConfig(s, 'SIDEWAYS' as never), 'EVENTLINE_ERR_INVALID_ARGUMENT', 42203);
    await rejectsWith(r().setMode(s, 'WRITEONLY' as never), 'EVENTLINE_ERR_INVALID_ARGUMENT', 42204);
    const big = {
      type: 'record',
      name: 'Big',
      doc: 'x'.repeat(CASE_MAX_SCHEMA_BYTES + 1),
      fields: [{ name: 'a', type: 'int' }],
    };
    await rejectsWith(r().register(s, avro(big)), 'EVENTLINE_ERR_SCHEMA_INVALID', 42209);
    assert.deepEqual(await r().schemaTypes(), ['AVRO']);
    // Nothing was stored on the way.
    await rejectsWith(r().versions(s), 'EVENTLINE_ERR_SCHEMA_NOT_FOUND', 40401);
  });

  test(`${label}: soft and hard delete of versions (40406, 40407)`, async () => {
    const s = unique('delete-version');
    const v1 = await r().register(s, avro(userV1));
    await r().register(s, avro(userV2));
    await rejectsWith(r().deleteVersion(s, 1, { permanent: true }), 'EVENTLINE_ERR_SCHEMA_NOT_FOUND', 40407);
    assert.equal(await r().deleteVersion(s, 1), 1);
    await rejectsWith(r().deleteVersion(s, 1), 'EVENTLINE_ERR_SCHEMA_NOT_FOUND', 40406);
    await rejectsWith(r().getVersion(s, 1), 'EVENTLINE_ERR_SCHEMA_NOT_FOUND', 40402);
    assert.equal((await r().getVersion(s, 1, { deleted: true })).deleted, true);
    assert.deepEqual(await r().versions(s), [2]);
    assert.deepEqual(await r().versions(s, { deleted: true }), [1, 2]);
    assert.deepEqual(await r().versions(s, { deletedOnly: true }), [1]);
    // A soft-deleted schema still decodes old data.
    assert.ok((await r().getById(v1.id)).schema.includes('User'));
    assert.equal(await r().deleteVersion(s, 1, { permanent: true }), 1);
    assert.deepEqual(await r().versions(s, { deleted: true }), [2]);
    // New versions count on from the highest ever used.
    await r().setConfig(s, 'NONE');
    assert.equal((await r().register(s, avro(userBad))).version, 3);
  });

  test(`${label}: soft and hard delete of subjects (40404, 40405)`, async () => {
    const s = unique('delete-subject');
    const { id } = await r().register(s, avro({ ...userV1, name: 'Gone' }));
    await rejectsWith(r().deleteSubject(s, { permanent: true }), 'EVENTLINE_ERR_SCHEMA_NOT_FOUND', 40405);
    assert.deepEqual(await r().deleteSubject(s), [1]);
    await rejectsWith(r().deleteSubject(s), 'EVENTLINE_ERR_SCHEMA_NOT_FOUND', 40404);
    assert.ok(!(await r().subjects()).includes(s));
    assert.ok((await r().subjects({ deleted: true })).includes(s));
    assert.ok((await r().subjects({ deletedOnly: true })).includes(s));
    await rejectsWith(r().getVersion(s, 'latest'), 'EVENTLINE_ERR_SCHEMA_NOT_FOUND', 40401);
    assert.deepEqual(await r().deleteSubject(s, { permanent: true }), [1]);
    assert.ok(!(await r().subjects({ deleted: true })).includes(s));
    await rejectsWith(r().getById(id), 'EVENTLINE_ERR_SCHEMA_NOT_FOUND', 40403);
    // Registering again starts over at version 1, with the id the schema always had.
    assert.deepEqual(await r().register(s, avro({ ...userV1, name: 'Gone' })), { id, version: 1 });
  });

  test(`${label}: subject config: 40408 unless defaultToGlobal, set and delete`, async () => {
    const s = unique('config');
    await rejectsWith(r().getConfig(s), 'EVENTLINE_ERR_SCHEMA_NOT_FOUND', 40408);
    const global = await r().getConfig();
    assert.equal(await r().getConfig(s, { defaultToGlobal: true }), global);
    assert.equal(await r().setConfig(s, 'FULL_TRANSITIVE'), 'FULL_TRANSITIVE');
    assert.equal(await r().getConfig(s), 'FULL_TRANSITIVE');
    assert.equal(await r().deleteConfig(s), 'FULL_TRANSITIVE');
    await rejectsWith(r().getConfig(s), 'EVENTLINE_ERR_SCHEMA_NOT_FOUND', 40408);
    assert.ok((await r().subjects({ prefix: s })).length === 0);
  });

  test(`${label}: READONLY on a subject refuses writes with 42205; other subjects stay writable`, async () => {
    const s = unique('readonly');
    await r().register(s, avro(userV1));
    await rejectsWith(r().getMode(s), 'EVENTLINE_ERR_SCHEMA_NOT_FOUND', 40409);
    assert.equal(await r().getMode(s, { defaultToGlobal: true }), 'READWRITE');
    await r().setMode(s, 'READONLY');
    assert.equal(await r().getMode(s), 'READONLY');
    await rejectsWith(r().register(s, avro(userV2)), 'EVENTLINE_ERR_REGISTRY_READONLY', 42205);
    await rejectsWith(r().deleteVersion(s, 1), 'EVENTLINE_ERR_REGISTRY_READONLY', 42205);
    // Reads still work, and re-registering a known schema is refused too (it is a write request).
    assert.equal((await r().getVersion(s, 'latest')).version, 1);
    await r().register(unique('writable'), avro(userV1));
    assert.equal(await r().deleteMode(s), 'READONLY');
    assert.equal((await r().register(s, avro(userV2))).version, 2);
  });

  test(`${label}: Avro named-type references`, async () => {
    const addressSubject = unique('address');
    const address = {
      type: 'record',
      name: 'Address',
      namespace: 'com.example',
      fields: [{ name: 'city', type: 'string' }],
    };
    await r().register(addressSubject, avro(address));
    const person = {
      type: 'record',
      name: 'Person',
      namespace: 'com.example',
      fields: [{ name: 'home', type: 'com.example.Address' }],
    };
    const references = [{ name: 'com.example.Address', subject: addressSubject, version: 1 }];
    const s = unique('person');
    const reg = await r().register(s, { schema: JSON.stringify(person), references });
    const got = await r().getVersion(s, 'latest');
    assert.deepEqual(got.references, references);
    assert.deepEqual((await r().getById(reg.id)).references, references);
    // Without the reference the schema does not parse; a dangling reference is refused.
    await rejectsWith(r().register(unique('p'), avro(person)), 'EVENTLINE_ERR_SCHEMA_INVALID', 42201);
    await rejectsWith(
      r().register(unique('p'), {
        schema: JSON.stringify(person),
        references: [{ name: 'com.example.Address', subject: unique('nowhere'), version: 1 }],
      }),
      'EVENTLINE_ERR_SCHEMA_INVALID',
      42201,
    );
    // The referenced version cannot be deleted while it is used (42206).
    await rejectsWith(r().deleteVersion(addressSubject, 1), 'EVENTLINE_ERR_INVALID_ARGUMENT', 42206);
    // A compatible evolution of the referencing schema checks against the resolved schema.
    const person2 = { ...person, fields: [...person.fields, { name: 'nick', type: 'string', default: '' }] };
    assert.equal((await r().register(s, { schema: JSON.stringify(person2), references })).version, 2);
  });
}

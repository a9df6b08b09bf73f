import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { SchemaRegistry as KafkajsRegistry, SchemaType } from '@kafkajs/confluent-schema-registry';
import { ConfluentSchemaRegistry } from '@platformatic/kafka';
import { openEngine } from '../../src/engine/index.ts';
import type { Engine } from '../../src/engine/types.ts';
import { httpRegistry } from '../../src/schema/http-registry.ts';
import { type BuiltInRegistry, openRegistry } from '../../src/schema/registry.ts';
import { type RegistryServer, startRegistryServer } from '../../src/schema/server.ts';
import type { SchemaRegistry } from '../../src/schema/types.ts';
import { unique } from '../helpers.ts';
import {
  avro,
  CASE_MAX_SCHEMA_BYTES,
  registryCases,
  rejectsWith,
  userBad,
  userV1,
  userV2,
} from './registry-cases.ts';

let engine: Engine;
let registry: BuiltInRegistry;
let server: RegistryServer;
let client: SchemaRegistry;

before(async () => {
  engine = await openEngine('sqlite::memory:');
  registry = await openRegistry(engine, { maxSchemaBytes: CASE_MAX_SCHEMA_BYTES });
  server = await startRegistryServer(registry, { port: 0 });
  client = httpRegistry(server.url);
});

after(async () => {
  await client.close();
  await server.close();
  await registry.close();
  await engine.close();
});

registryCases('httpRegistry → server', () => client);

const JSON_TYPE = 'application/vnd.schemaregistry.v1+json';

async function call(
  method: string,
  path: string,
  body?: unknown,
  headers: Record<string, string> = {},
  base = server.url,
): Promise<{ status: number; type: string | null; body: unknown }> {
  const res = await fetch(`${base}${path}`, {
    method,
    headers: { ...(body === undefined ? {} : { 'content-type': JSON_TYPE }), ...headers },
    ...(body === undefined ? {} : { body: typeof body === 'string' ? body : JSON.stringify(body) }),
  });
  const text = await res.text();
  let parsed: unknown = text;
  try {
    parsed = JSON.parse(text);
  } catch {}
  return { status: res.status, type: res.headers.get('content-type'), body: parsed };
}

/** Asserts a Confluent-shaped error: exactly `{error_code, message}`. */
function assertError(res: { status: number; body: unknown }, status: number, errorCode: number): void {
  assert.equal(res.status, status, JSON.stringify(res.body));
  const body = res.body as Record<string, unknown>;
  assert.deepEqual(Object.keys(body).sort(), ['error_code', 'message']);
  assert.equal(body.error_code, errorCode);
  assert.equal(typeof body.message, 'string');
}

const kjsSchema = {
  type: 'record',
  name: 'Order',
  namespace: 'com.example',
  fields: [
    { name: 'id', type: 'string' },
    { name: 'amount', type: 'long' },
  ],
};

test('@kafkajs/confluent-schema-registry: register, re-register, reject, look up, encode and decode', async () => {
  const kjs = new KafkajsRegistry({ host: server.url });
  const subject = unique('orders-value');
  const { id } = await kjs.register(
    { type: SchemaType.AVRO, schema: JSON.stringify(kjsSchema) },
    { subject },
  );
  // The client asked GET /config/{subject}, got 404, and set the level it wants.
  assert.equal(await registry.getConfig(subject), 'BACKWARD');
  const again = await kjs.register(
    { type: SchemaType.AVRO, schema: JSON.stringify(kjsSchema, null, 2) },
    { subject },
  );
  assert.equal(again.id, id);
  const bad = { ...kjsSchema, fields: [...kjsSchema.fields, { name: 'currency', type: 'string' }] };
  await assert.rejects(
    kjs.register({ type: SchemaType.AVRO, schema: JSON.stringify(bad) }, { subject }),
    (err: Error) => {
      assert.equal((err as Error & { status?: number }).status, 409);
      assert.match(err.message, /incompatible/);
      return true;
    },
  );
  assert.equal(await kjs.getLatestSchemaId(subject), id);
  assert.equal(await kjs.getRegistryId(subject, 'latest'), id);
  assert.equal(await kjs.getRegistryId(subject, 1), id);
  assert.equal(
    await kjs.getRegistryIdBySchema(subject, { type: SchemaType.AVRO, schema: JSON.stringify(kjsSchema) }),
    id,
  );
  await assert.rejects(
    kjs.getRegistryIdBySchema(subject, { type: SchemaType.AVRO, schema: JSON.stringify(userV1) }),
    /not found/i,
  );

  const order = { id: 'o-1', amount: 42 };
  const encoded = await kjs.encode(id, order);
  assert.equal(encoded[0], 0);
  assert.equal(encoded.readInt32BE(1), id);
  assert.deepEqual({ ...(await kjs.decode(encoded)) }, order);
  const fresh = new KafkajsRegistry({ host: server.url });
  assert.deepEqual({ ...(await fresh.decode(encoded)) }, order);
});

test('@platformatic/kafka ConfluentSchemaRegistry: fetches by id, serializes and deserializes', async () => {
  const subject = unique('payments-value');
  const { id } = await registry.register(subject, avro(kjsSchema));
  const pk = new ConfluentSchemaRegistry({ url: server.url, retries: 0 });
  const fetchSchema = (n: number): Promise<void> =>
    new Promise((resolve, reject) => {
      void pk.fetchSchema(n, (err) => (err ? reject(err) : resolve()));
    });
  await fetchSchema(id);
  assert.equal(pk.get(id)?.type, 'avro');
  const value = { id: 'p-1', amount: 7 };
  const message = { topic: 't', metadata: { schemas: { value: id } } };
  const buf = pk.getSerializers().value(value as never, undefined, message as never) as Buffer;
  assert.equal(buf.readInt32BE(1), id);
  const kjs = new KafkajsRegistry({ host: server.url });
  assert.deepEqual(buf, await kjs.encode(id, value));
  assert.deepEqual({ ...(pk.getDeserializers().value(buf, undefined, {} as never) as object) }, value);
  await assert.rejects(fetchSchema(999_999), /404/);
});

test('raw HTTP: success shapes and content types', async () => {
  const subject = unique('raw');
  const reg = await call('POST', `/subjects/${subject}/versions`, avro(userV1));
  assert.equal(reg.status, 200);
  assert.match(reg.type ?? '', /^application\/vnd\.schemaregistry\.v1\+json/);
  const id = (reg.body as { id: number }).id;
  assert.deepEqual(reg.body, { id });
  assert.deepEqual((await call('GET', '/')).body, {});
  assert.deepEqual((await call('GET', '/contexts')).body, ['.']);
  assert.deepEqual((await call('GET', '/schemas/types')).body, ['AVRO']);
  const byId = (await call('GET', `/schemas/ids/${id}`)).body as Record<string, unknown>;
  assert.deepEqual(Object.keys(byId), ['schema'], 'schemaType is left out for AVRO');
  assert.deepEqual((await call('GET', `/schemas/ids/${id}/schema`)).body, JSON.parse(byId.schema as string));
  // userV1 is registered under other subjects by other tests too.
  assert.ok(((await call('GET', `/schemas/ids/${id}/subjects`)).body as string[]).includes(subject));
  const uses = (await call('GET', `/schemas/ids/${id}/versions`)).body as {
    subject: string;
    version: number;
  }[];
  assert.deepEqual(
    uses.find((u) => u.subject === subject),
    { subject, version: 1 },
  );
  for (const v of ['latest', 'LATEST', '-1', '1']) {
    assert.deepEqual((await call('GET', `/subjects/${subject}/versions/${v}`)).body, {
      subject,
      version: 1,
      id,
      schema: byId.schema,
    });
  }
  assert.deepEqual((await call('GET', `/subjects/${subject}/versions`)).body, [1]);
  assert.ok(((await call('GET', `/subjects?subjectPrefix=${subject}`)).body as string[]).includes(subject));
  assert.equal(((await call('POST', `/subjects/${subject}`, avro(userV1))).body as { id: number }).id, id);
  assert.deepEqual((await call('GET', `/subjects/${subject}/versions/1/referencedby`)).body, []);
  const listed = (await call('GET', `/schemas?subjectPrefix=${subject}`)).body as { id: number }[];
  assert.deepEqual(
    listed.map((s) => s.id),
    [id],
  );
  // Every accepted content type, and none at all.
  for (const type of [
    'application/vnd.schemaregistry+json',
    'application/json',
    'application/octet-stream',
  ]) {
    const res = await call('POST', `/subjects/${subject}/versions`, avro(userV1), { 'content-type': type });
    assert.deepEqual(res.body, { id }, type);
  }
  const bare = await fetch(`${server.url}/subjects/${subject}/versions`, {
    method: 'POST',
    // Bytes: fetch would label a string text/plain.
    body: new TextEncoder().encode(JSON.stringify(avro(userV1))),
  });
  assert.deepEqual(await bare.json(), { id });
  assertError(
    await call('POST', `/subjects/${subject}/versions`, avro(userV1), { 'content-type': 'text/xml' }),
    415,
    415,
  );
  // Compatibility endpoints; messages only with verbose.
  const compat = await call('POST', `/compatibility/subjects/${subject}/versions/latest`, avro(userBad));
  assert.deepEqual(compat.body, { is_compatible: false });
  const verbose = await call(
    'POST',
    `/compatibility/subjects/${subject}/versions?verbose=true`,
    avro(userBad),
  );
  assert.equal((verbose.body as { is_compatible: boolean }).is_compatible, false);
  assert.ok(((verbose.body as { messages: string[] }).messages ?? []).length > 0);
  assert.deepEqual((await call('POST', `/compatibility/subjects/${subject}/versions/1`, avro(userV2))).body, {
    is_compatible: true,
  });
});

test('raw HTTP: config and mode shapes', async () => {
  const subject = unique('cfg');
  assertError(await call('GET', `/config/${subject}`), 404, 40408);
  assert.deepEqual((await call('GET', `/config/${subject}?defaultToGlobal=true`)).body, {
    compatibilityLevel: 'BACKWARD',
  });
  assert.deepEqual((await call('PUT', `/config/${subject}`, { compatibility: 'FULL' })).body, {
    compatibility: 'FULL',
  });
  assert.deepEqual((await call('GET', `/config/${subject}`)).body, { compatibilityLevel: 'FULL' });
  assert.deepEqual((await call('DELETE', `/config/${subject}`)).body, { compatibilityLevel: 'FULL' });
  assert.deepEqual((await call('GET', '/config')).body, { compatibilityLevel: 'BACKWARD' });
  assertError(await call('PUT', `/config/${subject}`, { compatibility: 'SIDEWAYS' }), 422, 42203);
  assertError(await call('PUT', '/config', {}), 422, 42203);
  assert.deepEqual((await call('GET', '/mode')).body, { mode: 'READWRITE' });
  assertError(await call('GET', `/mode/${subject}`), 404, 40409);
  assert.deepEqual((await call('PUT', `/mode/${subject}`, { mode: 'READONLY' })).body, { mode: 'READONLY' });
  assertError(await call('POST', `/subjects/${subject}/versions`, avro(userV1)), 422, 42205);
  assert.deepEqual((await call('DELETE', `/mode/${subject}`)).body, { mode: 'READONLY' });
  assertError(await call('PUT', '/mode', { mode: 'SIDEWAYS' }), 422, 42204);
});

test('raw HTTP: every error is {error_code, message}, and the registry stays consistent after each', async () => {
  const subject = unique('errors');
  const { id } = (await call('POST', `/subjects/${subject}/versions`, avro(userV1))).body as { id: number };
  const healthy = async (): Promise<void> => {
    const res = await call('GET', `/subjects/${subject}/versions/latest`);
    assert.equal(res.status, 200);
    assert.equal((res.body as { id: number }).id, id);
    assert.deepEqual((await call('GET', `/subjects/${subject}/versions`)).body, [1]);
  };
  const cases: [string, () => ReturnType<typeof call>, number, number][] = [
    ['unknown route', () => call('GET', '/associations/resources/x/y'), 404, 404],
    ['unknown subject', () => call('GET', `/subjects/${unique('nope')}/versions/latest`), 404, 40401],
    ['unknown version', () => call('GET', `/subjects/${subject}/versions/9`), 404, 40402],
    ['unknown id', () => call('GET', '/schemas/ids/424242'), 404, 40403],
    ['id not a number', () => call('GET', '/schemas/ids/abc'), 404, 40403],
    ['lookup miss', () => call('POST', `/subjects/${subject}`, avro(userV2)), 404, 40403],
    ['version string', () => call('GET', `/subjects/${subject}/versions/newest`), 422, 42202],
    ['version zero', () => call('GET', `/subjects/${subject}/versions/0`), 422, 42202],
    ['version too big', () => call('GET', `/subjects/${subject}/versions/2147483648`), 422, 42202],
    ['bad level', () => call('PUT', `/config/${subject}`, { compatibility: 'nope' }), 422, 42203],
    ['malformed JSON', () => call('POST', `/subjects/${subject}/versions`, '{"schema": '), 400, 400],
    ['body not an object', () => call('POST', `/subjects/${subject}/versions`, '[1]'), 400, 400],
    [
      'invalid Avro',
      () => call('POST', `/subjects/${subject}/versions`, { schema: '{"type":"recrd"}' }),
      422,
      42201,
    ],
    ['schema not a string', () => call('POST', `/subjects/${subject}/versions`, { schema: 5 }), 422, 42201],
    [
      'JSON schema type',
      () => call('POST', `/subjects/${subject}/versions`, { schema: '{}', schemaType: 'JSON' }),
      422,
      42201,
    ],
    [
      'oversized schema',
      () =>
        call(
          'POST',
          `/subjects/${subject}/versions`,
          avro({ ...userV1, doc: 'x'.repeat(CASE_MAX_SCHEMA_BYTES) }),
        ),
      422,
      42209,
    ],
    ['incompatible', () => call('POST', `/subjects/${subject}/versions`, avro(userBad)), 409, 409],
    [
      'hard delete of a live version',
      () => call('DELETE', `/subjects/${subject}/versions/1?permanent=true`),
      404,
      40407,
    ],
    [
      'hard delete of a live subject',
      () => call('DELETE', `/subjects/${subject}?permanent=true`),
      404,
      40405,
    ],
  ];
  for (const [what, run, status, code] of cases) {
    await test(what, async () => {
      assertError(await run(), status, code);
      await healthy();
    });
  }
});

test('raw HTTP: unknown query parameters are ignored', async () => {
  const subject = unique('query');
  const reg = await call('POST', `/subjects/${subject}/versions?normalize=true&whatever=1`, avro(userV1));
  const { id } = reg.body as { id: number };
  const got = await call('GET', `/subjects/${subject}/versions/1?name=com.example.User&format=resolved&x=y`);
  assert.equal((got.body as { id: number }).id, id);
  assert.deepEqual(
    Object.keys((await call('GET', `/schemas/ids/${id}?fetchMaxId=false&subject=${subject}`)).body as object),
    ['schema'],
  );
});

test('basic auth: 401 without or with wrong credentials, 200 with the right ones', async () => {
  const secured = await startRegistryServer(registry, {
    port: 0,
    basicAuth: { username: 'alice', password: 's3cret' },
  });
  try {
    const auth = (user: string, pass: string): Record<string, string> => ({
      authorization: `Basic ${Buffer.from(`${user}:${pass}`).toString('base64')}`,
    });
    assertError(await call('GET', '/subjects', undefined, {}, secured.url), 401, 401);
    assertError(await call('GET', '/subjects', undefined, auth('alice', 'wrong'), secured.url), 401, 401);
    assertError(await call('GET', '/nowhere', undefined, auth('bob', 's3cret'), secured.url), 401, 401);
    assert.equal(
      (await call('GET', '/subjects', undefined, auth('alice', 's3cret'), secured.url)).status,
      200,
    );

    const subject = unique('secured');
    const withUrl = httpRegistry(secured.url.replace('http://', 'http://alice:s3cret@'));
    assert.ok(!withUrl.description.includes('s3cret'));
    const { id } = await withUrl.register(subject, avro(userV1));
    const withOptions = httpRegistry(secured.url, { username: 'alice', password: 's3cret' });
    assert.equal((await withOptions.getById(id)).schema.includes('User'), true);
    const wrong = httpRegistry(secured.url, { username: 'alice', password: 'nope' });
    await assert.rejects(wrong.getById(id), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'EVENTLINE_ERR_NOT_AUTHORIZED');
      assert.ok(!err.message.includes('nope'));
      return true;
    });
    const kjs = new KafkajsRegistry({ host: secured.url, auth: { username: 'alice', password: 's3cret' } });
    assert.equal(await kjs.getLatestSchemaId(subject), id);
  } finally {
    await secured.close();
  }
});

test('httpRegistry: a registry that cannot be reached is EVENTLINE_ERR_REGISTRY, retryable', async () => {
  const gone = await startRegistryServer(registry, { port: 0 });
  const url = gone.url;
  await gone.close();
  const r = httpRegistry(url, { timeoutMs: 2000 });
  await assert.rejects(r.getById(1), (err: Error & { code?: string; retryable?: boolean }) => {
    assert.equal(err.code, 'EVENTLINE_ERR_REGISTRY');
    assert.equal(err.retryable, true);
    return true;
  });
  await rejectsWith(client.getVersion(unique('x'), 'latest'), 'EVENTLINE_ERR_SCHEMA_NOT_FOUND', 40401);
});

test('httpRegistry: getById is cached (ids are immutable): it answers after the server is gone', async () => {
  const own = await startRegistryServer(registry, { port: 0 });
  const r = httpRegistry(own.url, { timeoutMs: 2000 });
  const { id } = await r.register(unique('cache'), avro({ ...userV1, name: 'Cached' }));
  const first = await r.getById(id);
  await own.close();
  assert.equal(await r.getById(id), first, 'served from the cache');
  await assert.rejects(r.getById(id + 1000), (err: Error & { code?: string }) => {
    assert.equal(err.code, 'EVENTLINE_ERR_REGISTRY', 'an id not in the cache needs the server');
    return true;
  });
});

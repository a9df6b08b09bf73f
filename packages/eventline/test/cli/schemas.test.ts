import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, describe, test } from 'node:test';
import { SchemaRegistry, SchemaType } from '@kafkajs/confluent-schema-registry';
import { connect } from '../../src/client.ts';
import { avro } from '../../src/schema/avro.ts';
import { defineTopic } from '../../src/topic.ts';
import { type Run, startScript } from '../helpers.ts';
import { TASK_CREATED } from '../schema/fixtures.ts';
import { jsonLines } from './suite.ts';

const BIN = new URL('../../bin/eventline.mjs', import.meta.url).pathname;
const SUBJECT = 'task.created-value';

const withField = (field: object): object => ({ ...TASK_CREATED, fields: [...TASK_CREATED.fields, field] });

const dir = mkdtempSync(join(tmpdir(), 'eventline-cli-schemas-'));
const children = new Set<ChildProcess>();
after(() => {
  // Only the registry servers this file started, should a test have failed before stopping one.
  for (const child of children)
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});

function file(name: string, content: string | object): string {
  const path = join(dir, name);
  writeFileSync(path, typeof content === 'string' ? content : JSON.stringify(content, null, 2));
  return path;
}

const TASK = file('task-created.avsc', TASK_CREATED);
// Adds an optional field: readable both ways.
const TASK_V2 = file(
  'task-created-v2.avsc',
  withField({ name: 'assigneeId', type: ['null', 'string'], default: null }),
);
// Adds a required field: the new schema cannot read what version 1 wrote.
const TASK_BAD = file('task-created-bad.avsc', withField({ name: 'country', type: 'string' }));
const MALFORMED = file('malformed.avsc', '{"type": "record", "name": ');
const NOT_AVRO = file('not-avro.avsc', { type: 'record', name: 'NoFields' });

/** The environment of a child: no registry or credentials leaking in from the caller's. */
function childEnv(engineUrl: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, EVENTLINE_URL: engineUrl };
  delete env.EVENTLINE_REGISTRY_URL;
  delete env.EVENTLINE_REGISTRY_USER;
  delete env.EVENTLINE_REGISTRY_PASSWORD;
  return env;
}

function run(engineUrl: string, args: string[]): Promise<Run> {
  const started = startScript(BIN, args, { env: childEnv(engineUrl), input: '' });
  children.add(started.child);
  return started.result();
}

/** Asserts a failure: its exit code and one line on stderr matching `message`. */
function assertFails(res: Run, code: number, message: RegExp, what: string): void {
  assert.equal(res.code, code, `${what}: ${res.stderr}`);
  assert.match(res.stderr, message, what);
  assert.equal(res.stderr.trim().split('\n').length, 1, `one line for: ${what}`);
}

describe('eventline schemas on the built-in registry of a sqlite file', () => {
  const engineUrl = `sqlite:${join(dir, 'events.db')}`;
  const cli = (...args: string[]): Promise<Run> => run(engineUrl, args);
  let id = 0;

  test('register stores a schema file; registering it again gives the same id and version', async () => {
    const first = await cli('schemas', 'register', SUBJECT, TASK);
    assert.equal(first.code, 0, first.stderr);
    const m = /^registered task\.created-value version 1, schema id (\d+)\n$/.exec(first.stdout);
    assert.ok(m, first.stdout);
    id = Number(m[1]);
    const again = await cli('schemas', 'register', SUBJECT, TASK, '--json');
    assert.equal(again.code, 0, again.stderr);
    assert.deepEqual(jsonLines(again.stdout), [{ subject: SUBJECT, id, version: 1 }]);
  });

  test('list prints a table, or one JSON line per subject', async () => {
    const human = await cli('schemas', 'list');
    assert.equal(human.code, 0, human.stderr);
    assert.match(human.stdout, /^SUBJECT {13}VERSIONS {2}LATEST {2}ID\n/);
    assert.match(human.stdout, new RegExp(`\ntask\\.created-value {2}1 {9}1 {7}${id}\n$`));
    const json = await cli('schemas', 'list', '--json');
    assert.deepEqual(jsonLines(json.stdout), [{ subject: SUBJECT, versions: [1], latestId: id }]);
    const none = await cli('schemas', 'list', '--prefix', 'user.');
    assert.equal(none.stdout, 'no subjects in the built-in registry\n');
  });

  test('get prints the latest version, or the one asked for', async () => {
    const latest = await cli('schemas', 'get', SUBJECT);
    assert.equal(latest.code, 0, latest.stderr);
    const [head, ...body] = latest.stdout.split('\n');
    assert.equal(head, `subject ${SUBJECT}   version 1   id ${id}   type AVRO`);
    const schema = JSON.parse(body.join('\n')) as typeof TASK_CREATED;
    assert.equal(schema.name, 'TaskCreatedEvent');
    assert.deepEqual(
      schema.fields.map((f) => f.name),
      TASK_CREATED.fields.map((f) => f.name),
    );
    const [v1] = jsonLines((await cli('schemas', 'get', SUBJECT, '--version', '1', '--json')).stdout);
    assert.deepEqual(
      { ...v1, schema: JSON.parse(v1!.schema as string).namespace },
      { subject: SUBJECT, version: 1, id, schemaType: 'AVRO', schema: 'com.todoapp.events' },
    );
  });

  test('check exits 0 for a compatible file and 1, naming the field and the rule, for an incompatible one', async () => {
    const ok = await cli('schemas', 'check', SUBJECT, TASK_V2);
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal(ok.stdout, `compatible with ${SUBJECT}\n`);
    const okJson = await cli('schemas', 'check', SUBJECT, TASK_V2, '--version', '1', '--json');
    assert.deepEqual(jsonLines(okJson.stdout), [{ subject: SUBJECT, compatible: true, messages: [] }]);
    const bad = await cli('schemas', 'check', SUBJECT, TASK_BAD);
    assert.equal(bad.code, 1, bad.stderr);
    assert.match(
      bad.stdout,
      /^incompatible with task\.created-value:\n {2}- READER_FIELD_MISSING_DEFAULT_VALUE .*version 1.*'country'.*no default/,
    );
  });

  test('register refuses an incompatible file with EVENTLINE_ERR_SCHEMA_INCOMPATIBLE and keeps the subject as it was', async () => {
    const res = await cli('schemas', 'register', SUBJECT, TASK_BAD);
    assertFails(
      res,
      1,
      /^eventline: error: .*incompatible.*READER_FIELD_MISSING_DEFAULT_VALUE.*'country'.*\[EVENTLINE_ERR_SCHEMA_INCOMPATIBLE\]\n$/,
      'register incompatible',
    );
    const [listed] = jsonLines((await cli('schemas', 'list', '--json')).stdout);
    assert.deepEqual(listed?.versions, [1]);
  });

  test('config shows the global level and a subject level, and sets one', async () => {
    assert.equal((await cli('schemas', 'config')).stdout, 'global: BACKWARD\n');
    assert.deepEqual(jsonLines((await cli('schemas', 'config', SUBJECT, '--json')).stdout), [
      { subject: SUBJECT, compatibilityLevel: 'BACKWARD', inherited: true },
    ]);
    const set = await cli('schemas', 'config', SUBJECT, '--set', 'FULL');
    assert.equal(set.code, 0, set.stderr);
    assert.equal(set.stdout, `subject ${SUBJECT}: FULL\n`);
    assert.deepEqual(jsonLines((await cli('schemas', 'config', SUBJECT, '--json')).stdout), [
      { subject: SUBJECT, compatibilityLevel: 'FULL', inherited: false },
    ]);
    assert.deepEqual(jsonLines((await cli('schemas', 'config', '--json')).stdout), [
      { subject: null, compatibilityLevel: 'BACKWARD', inherited: false },
    ]);
    assertFails(
      await cli('schemas', 'config', '--set', 'SOMETIMES'),
      2,
      /^eventline: usage: --set needs one of NONE, BACKWARD, .*FULL_TRANSITIVE, got "SOMETIMES"/,
      'config --set SOMETIMES',
    );
    // Under FULL the optional field is still fine, so it becomes version 2.
    const v2 = await cli('schemas', 'register', SUBJECT, TASK_V2, '--json');
    assert.equal(v2.code, 0, v2.stderr);
    assert.equal(jsonLines(v2.stdout)[0]?.version, 2);
  });

  test('codegen writes TypeScript from a file to --out, and from a registered subject to stdout', async () => {
    const out = join(dir, 'events.ts');
    const fromFile = await cli('schemas', 'codegen', TASK, '--out', out);
    assert.equal(fromFile.code, 0, fromFile.stderr);
    assert.equal(fromFile.stdout, '');
    assert.equal(fromFile.stderr, `wrote ${out}\n`);
    const source = readFileSync(out, 'utf8');
    assert.match(
      source,
      /^\/\/ Generated by `eventline schemas codegen` from .*task-created\.avsc\. Do not edit\./,
    );
    assert.match(source, /\nexport interface TaskCreatedEvent \{\n/);
    assert.match(source, /\nexport type Priority = 'CRITICAL' \| 'HIGH' \| 'MEDIUM' \| 'LOW';\n/);
    assert.match(source, /\nexport const TaskCreatedEventSchema = \{/);
    assert.doesNotMatch(source, /assigneeId/);

    const fromSubject = await cli('schemas', 'codegen', '--subject', SUBJECT);
    assert.equal(fromSubject.code, 0, fromSubject.stderr);
    assert.match(fromSubject.stdout, /from task\.created-value\. Do not edit\./);
    assert.match(fromSubject.stdout, /\nexport interface TaskCreatedEvent \{\n/);
    assert.match(fromSubject.stdout, /assigneeId\?: null \| string;/, 'the latest version (2) is used');
  });

  test('bad inputs are one clear line: exit 1 for what is wrong, 2 for usage', async () => {
    const missing = join(dir, 'missing.avsc');
    const cases: [string[], number, RegExp][] = [
      [['schemas', 'register', SUBJECT, missing], 2, /cannot read .*missing\.avsc: ENOENT/],
      [['schemas', 'check', SUBJECT, missing], 2, /cannot read .*missing\.avsc/],
      [['schemas', 'codegen', missing], 2, /cannot read .*missing\.avsc/],
      [
        ['schemas', 'register', SUBJECT, MALFORMED],
        1,
        /malformed\.avsc is not JSON: .*\[EVENTLINE_ERR_SCHEMA_INVALID\]\n$/,
      ],
      [['schemas', 'check', SUBJECT, MALFORMED], 1, /malformed\.avsc is not JSON/],
      [['schemas', 'codegen', MALFORMED], 1, /malformed\.avsc is not JSON/],
      [
        ['schemas', 'register', 'no-fields', NOT_AVRO],
        1,
        /not-avro\.avsc: .*\[EVENTLINE_ERR_SCHEMA_INVALID\]\n$/,
      ],
      [['schemas', 'codegen', NOT_AVRO], 1, /NoFields.*fields.*\[EVENTLINE_ERR_SCHEMA_INVALID\]\n$/],
      [
        ['schemas', 'get', 'task.missing-value'],
        1,
        /task\.missing-value.*not found.*\[EVENTLINE_ERR_SCHEMA_NOT_FOUND\]\n$/,
      ],
      [
        ['schemas', 'get', SUBJECT, '--version', '9'],
        1,
        /Version 9 not found.*EVENTLINE_ERR_SCHEMA_NOT_FOUND/,
      ],
      [['schemas', 'codegen', '--subject', 'task.missing-value'], 1, /EVENTLINE_ERR_SCHEMA_NOT_FOUND/],
      [['schemas', 'get', SUBJECT, '--version', 'first'], 2, /--version needs a version number or 'latest'/],
      [['schemas', 'codegen'], 2, /give schema files or --subject/],
      [['schemas', 'register', SUBJECT], 2, /expected: eventline schemas register SUBJECT FILE/],
      [['registry', '--user', 'u'], 2, /give both --user and --password/],
    ];
    for (const [args, code, message] of cases) {
      assertFails(await cli(...args), code, message, args.join(' '));
    }
  });
});

interface Server {
  child: ChildProcess;
  url: string;
  /** `host:port`, for URLs with credentials. */
  authority: string;
}

/** Starts `eventline registry --port 0 --json` and reads the URL from its first line. */
async function startServer(engineUrl: string, extra: string[] = []): Promise<Server> {
  const args = [BIN, 'registry', '--port', '0', '--json', '--url', engineUrl, ...extra];
  const child = spawn(process.execPath, args, {
    env: childEnv(engineUrl),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(child);
  let stderr = '';
  child.stderr.on('data', (d) => {
    stderr += d;
  });
  const lines = createInterface({ input: child.stdout });
  const exited = once(child, 'exit').then(([code]) => {
    throw new Error(`eventline registry exited with ${code} before printing its URL: ${stderr}`);
  });
  const [first] = (await Promise.race([once(lines, 'line'), exited])) as [string];
  lines.close();
  const line = JSON.parse(first) as { url: string; engine: string; auth: boolean };
  assert.equal(line.engine, engineUrl);
  assert.equal(line.auth, extra.includes('--user'));
  return { child, url: line.url, authority: new URL(line.url).host };
}

/** Stops a server the way Ctrl-C does; it must exit 0. */
async function stopServer(server: Server): Promise<void> {
  const exited = once(server.child, 'exit');
  server.child.kill('SIGINT');
  const [code, signal] = (await exited) as [number | null, NodeJS.Signals | null];
  assert.deepEqual({ code, signal }, { code: 0, signal: null }, 'eventline registry exits 0 on SIGINT');
}

describe('eventline registry', () => {
  test("serves the sqlite file's registry to a Confluent client and to schemas --registry", {
    timeout: 30_000,
  }, async () => {
    const engineUrl = `sqlite:${join(dir, 'served.db')}`;
    const server = await startServer(engineUrl);
    const client = new SchemaRegistry({ host: server.url });
    const { id } = await client.register(
      { type: SchemaType.AVRO, schema: JSON.stringify(TASK_CREATED) },
      { subject: SUBJECT },
    );
    assert.equal(await client.getLatestSchemaId(SUBJECT), id);
    const encoded = await client.encode(id, {
      eventId: 'e1',
      eventTimestamp: 1,
      userId: 'u',
      taskId: 't',
      title: 'x',
    });
    assert.equal((await client.decode(encoded)).title, 'x');

    const listed = await run(engineUrl, ['schemas', 'list', '--registry', server.url, '--json']);
    assert.equal(listed.code, 0, listed.stderr);
    assert.deepEqual(jsonLines(listed.stdout), [{ subject: SUBJECT, versions: [1], latestId: id }]);
    // Options may come before the command words.
    const got = await run(engineUrl, ['--registry', server.url, 'schemas', 'get', SUBJECT, '--json']);
    assert.equal(got.code, 0, got.stderr);
    assert.equal(jsonLines(got.stdout)[0]?.id, id);
    // Stored in the file's _schemas topic: the CLI on the file itself sees it, no server involved.
    const local = await run(engineUrl, ['schemas', 'list', '--json']);
    assert.deepEqual(jsonLines(local.stdout), [{ subject: SUBJECT, versions: [1], latestId: id }]);
    const topics = await run(engineUrl, ['topics', 'list', '--json']);
    assert.ok(
      jsonLines(topics.stdout).some((t) => t.topic === '_schemas'),
      topics.stdout,
    );

    // Regression: a failed listen used to leave the registry open and the process running.
    const inUse = await run(engineUrl, ['registry', '--port', new URL(server.url).port]);
    assertFails(inUse, 1, /EADDRINUSE/, 'registry on a port in use');

    await stopServer(server);
  });

  test('with --user and --password, requests need basic auth', async () => {
    const engineUrl = `sqlite:${join(dir, 'served-auth.db')}`;
    const server = await startServer(engineUrl, ['--user', 'u', '--password', 'p']);
    const anonymous = await fetch(`${server.url}/subjects`);
    assert.equal(anonymous.status, 401);
    await anonymous.body?.cancel();
    const authorized = await fetch(`${server.url}/subjects`, {
      headers: { authorization: `Basic ${Buffer.from('u:p').toString('base64')}` },
    });
    assert.equal(authorized.status, 200);
    assert.deepEqual(await authorized.json(), []);

    const client = new SchemaRegistry({ host: server.url, auth: { username: 'u', password: 'p' } });
    const { id } = await client.register(
      { type: SchemaType.AVRO, schema: JSON.stringify(TASK_CREATED) },
      { subject: SUBJECT },
    );

    const withAuth = await run(engineUrl, [
      'schemas',
      'list',
      '--registry',
      `http://u:p@${server.authority}`,
    ]);
    assert.equal(withAuth.code, 0, withAuth.stderr);
    assert.match(withAuth.stdout, new RegExp(`\ntask\\.created-value {2}1 {9}1 {7}${id}\n$`));
    assertFails(
      await run(engineUrl, ['schemas', 'list', '--registry', server.url]),
      1,
      /EVENTLINE_ERR_NOT_AUTHORIZED/,
      'list without credentials',
    );
    const wrong = await run(engineUrl, [
      'schemas',
      'list',
      '--registry',
      `http://u:nope@${server.authority}`,
    ]);
    assert.equal(wrong.code, 1);
    assert.doesNotMatch(wrong.stderr, /nope/, 'the password is never printed');

    await stopServer(server);
  });
});

test('consume --value-format avro prints Avro values as JSON, and undecodable ones as bytes with the reason', async () => {
  const url = `sqlite:${join(dir, 'consume-avro.db')}`;
  const bus = await connect(url);
  const typed = defineTopic('avro.people', {
    value: avro({
      type: 'record',
      name: 'Person',
      fields: [
        { name: 'name', type: 'string' },
        { name: 'big', type: 'long' },
      ],
    } as const),
  });
  try {
    await bus.ensureTopics([typed]);
    await bus.publish(typed, { name: 'ann', big: 2n ** 60n });
    await bus.publish(defineTopic('avro.people'), { not: 'avro' });
  } finally {
    await bus.close();
  }
  const r = await run(url, [
    'consume',
    'avro.people',
    '--from-beginning',
    '--max',
    '2',
    '--json',
    '--value-format',
    'avro',
  ]);
  assert.equal(r.code, 0, r.stderr);
  const [first, second] = r.stdout
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { value: unknown; valueFormat?: string });
  assert.deepEqual(first!.value, { name: 'ann', big: '1152921504606846976' });
  assert.equal(first!.valueFormat, 'avro');
  assert.equal(second!.value, '{"not":"avro"}');
  assert.match(
    r.stderr,
    /avro\.people\/0@1: .*first byte is 123, not the schema registry magic byte 0 .*; printed as bytes/,
  );
});

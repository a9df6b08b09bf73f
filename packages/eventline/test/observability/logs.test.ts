import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import { connect } from '../../src/client.ts';
import { json } from '../../src/codec.ts';
import { isEventlineError } from '../../src/errors.ts';
import { createLogger } from '../../src/observability/logger.ts';
import { createView } from '../../src/patterns/view.ts';
import { avro } from '../../src/schema/avro.ts';
import { startRegistryServer } from '../../src/schema/server.ts';
import { defineTopic } from '../../src/topic.ts';
import { gatedJson } from '../conformance/cases/views.ts';
import { unique, waitFor } from '../helpers.ts';
import { captureLogs, type LogLine } from './log-capture.ts';

const find = (lines: readonly LogLine[], msg: string, match: (l: LogLine) => boolean = () => true) =>
  lines.filter((l) => l.msg === msg && match(l));

test('joins, rebalances, retries and dead letters are logged with their fields', async () => {
  const { logger, lines } = captureLogs();
  const bus = await connect('sqlite::memory:', { logger, clientId: 'logs-test' });
  try {
    assert.deepEqual(
      find(lines, 'connected').map((l) => [l.level, l.engine, l.kind, l.clientId]),
      [['info', 'sqlite::memory:', 'sqlite', 'logs-test']],
    );
    const topic = defineTopic(unique('payments'), { value: json<{ n: number }>(), partitions: 2 });
    await bus.ensureTopics([topic]);
    const group = unique('ledger');
    const failure = Object.assign(new Error('ledger down'), { code: 'E_LEDGER' });
    const options = {
      group,
      topics: [topic],
      fromBeginning: true,
      sessionTimeout: '2s',
      retry: { attempts: 2, initialDelay: '20ms' },
      handler: () => {
        throw failure;
      },
    } as const;
    const first = bus.subscribe(options);
    await first.ready();
    const memberId = (first as unknown as { memberId: string }).memberId;
    const joined = find(lines, 'joined consumer group');
    assert.deepEqual(
      joined.map((l) => [l.level, l.group, l.memberId, l.topics]),
      [['info', group, memberId, [topic.name]]],
    );
    const assigned = await waitFor(
      'the first assignment',
      () => find(lines, 'partitions assigned', (l) => l.memberId === memberId)[0],
    );
    assert.equal(assigned.level, 'info');
    assert.equal(assigned.group, group);
    assert.deepEqual(assigned.partitions, [`${topic.name}/0`, `${topic.name}/1`]);

    // A second member: the first gives up a partition, and each side says so.
    const second = bus.subscribe(options);
    await second.ready();
    const secondId = (second as unknown as { memberId: string }).memberId;
    const revoked = await waitFor(
      'a revocation',
      () => find(lines, 'partitions revoked', (l) => l.memberId === memberId)[0],
    );
    assert.equal(revoked.level, 'info');
    assert.equal(revoked.group, group);
    assert.ok((revoked.partitions as string[]).length > 0);
    await waitFor('the second member assigned a partition', () =>
      find(
        lines,
        'partitions assigned',
        (l) => l.memberId === secondId && (l.partitions as string[]).length === 1,
      ),
    );

    const [published] = await bus.publishBatch(topic, [{ value: { n: 1 }, partition: 0 }]);
    const deadLetter = await waitFor(
      'the dead-letter line',
      () => find(lines, 'record sent to the dead-letter topic')[0],
    );
    const [retry, ...moreRetries] = find(lines, 'delivery failed; will retry');
    assert.equal(moreRetries.length, 0, 'one retry line: attempt 1 of 2');
    assert.deepEqual(
      {
        level: retry!.level,
        group: retry!.group,
        topic: retry!.topic,
        partition: retry!.partition,
        offset: retry!.offset,
        attempt: retry!.attempt,
        errorCode: retry!.errorCode,
        message: (retry!.err as { message: string }).message,
      },
      {
        level: 'info',
        group,
        topic: topic.name,
        partition: 0,
        offset: published!.offset,
        attempt: 1,
        errorCode: 'E_LEDGER',
        message: 'ledger down',
      },
    );
    assert.equal(typeof retry!.retryInMs, 'number');
    assert.deepEqual(
      {
        level: deadLetter.level,
        group: deadLetter.group,
        topic: deadLetter.topic,
        partition: deadLetter.partition,
        offset: deadLetter.offset,
        attempt: deadLetter.attempt,
        deadLetter: deadLetter.deadLetter,
        errorCode: deadLetter.errorCode,
      },
      {
        level: 'warn',
        group,
        topic: topic.name,
        partition: 0,
        offset: published!.offset,
        attempt: 2,
        deadLetter: `dlq.${group}.${topic.name}`,
        errorCode: 'E_LEDGER',
      },
    );

    await second.stop();
    assert.deepEqual(
      find(lines, 'left consumer group').map((l) => [l.group, l.memberId]),
      [[group, secondId]],
    );
    await first.stop();
  } finally {
    await bus.close();
  }
  assert.equal(find(lines, 'connection closed').length, 1);
});

test('a view answering from its fallback logs once per burst, not once per lookup', async () => {
  const { logger, lines } = captureLogs();
  const bus = await connect('sqlite::memory:', { logger });
  try {
    // Decoding is held, so the view stays loading until the gate opens.
    const gated = gatedJson<number>();
    const topic = defineTopic(unique('prices'), { value: gated.codec, cleanupPolicy: 'compact' });
    await bus.ensureTopics([topic]);
    await bus.publish(topic, 7, { key: 'a' });
    const view = createView(bus, topic, { fallback: async (key) => key.length });
    for (const key of ['a', 'bb', 'ccc']) assert.equal(await view.getOrLoad(key), key.length);
    assert.equal(view.isReady, false);
    gated.open();
    await view.ready();
    assert.equal(await view.getOrLoad('a'), 7);
    assert.deepEqual(
      lines.filter((l) => l.msg.includes('fallback')).map((l) => [l.level, l.msg, l.topic, l.fallbackUses]),
      [
        ['info', 'view not ready: getOrLoad answers from the fallback loader', topic.name, 1],
        ['info', 'view ready: fallback lookups end', topic.name, 3],
      ],
    );
    await view.close();
  } finally {
    await bus.close();
  }
});

test('credentials in engine and registry URLs, SASL settings and errors never reach the log', async () => {
  const { logger, raw, lines } = captureLogs();
  const secrets = ['kafka-secret-pw', 'reg-secret-pw', 'db-secret-pw', 'sasl-secret-pw'];

  // A Kafka URL with credentials, to a port nothing listens on: connecting is logged and fails.
  const refused = await connect('kafka://app:kafka-secret-pw@127.0.0.1:1', {
    logger,
    kafka: { connectTimeoutMs: 500 },
  }).catch((e: unknown) => e);
  assert.ok(isEventlineError(refused), String(refused));
  assert.deepEqual(
    lines.filter((l) => l.msg.startsWith('connect')).map((l) => [l.msg, l.url]),
    [
      ['connecting', 'kafka://app:***@127.0.0.1:1'],
      ['connect failed', 'kafka://app:***@127.0.0.1:1'],
    ],
  );

  // A registry behind basic auth, its credentials in the URL.
  const registryHost = await connect('sqlite::memory:', { logger });
  const server = await startRegistryServer(await registryHost.registry(), {
    port: 0,
    basicAuth: { username: 'reg-user', password: 'reg-secret-pw' },
  });
  const bus = await connect('sqlite::memory:', {
    logger,
    registry: { url: server.url.replace('http://', 'http://reg-user:reg-secret-pw@') },
  });
  try {
    const topic = defineTopic(unique('users'), {
      value: avro({ type: 'record', name: 'User', fields: [{ name: 'name', type: 'string' }] }),
    });
    await bus.ensureTopics([topic]);
    await bus.publish(topic, { name: 'ada' });
    assert.equal(find(lines, 'schema registry ready', (l) => l.registry === server.url).length, 1);

    // A handler error naming a database URL with its password, and a caller logging its settings.
    const group = unique('mailer');
    const sub = bus.subscribe({
      group,
      topics: [topic],
      fromBeginning: true,
      retry: { attempts: 1 },
      deadLetter: false,
      handler: () => {
        throw new Error('cannot reach postgres://mailer:db-secret-pw@db.internal:5432/mail');
      },
    });
    await waitFor('the dropped record', () => find(lines, 'record dropped after its last attempt')[0]);
    await sub.stop();
    logger.warn(
      {
        kafka: { sasl: { mechanism: 'PLAIN', username: 'app', password: 'sasl-secret-pw' } },
        registry: {
          url: 'http://reg-user:reg-secret-pw@registry:8081',
          username: 'reg-user',
          password: 'reg-secret-pw',
        },
        headers: { authorization: `Basic ${Buffer.from('reg-user:reg-secret-pw').toString('base64')}` },
      },
      'settings of http://reg-user:reg-secret-pw@registry:8081',
    );
  } finally {
    await bus.close();
    await server.close();
    await registryHost.close();
  }

  const dropped = find(lines, 'record dropped after its last attempt')[0]!;
  assert.equal(
    (dropped.err as { message: string }).message,
    'cannot reach postgres://mailer:***@db.internal:5432/mail',
  );
  assert.equal(find(lines, 'settings of http://reg-user:***@registry:8081').length, 1);
  const all = raw.join('');
  const basic = Buffer.from('reg-user:reg-secret-pw').toString('base64');
  for (const secret of [...secrets, basic]) assert.ok(!all.includes(secret), `${secret} was logged`);
  assert.ok(all.includes('"password":"[redacted]"'));
  assert.ok(all.includes('"authorization":"[redacted]"'));
});

test('the default logger writes JSON lines to stderr at warn, EVENTLINE_LOG_LEVEL changes it', () => {
  const script = `
    import { createLogger } from ${JSON.stringify(new URL('../../src/observability/logger.ts', import.meta.url).href)};
    const log = createLogger();
    log.info({ topic: 't' }, 'an info line');
    log.warn({ topic: 't', password: 'pw-in-child' }, 'a warn line');
  `;
  const run = (level: string | undefined) => {
    const env = { ...process.env };
    delete env.EVENTLINE_LOG_LEVEL;
    if (level !== undefined) env.EVENTLINE_LOG_LEVEL = level;
    const out = spawnSync(process.execPath, ['--input-type=module', '-e', script], { env, encoding: 'utf8' });
    assert.equal(out.stdout, '');
    return out;
  };
  const quiet = run(undefined);
  assert.equal(quiet.status, 0, quiet.stderr);
  const [line, ...rest] = quiet.stderr.trim().split('\n');
  assert.equal(rest.length, 0, quiet.stderr);
  const parsed = JSON.parse(line!) as LogLine;
  assert.deepEqual(
    [parsed.level, parsed.msg, parsed.topic, parsed.password],
    ['warn', 'a warn line', 't', '[redacted]'],
  );
  assert.match(String(parsed.time), /^\d{4}-\d\d-\d\dT/);
  assert.equal(run('info').stderr.trim().split('\n').length, 2);

  const bad = run('loud');
  assert.notEqual(bad.status, 0);
  assert.match(bad.stderr, /EVENTLINE_LOG_LEVEL must be one of debug, info, warn, error, silent; got "loud"/);
  assert.throws(() => createLogger({ level: 'verbose' as 'info' }), /level must be one of/);
});

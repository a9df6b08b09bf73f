/**
 * The setup command (the seed's `setup_kafka`), run as a process: `--register-schemas-only`,
 * `--publish-only`, both steps by default, and bad arguments.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { connect } from 'eventline';
import { captureLogger, type Run, runScript, tempDir, unique } from '../../shared/test/helpers.ts';
import { catalogueTopics } from '../src/events.ts';
import { startQuestionService } from '../src/question-service.ts';
import { SEED_QUESTIONS } from '../src/seed-data.ts';

const SETUP = new URL('../src/setup.ts', import.meta.url);
const temp = tempDir('catalogue-setup');
after(() => temp.remove());

const runSetup = (args: string[], env: Record<string, string>): Promise<Run> =>
  runScript(SETUP.pathname, args, {
    cwd: temp.dir,
    env: { ...process.env, EVENTLINE_LOG_LEVEL: 'error', ...env },
  });

test('--register-schemas-only registers the two schemas and nothing else', async () => {
  const engine = `sqlite:${join(temp.dir, `${unique('schemas')}.db`)}`;
  const r = await runSetup(['--register-schemas-only'], { EVENTLINE_URL: engine });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /schema topics\.updated-value: id \d+, version 1 \(built-in\)/);
  assert.match(r.stdout, /schema difficulties\.updated-value: id \d+, version 1/);
  const bus = await connect(engine);
  try {
    assert.deepEqual((await (await bus.registry()).subjects()).sort(), [
      'difficulties.updated-value',
      'topics.updated-value',
    ]);
    // No topic was created and nothing published.
    assert.deepEqual(
      (await bus.admin.listTopics()).filter((t) => !t.startsWith('_')),
      [],
    );
  } finally {
    await bus.close();
  }
});

test('--publish-only publishes the lists held in the question database; no flag does both steps', async () => {
  const engine = `sqlite:${join(temp.dir, `${unique('publish')}.db`)}`;
  const database = `sqlite:${join(temp.dir, `${unique('questions')}.db`)}`;
  const env = { EVENTLINE_URL: engine, DATABASE_URL: database };
  // A new database has no questions: the lists are published empty.
  const first = await runSetup([], env);
  assert.equal(first.code, 0, first.stderr);
  assert.match(first.stdout, /topic topics\.updated: create/);
  assert.match(first.stdout, /schema topics\.updated-value: id \d+/);
  assert.match(first.stdout, /published topics\.updated: version 1, 0 item\(s\)/);

  // The question service fills the database (seed questions) and publishes version 2 at start-up.
  const qs = await startQuestionService({
    port: 0,
    eventlineUrl: engine,
    databaseUrl: database,
    logger: captureLogger(),
  });
  await qs.close();
  const second = await runSetup(['--publish-only'], env);
  assert.equal(second.code, 0, second.stderr);
  assert.doesNotMatch(second.stdout, /schema/);
  const topicsCount = new Set(SEED_QUESTIONS.map((q) => q.topic)).size;
  assert.match(
    second.stdout,
    new RegExp(`published topics\\.updated: version 3, ${topicsCount} item\\(s\\): Arrays, `),
  );

  const bus = await connect(engine);
  try {
    const topics = catalogueTopics();
    const records = await bus.reader.read(topics.topics, { partition: 0, from: 'earliest', max: 10 });
    assert.deepEqual(
      records.map((r) => [r.value?.version, r.value?.topics.length]),
      [
        [1, 0],
        [2, topicsCount],
        [3, topicsCount],
      ],
    );
  } finally {
    await bus.close();
  }
});

test('bad arguments exit with 2 and say what was wrong', async () => {
  const both = await runSetup(['--register-schemas-only', '--publish-only'], {});
  assert.equal(both.code, 2);
  assert.match(both.stderr, /cannot be combined/);
  const unknown = await runSetup(['--schemas'], {});
  assert.equal(unknown.code, 2);
  assert.match(unknown.stderr, /Unknown option '--schemas'/);
  assert.match(unknown.stderr, /usage: setup\.ts/);
});

/**
 * Seed 000 end to end on real Kafka (KAFKA_BROKERS): both services as processes, the lists in
 * Kafka topics with their schemas in the built-in registry (`_schemas` on the cluster). A question
 * change reaches the matching service's views; the question service stops and matching goes on.
 * Topic names are unique per run (TOPIC_TOPICS_UPDATED, TOPIC_DIFFICULTIES_UPDATED), so runs on
 * one cluster never meet.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { connect } from 'eventline';
import { kafkaBrokers } from '../../../packages/eventline/test/integration/kafka-env.ts';
import {
  http,
  metric,
  scrape,
  serviceProcesses,
  stopProcess,
  unique,
  waitFor,
} from '../../shared/test/helpers.ts';
import { runSetup } from '../src/setup.ts';

const QUESTION_MAIN = new URL('../src/question-service-main.ts', import.meta.url);
const MATCHING_MAIN = new URL('../src/matching-service-main.ts', import.meta.url);
const KAFKA_URL = `kafka://${kafkaBrokers()}`;

const services = serviceProcesses('catalogue-kafka');
after(() => services.cleanup());

const ask = (url: string, user: string, topic: string, difficulty: string) =>
  http('POST', `${url}/api/match`, { user, topic, difficulty });

test('on Kafka: a deleted topic is rejected by the matching service, which keeps working without the question service', async () => {
  const names = {
    TOPIC_TOPICS_UPDATED: unique('it.topics'),
    TOPIC_DIFFICULTIES_UPDATED: unique('it.difficulties'),
  };
  const env = {
    ...names,
    EVENTLINE_URL: KAFKA_URL,
    QUESTION_SERVICE_PORT: '0',
    MATCHING_SERVICE_PORT: '0',
    DATABASE_URL: `sqlite:${join(services.dir, 'questions.db')}`,
  };
  const questions = await services.start(QUESTION_MAIN, env);
  const matching = await services.start(MATCHING_MAIN, {
    ...env,
    DATABASE_URL: `sqlite:${join(services.dir, 'matching.db')}`,
    QUESTION_SERVICE_URL: questions.url,
  });
  await waitFor(
    'the views to hold both lists',
    async () => (await http('GET', `${matching.url}/health`)).body.fromViews,
  );

  // The topics on Kafka: compacted, one partition, Avro values under the registered subjects.
  const bus = await connect(KAFKA_URL);
  try {
    const described = await bus.admin.describeTopic(names.TOPIC_TOPICS_UPDATED);
    assert.equal(described.partitions.length, 1);
    assert.equal(described.config.cleanupPolicy, 'compact');
    const subjects = await (await bus.registry()).subjects();
    assert.ok(subjects.includes(`${names.TOPIC_TOPICS_UPDATED}-value`));
    assert.ok(subjects.includes(`${names.TOPIC_DIFFICULTIES_UPDATED}-value`));
  } finally {
    await bus.close();
  }

  const created = await http('POST', `${questions.url}/api/questions`, {
    title: 'Union-find',
    topic: 'Graphs',
    difficulty: 'hard',
  });
  assert.equal(created.status, 201);
  const accepted = await waitFor('Graphs to be accepted', async () => {
    const r = await ask(matching.url, 'alice', 'Graphs', 'hard');
    return r.status === 202 ? r : undefined;
  });
  assert.deepEqual(accepted.body.validatedFrom, { topics: 'view', difficulties: 'view' });
  const paired = await ask(matching.url, 'bob', 'Graphs', 'hard');
  assert.equal(paired.status, 200);
  assert.deepEqual(paired.body.match.users, ['alice', 'bob']);

  assert.equal((await http('DELETE', `${questions.url}/api/questions/${created.body.id}`)).status, 204);
  const rejected = await waitFor('Graphs to be rejected', async () => {
    const r = await ask(matching.url, 'carol', 'Graphs', 'hard');
    if (r.status === 202) await http('DELETE', `${matching.url}/api/match/requests/${r.body.request.id}`);
    return r.status === 400 ? r : undefined;
  });
  assert.equal(rejected.body.field, 'topic');

  assert.equal(await stopProcess(questions), 0);
  assert.equal((await ask(matching.url, 'dave', 'Arrays', 'medium')).status, 202);
  const second = await ask(matching.url, 'erin', 'Arrays', 'medium');
  assert.equal(second.status, 200);
  assert.deepEqual(second.body.validatedFrom, { topics: 'view', difficulties: 'view' });
  const m = await scrape(matching.url);
  assert.equal(metric(m, 'matching_http_fallback_total{list="topics",outcome="error"}'), 0);
  assert.equal(metric(m, `eventline_view_ready{topic="${names.TOPIC_TOPICS_UPDATED}"}`), 1);
  assert.equal(await stopProcess(matching), 0);

  // The setup command on Kafka: --publish-only publishes the question database's lists again.
  const lines: string[] = [];
  const result = await runSetup({
    publishOnly: true,
    eventlineUrl: KAFKA_URL,
    databaseUrl: env.DATABASE_URL,
    topicNames: { topics: names.TOPIC_TOPICS_UPDATED, difficulties: names.TOPIC_DIFFICULTIES_UPDATED },
    say: (l) => lines.push(l),
  });
  const topicsList = result.published.find((p) => p.list === 'topics');
  assert.ok(topicsList !== undefined && !topicsList.items.includes('Graphs'));
  assert.ok(
    lines.some((l) => l.startsWith(`published ${names.TOPIC_TOPICS_UPDATED}: version ${topicsList.version}`)),
  );
});

/**
 * The question service on the embedded engine, over real HTTP, with its own SQLite database (and
 * PostgreSQL where DATABASE_URL matters): questions, the two lists, and their publication through
 * the outbox with the seed's Avro schemas.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { connect, type Eventline } from 'eventline';
import { captureLogger, http, metric, scrape, tempDir, unique, waitFor } from '../../shared/test/helpers.ts';
import { createTempDatabase } from '../../shared/test/pg.ts';
import { TOPICS_KEY } from '../src/events.ts';
import {
  type QuestionService,
  type QuestionServiceConfig,
  startQuestionService,
} from '../src/question-service.ts';
import { DifficultiesUpdatedSchema, TopicsUpdatedSchema } from '../src/schemas.ts';
import { SEED_QUESTIONS } from '../src/seed-data.ts';

const temp = tempDir('catalogue-questions');
after(() => temp.remove());

const SEED_TOPICS = [...new Set(SEED_QUESTIONS.map((q) => q.topic))].sort();
const SEED_DIFFICULTIES = [...new Set(SEED_QUESTIONS.map((q) => q.difficulty))].sort();

/** A question service on a fresh engine file and database; closed (with its client) afterwards. */
async function withService(
  fn: (qs: QuestionService, ctx: { engineUrl: string; databaseUrl: string }) => Promise<void>,
  config: QuestionServiceConfig = {},
): Promise<void> {
  const name = unique('qs');
  const engineUrl = `sqlite:${join(temp.dir, `${name}-events.db`)}`;
  const databaseUrl = `sqlite:${join(temp.dir, `${name}-questions.db`)}`;
  const qs = await startQuestionService({
    port: 0,
    eventlineUrl: engineUrl,
    databaseUrl,
    logger: captureLogger(),
    ...config,
  });
  try {
    await fn(qs, { engineUrl, databaseUrl });
  } finally {
    await qs.close();
  }
}

/** Every publication on a list topic, oldest first, as plain objects. */
async function published(bus: Eventline, topic: QuestionService['topics'][keyof QuestionService['topics']]) {
  const records = await bus.reader.read(topic, { partition: 0, from: 'earliest', max: 1000 });
  return records.map((r) => ({ key: r.key, ...(r.value as object) }) as Record<string, unknown>);
}

/** The newest publication of a list, once the outbox relayed it (waits for `until` to accept it). */
async function latest(
  qs: QuestionService,
  list: 'topics' | 'difficulties',
  until: (p: Record<string, unknown>) => boolean = () => true,
): Promise<Record<string, unknown>> {
  return waitFor(`a publication of ${list}`, async () => {
    const all = await published(qs.bus, qs.topics[list]);
    const last = all.at(-1);
    return last !== undefined && until(last) ? last : undefined;
  });
}

test('starts with the seed questions, registers the schemas and publishes both lists at start-up', async () => {
  await withService(async (qs) => {
    assert.deepEqual((await http('GET', `${qs.url}/api/topics`)).body, SEED_TOPICS);
    assert.deepEqual((await http('GET', `${qs.url}/api/difficulty`)).body, SEED_DIFFICULTIES);
    assert.equal((await http('GET', `${qs.url}/api/questions`)).body.length, SEED_QUESTIONS.length);

    const registry = await qs.bus.registry();
    const topicsSubject = await registry.getVersion('topics.updated-value', 'latest');
    const difficultiesSubject = await registry.getVersion('difficulties.updated-value', 'latest');
    assert.deepEqual(
      JSON.parse(topicsSubject.schema).fields,
      JSON.parse(JSON.stringify(TopicsUpdatedSchema.fields)),
    );
    assert.deepEqual(
      JSON.parse(difficultiesSubject.schema).fields,
      JSON.parse(JSON.stringify(DifficultiesUpdatedSchema.fields)),
    );
    assert.deepEqual(
      qs.schemas.map((s) => [s.subject, s.id]),
      [
        ['topics.updated-value', topicsSubject.id],
        ['difficulties.updated-value', difficultiesSubject.id],
      ],
    );

    const topics = await latest(qs, 'topics');
    assert.equal(topics.key, TOPICS_KEY);
    assert.deepEqual(topics.topics, SEED_TOPICS);
    assert.equal(topics.version, 1);
    assert.ok(topics.timestamp instanceof Date, 'timestamp is a timestamp-millis Date');
    const difficulties = await latest(qs, 'difficulties');
    assert.deepEqual(difficulties.difficulties, SEED_DIFFICULTIES);
    assert.equal(difficulties.version, 1);
    // The values are Avro in the Confluent wire format: magic byte 0, then the registered id.
    const [raw] = await qs.bus.reader.read(qs.topics.topics.name, { partition: 0, from: 'earliest', max: 1 });
    assert.equal(raw!.rawValue![0], 0);
    assert.equal(raw!.rawValue!.readUInt32BE(1), topicsSubject.id);
  });
});

test('a question in a new topic publishes the new topics list, and leaves the unchanged difficulties alone', async () => {
  await withService(async (qs) => {
    await latest(qs, 'topics');
    const created = await http('POST', `${qs.url}/api/questions`, {
      title: 'Breadth-first search',
      description: 'Shortest path in an unweighted graph.',
      topic: 'Graphs',
      difficulty: 'medium',
    });
    assert.equal(created.status, 201);
    assert.equal(created.body.topic, 'Graphs');
    assert.deepEqual((await http('GET', `${qs.url}/api/questions/${created.body.id}`)).body, created.body);

    const topics = await latest(qs, 'topics', (p) => p.version === 2);
    assert.deepEqual(topics.topics, [...SEED_TOPICS, 'Graphs'].sort());
    // The outbox is empty once relayed, and no difficulties event was written for this change.
    await waitFor('the outbox to drain', async () => (await qs.outbox.backlog()).count === 0);
    assert.deepEqual(
      (await published(qs.bus, qs.topics.difficulties)).map((p) => p.version),
      [1],
    );
  });
});

test('deleting the last question of a topic publishes the list without it; deleting another does not', async () => {
  await withService(async (qs) => {
    const questions = (await http('GET', `${qs.url}/api/questions?topic=Arrays`)).body as { id: number }[];
    assert.equal(questions.length, 2);
    assert.equal((await http('DELETE', `${qs.url}/api/questions/${questions[0]!.id}`)).status, 204);
    // Arrays still has a question: nothing to publish.
    await waitFor('the outbox to drain', async () => (await qs.outbox.backlog()).count === 0);
    assert.deepEqual(
      (await published(qs.bus, qs.topics.topics)).map((p) => p.version),
      [1],
    );

    assert.equal((await http('DELETE', `${qs.url}/api/questions/${questions[1]!.id}`)).status, 204);
    const topics = await latest(qs, 'topics', (p) => p.version === 2);
    assert.deepEqual(
      topics.topics,
      SEED_TOPICS.filter((t) => t !== 'Arrays'),
    );
    assert.deepEqual((await http('GET', `${qs.url}/api/topics`)).body, topics.topics);
    assert.equal((await http('DELETE', `${qs.url}/api/questions/${questions[1]!.id}`)).status, 404);
  });
});

test('an update that moves a question changes both lists; PATCH changes only the fields given', async () => {
  await withService(async (qs) => {
    const [hard] = (await http('GET', `${qs.url}/api/questions?difficulty=hard`)).body as { id: number }[];
    const patched = await http('PATCH', `${qs.url}/api/questions/${hard!.id}`, { title: 'LIS, renamed' });
    assert.equal(patched.status, 200);
    assert.equal(patched.body.title, 'LIS, renamed');
    assert.equal(patched.body.topic, 'Dynamic Programming');

    // The only hard question moves to a new topic and difficulty: both lists change.
    const replaced = await http('PUT', `${qs.url}/api/questions/${hard!.id}`, {
      title: 'Dijkstra',
      topic: 'Graphs',
      difficulty: 'expert',
    });
    assert.equal(replaced.status, 200);
    assert.equal(replaced.body.description, '', 'PUT replaces: a description not given is empty');
    const topics = await latest(qs, 'topics', (p) => p.version === 2);
    assert.deepEqual(topics.topics, [...SEED_TOPICS, 'Graphs'].sort());
    const difficulties = await latest(qs, 'difficulties', (p) => p.version === 2);
    assert.deepEqual(difficulties.difficulties, ['easy', 'expert', 'medium']);
  });
});

test('bad input gets a 400 naming the field, unknown ids a 404', async () => {
  await withService(async (qs) => {
    const cases: [string, string, unknown, string, RegExp][] = [
      ['POST', '/api/questions', { title: 'x', difficulty: 'easy' }, 'topic', /topic is required/],
      [
        'POST',
        '/api/questions',
        { title: 'x', topic: '  ', difficulty: 'easy' },
        'topic',
        /must not be empty/,
      ],
      ['POST', '/api/questions', { title: 'x', topic: 7, difficulty: 'easy' }, 'topic', /must be a string/],
      [
        'POST',
        '/api/questions',
        { title: 'x', topic: 'a', difficulty: 'easy', level: 3 },
        'level',
        /unknown field/,
      ],
      ['POST', '/api/questions', [1, 2], 'body', /JSON object/],
      ['PATCH', '/api/questions/1', {}, 'body', /at least one of/],
      ['GET', '/api/questions/abc', undefined, 'id', /positive whole number/],
    ];
    for (const [method, path, body, field, message] of cases) {
      const reply = await http(method, `${qs.url}${path}`, body);
      assert.equal(reply.status, 400, `${method} ${path} ${JSON.stringify(body)}`);
      assert.equal(reply.body.field, field);
      assert.match(reply.body.message, message);
    }
    const missing = await http('GET', `${qs.url}/api/questions/9999`);
    assert.equal(missing.status, 404);
    assert.match(missing.body.message, /no question with id 9999/);
    assert.equal(
      (await http('PUT', `${qs.url}/api/questions/9999`, { title: 'a', topic: 'b', difficulty: 'c' })).status,
      404,
    );
    // Nothing of that reached the lists.
    assert.deepEqual((await http('GET', `${qs.url}/api/topics`)).body, SEED_TOPICS);
  });
});

test('a restart keeps the questions, does not seed again, and publishes the lists again', async () => {
  await withService(async (qs, { engineUrl, databaseUrl }) => {
    await http('POST', `${qs.url}/api/questions`, { title: 'q', topic: 'Graphs', difficulty: 'easy' });
    await latest(qs, 'topics', (p) => p.version === 2);
    await qs.close();
    await withService(
      async (again) => {
        assert.equal(
          (await http('GET', `${again.url}/api/questions`)).body.length,
          SEED_QUESTIONS.length + 1,
        );
        const topics = await latest(again, 'topics', (p) => p.version === 3);
        assert.deepEqual(topics.topics, [...SEED_TOPICS, 'Graphs'].sort());
      },
      { eventlineUrl: engineUrl, databaseUrl },
    );
  });
});

test('topic names come from TOPIC_TOPICS_UPDATED and TOPIC_DIFFICULTIES_UPDATED', async () => {
  const names = {
    TOPIC_TOPICS_UPDATED: unique('quiz.topics'),
    TOPIC_DIFFICULTIES_UPDATED: unique('quiz.levels'),
  };
  Object.assign(process.env, names);
  try {
    await withService(async (qs) => {
      assert.equal(qs.topics.topics.name, names.TOPIC_TOPICS_UPDATED);
      assert.equal(qs.topics.difficulties.name, names.TOPIC_DIFFICULTIES_UPDATED);
      assert.deepEqual((await latest(qs, 'topics')).topics, SEED_TOPICS);
      assert.deepEqual(
        qs.schemas.map((s) => s.subject),
        [`${names.TOPIC_TOPICS_UPDATED}-value`, `${names.TOPIC_DIFFICULTIES_UPDATED}-value`],
      );
    });
  } finally {
    delete process.env.TOPIC_TOPICS_UPDATED;
    delete process.env.TOPIC_DIFFICULTIES_UPDATED;
  }
});

test('/metrics serves the publish counters and latency, the outbox backlog and the schemas registered', async () => {
  await withService(async (qs) => {
    await http('POST', `${qs.url}/api/questions`, { title: 'q', topic: 'Graphs', difficulty: 'easy' });
    await latest(qs, 'topics', (p) => p.version === 2);
    const m = await waitFor('the relay to be counted', async () => {
      const s = await scrape(qs.url);
      return metric(s, 'question_service_publish_latency_seconds_count{topic="topics.updated"}') === 2
        ? s
        : undefined;
    });
    assert.equal(metric(m, 'eventline_records_published_total{topic="topics.updated",outcome="success"}'), 2);
    assert.equal(
      metric(m, 'eventline_records_published_total{topic="difficulties.updated",outcome="success"}'),
      1,
    );
    assert.equal(metric(m, 'question_service_list_changes_total{list="topics"}'), 2);
    assert.equal(metric(m, 'question_service_list_changes_total{list="difficulties"}'), 1);
    assert.equal(metric(m, 'question_service_publish_failures_total{topic="topics.updated"}'), 0);
    assert.ok(
      [...m.keys()].some((k) =>
        k.startsWith('question_service_schema_registered{subject="topics.updated-value"'),
      ),
      'the registered schema is shown',
    );
    assert.ok(m.has('eventline_outbox_backlog_events{outbox="question-service"}'));
  });
});

describe('on PostgreSQL', () => {
  test('concurrent changes in new topics all end up in the last published list', async () => {
    const pg = await createTempDatabase('catalogue_qs');
    try {
      await withService(
        async (qs) => {
          const names = Array.from({ length: 8 }, (_, i) => `Topic ${i}`);
          const replies = await Promise.all(
            names.map((topic) =>
              http('POST', `${qs.url}/api/questions`, { title: 't', topic, difficulty: 'easy' }),
            ),
          );
          assert.deepEqual(
            replies.map((r) => r.status),
            names.map(() => 201),
          );
          const expected = [...SEED_TOPICS, ...names].sort();
          assert.deepEqual((await http('GET', `${qs.url}/api/topics`)).body, expected);
          // Each change published a list including every change committed before it, so the last
          // publication is the full list and versions grew one by one.
          const last = await latest(qs, 'topics', (p) => p.version === 1 + names.length);
          assert.deepEqual(last.topics, expected);
          assert.deepEqual(
            (await published(qs.bus, qs.topics.topics)).map((p) => p.version),
            Array.from({ length: names.length + 1 }, (_, i) => i + 1),
          );
        },
        { databaseUrl: pg.url },
      );
    } finally {
      await pg.drop();
    }
  });
});

test('the service can use a client it is given, and leaves it open', async () => {
  const bus = await connect(`sqlite:${join(temp.dir, `${unique('given')}.db`)}`);
  try {
    await withService(
      async (qs) => {
        assert.equal(qs.bus, bus);
        assert.deepEqual((await latest(qs, 'topics')).topics, SEED_TOPICS);
      },
      { bus },
    );
    // Still usable after the service closed.
    assert.ok((await bus.admin.listTopics()).includes('topics.updated'));
  } finally {
    await bus.close();
  }
});

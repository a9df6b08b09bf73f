/**
 * The matching service beside a real question service, on the embedded engine, over real HTTP:
 * validation from the views, the HTTP fallback while a view cannot answer (logged once per burst,
 * counted in the metrics), and the queue that pairs two users.
 */
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { connect, startRegistryServer } from 'eventline';
import { captureLogger, http, metric, scrape, tempDir, unique, waitFor } from '../../shared/test/helpers.ts';
import { createTempDatabase } from '../../shared/test/pg.ts';
import {
  type MatchingService,
  type MatchingServiceConfig,
  startMatchingService,
} from '../src/matching-service.ts';
import { type QuestionService, startQuestionService } from '../src/question-service.ts';

const temp = tempDir('catalogue-matching');
after(() => temp.remove());

const engineUrl = (name: string): string => `sqlite:${join(temp.dir, `${name}-events.db`)}`;
const databaseUrl = (name: string): string => `sqlite:${join(temp.dir, `${name}.db`)}`;

async function matching(qs: QuestionService, config: MatchingServiceConfig = {}): Promise<MatchingService> {
  return startMatchingService({
    port: 0,
    questionServiceUrl: qs.url,
    databaseUrl: databaseUrl(unique('matching')),
    logger: captureLogger(),
    ...config,
  });
}

/** The match request `user` asks for. */
const ask = (ms: MatchingService, user: string, topic: string, difficulty: string) =>
  http('POST', `${ms.url}/api/match`, { user, topic, difficulty });

describe('with both lists in the views', () => {
  const name = unique('views');
  let qs: QuestionService;
  let ms: MatchingService;
  before(async () => {
    qs = await startQuestionService({
      port: 0,
      eventlineUrl: engineUrl(name),
      databaseUrl: databaseUrl(`${name}-questions`),
      logger: captureLogger(),
    });
    ms = await matching(qs, { eventlineUrl: engineUrl(name) });
    await waitFor('the views to hold both lists', () => ms.lists.fromViews);
  });
  after(async () => {
    await ms?.close();
    await qs?.close();
  });

  test('two users asking for the same topic and difficulty are paired; the first waits until then', async () => {
    const first = await ask(ms, 'alice', 'Arrays', 'easy');
    assert.equal(first.status, 202);
    assert.equal(first.body.status, 'queued');
    assert.deepEqual(first.body.validatedFrom, { topics: 'view', difficulties: 'view' });
    // Same topic, other difficulty: no pair.
    assert.equal((await ask(ms, 'carol', 'Arrays', 'medium')).status, 202);

    const second = await ask(ms, 'bob', 'Arrays', 'easy');
    assert.equal(second.status, 200);
    assert.equal(second.body.status, 'matched');
    assert.deepEqual(second.body.match.users, ['alice', 'bob']);
    assert.deepEqual(second.body.match.requests, [first.body.request.id, second.body.request.id]);
    assert.equal(second.body.match.topic, 'Arrays');
    assert.equal(second.body.match.difficulty, 'easy');

    // The first user finds the pairing under its request.
    const mine = await http('GET', `${ms.url}/api/match/requests/${first.body.request.id}`);
    assert.equal(mine.status, 200);
    assert.equal(mine.body.request.status, 'matched');
    assert.deepEqual(mine.body.match, second.body.match);
    assert.equal((await http('GET', `${ms.url}/api/match/requests/no-such-id`)).status, 404);
  });

  test('a user waits in one queue at a time; a waiting request can be cancelled, a paired one not', async () => {
    const waiting = await ask(ms, 'erin', 'Python Loops', 'easy');
    assert.equal(waiting.status, 202);
    const again = await ask(ms, 'erin', 'Arrays', 'medium');
    assert.equal(again.status, 409);
    assert.equal(again.body.code, 'ALREADY_WAITING');
    assert.match(again.body.message, new RegExp(waiting.body.request.id));

    const id = waiting.body.request.id as string;
    assert.equal((await http('DELETE', `${ms.url}/api/match/requests/${id}`)).status, 204);
    assert.equal((await http('GET', `${ms.url}/api/match/requests/${id}`)).body.request.status, 'cancelled');
    // Cancelled: nobody is paired with it, and erin may ask again.
    assert.equal((await ask(ms, 'frank', 'Python Loops', 'easy')).status, 202);
    const paired = await ask(ms, 'erin', 'Python Loops', 'easy');
    assert.equal(paired.status, 200);
    assert.deepEqual(paired.body.match.users, ['frank', 'erin']);
    const cancelPaired = await http('DELETE', `${ms.url}/api/match/requests/${paired.body.request.id}`);
    assert.equal(cancelPaired.status, 409);
    assert.equal(cancelPaired.body.code, 'ALREADY_MATCHED');
    assert.equal((await http('DELETE', `${ms.url}/api/match/requests/nope`)).status, 404);
  });

  test('an unknown topic or difficulty is refused with a 400 naming it and the known ones', async () => {
    const topic = await ask(ms, 'gina', 'Graph Theory', 'easy');
    assert.equal(topic.status, 400);
    assert.equal(topic.body.field, 'topic');
    assert.equal(topic.body.code, 'UNKNOWN_LIST_ITEM');
    assert.match(topic.body.message, /unknown topic "Graph Theory"; known topics: "Arrays", /);
    const difficulty = await ask(ms, 'gina', 'Arrays', 'brutal');
    assert.equal(difficulty.status, 400);
    assert.equal(difficulty.body.field, 'difficulty');
    assert.match(difficulty.body.message, /known difficulties: "easy", "hard", "medium"/);
    const missing = await http('POST', `${ms.url}/api/match`, { topic: 'Arrays', difficulty: 'easy' });
    assert.equal(missing.status, 400);
    assert.equal(missing.body.field, 'user');
  });

  test('deleting the last question of a topic makes the matching service reject that topic', async (t) => {
    const created = await http('POST', `${qs.url}/api/questions`, {
      title: 'BFS',
      topic: 'Graphs',
      difficulty: 'hard',
    });
    assert.equal(created.status, 201);
    const accepted = await waitFor('Graphs to be accepted', async () => {
      const r = await ask(ms, 'henry', 'Graphs', 'hard');
      return r.status === 202 ? r : undefined;
    });
    assert.deepEqual(accepted.body.validatedFrom, { topics: 'view', difficulties: 'view' });
    await http('DELETE', `${ms.url}/api/match/requests/${accepted.body.request.id}`);

    const deleted = Date.now();
    assert.equal((await http('DELETE', `${qs.url}/api/questions/${created.body.id}`)).status, 204);
    const rejected = await waitFor('Graphs to be rejected', async () => {
      const r = await ask(ms, 'henry', 'Graphs', 'hard');
      if (r.status === 202) await http('DELETE', `${ms.url}/api/match/requests/${r.body.request.id}`);
      return r.status === 400 ? r : undefined;
    });
    t.diagnostic(
      `rejected ${Date.now() - deleted} ms after the delete was acknowledged (bench/catalogue.ts measures it)`,
    );
    assert.equal(rejected.body.field, 'topic');
    assert.match(rejected.body.message, /unknown topic "Graphs"/);
    // The difficulty stays: a seed question is hard too.
    assert.equal((await ask(ms, 'henry', 'Dynamic Programming', 'hard')).status, 202);
  });

  test('lookups from the views count as cache hits; no HTTP fallback was needed', async () => {
    const before = await scrape(ms.url);
    assert.equal((await ask(ms, 'ivan', 'Arrays', 'brutal')).status, 400);
    const m = await scrape(ms.url);
    assert.equal(
      metric(m, 'matching_cache_hits_total{list="topics"}'),
      metric(before, 'matching_cache_hits_total{list="topics"}') + 1,
    );
    assert.equal(metric(m, 'matching_cache_misses_total{list="topics"}'), 0);
    assert.equal(metric(m, 'matching_http_fallback_total{list="topics",outcome="ok"}'), 0);
    assert.equal(metric(m, 'eventline_view_ready{topic="topics.updated"}'), 1);
    assert.equal(metric(m, 'matching_view_lag_records{topic="topics.updated"}'), 0);
    assert.ok(metric(m, 'matching_requests_total{outcome="matched"}') >= 2);
    assert.ok(metric(m, 'matching_requests_total{outcome="rejected"}') >= 3);
  });
});

describe('while a view cannot answer, the question service is asked over HTTP', () => {
  test('a view that is ready but holds no list yet: fallback, logged once per burst, then the view', async () => {
    const name = unique('empty');
    const qs = await startQuestionService({
      port: 0,
      eventlineUrl: engineUrl(`${name}-questions`),
      databaseUrl: databaseUrl(`${name}-questions`),
      logger: captureLogger(),
    });
    // The matching service is on another engine, where nothing has been published yet.
    const logger = captureLogger();
    const ms = await matching(qs, { eventlineUrl: engineUrl(`${name}-matching`), logger });
    try {
      await ms.lists.ready();
      const first = await ask(ms, 'alice', 'Arrays', 'easy');
      assert.equal(first.status, 202);
      assert.deepEqual(first.body.validatedFrom, { topics: 'http', difficulties: 'http' });
      assert.equal((await ask(ms, 'bob', 'Graph Theory', 'easy')).status, 400, 'the HTTP lists validate too');
      assert.equal((await ask(ms, 'bob', 'Arrays', 'easy')).status, 200);

      const m = await scrape(ms.url);
      assert.equal(metric(m, 'matching_cache_misses_total{list="topics"}'), 3);
      assert.equal(metric(m, 'matching_http_fallback_total{list="topics",outcome="ok"}'), 3);
      assert.equal(metric(m, 'matching_http_fallback_total{list="difficulties",outcome="ok"}'), 3);
      assert.equal(metric(m, 'matching_http_fallback_duration_seconds_count{list="topics"}'), 3);
      const warnings = logger.lines.filter((l) => l.level === 'warn' && /over HTTP/.test(l.msg ?? ''));
      assert.equal(warnings.length, 2, 'one warning per list for the whole burst');
      assert.match(
        JSON.stringify(warnings[0]!.obj),
        /nothing has been published to (topics|difficulties)\.updated yet/,
      );

      // The lists reach this engine: a question service starts on it (and publishes at start-up).
      const other = await startQuestionService({
        port: 0,
        eventlineUrl: engineUrl(`${name}-matching`),
        databaseUrl: databaseUrl(`${name}-other-questions`),
        logger: captureLogger(),
      });
      try {
        await waitFor('the views to hold the lists', () => ms.lists.fromViews);
      } finally {
        await other.close();
      }
      const fromView = await ask(ms, 'carol', 'Arrays', 'medium');
      assert.deepEqual(fromView.body.validatedFrom, { topics: 'view', difficulties: 'view' });
      assert.ok(
        logger.lines.some((l) => /HTTP fallback over/.test(l.msg ?? '')),
        'the end of the burst is logged',
      );
      const after = await scrape(ms.url);
      assert.equal(
        metric(after, 'matching_http_fallback_total{list="topics",outcome="ok"}'),
        3,
        'no more fallbacks',
      );
    } finally {
      await ms.close();
      await qs.close();
    }
  });

  test('a view that is not ready (its registry is down): fallback through the view, counted by Eventline too', async () => {
    const name = unique('unready');
    const qs = await startQuestionService({
      port: 0,
      eventlineUrl: engineUrl(name),
      databaseUrl: databaseUrl(`${name}-questions`),
      logger: captureLogger(),
    });
    await waitFor('the lists to be on the engine', async () => (await qs.outbox.backlog()).count === 0);
    // The matching side reads the schemas from an external registry that is not running yet, so
    // its views cannot decode the lists and stay not ready.
    const port = await freePort();
    const bus = await connect(engineUrl(name), { registry: { url: `http://127.0.0.1:${port}` } });
    const logger = captureLogger();
    const ms = await matching(qs, { bus, logger });
    try {
      const reply = await ask(ms, 'alice', 'Arrays', 'easy');
      assert.equal(reply.status, 202);
      assert.deepEqual(reply.body.validatedFrom, { topics: 'http', difficulties: 'http' });
      assert.equal(ms.lists.topicsView.isReady, false);
      const m = await scrape(ms.url);
      assert.equal(metric(m, 'eventline_view_fallback_total{topic="topics.updated"}'), 1);
      assert.equal(metric(m, 'eventline_view_ready{topic="topics.updated"}'), 0);
      assert.equal(metric(m, 'matching_http_fallback_total{list="topics",outcome="ok"}'), 1);
      assert.match(
        JSON.stringify(logger.lines.find((l) => /over HTTP/.test(l.msg ?? ''))?.obj),
        /the view of (topics|difficulties)\.updated is not ready/,
      );
      assert.equal((await http('GET', `${ms.url}/health`)).body.fromViews, false);

      // The registry comes up: the views decode the lists and take over.
      const server = await startRegistryServer(await qs.bus.registry(), { port });
      try {
        await waitFor('the views to be ready', () => ms.lists.fromViews);
        const later = await ask(ms, 'bob', 'Arrays', 'easy');
        assert.equal(later.status, 200);
        assert.deepEqual(later.body.validatedFrom, { topics: 'view', difficulties: 'view' });
      } finally {
        await server.close();
      }
    } finally {
      await ms.close();
      await bus.close();
      await qs.close();
    }
  });

  test('with no QUESTION_SERVICE_URL, the fallback goes to the port in QUESTION_SERVICE_PORT', async () => {
    const name = unique('port');
    const qs = await startQuestionService({
      port: 0,
      eventlineUrl: engineUrl(`${name}-questions`),
      databaseUrl: databaseUrl(`${name}-questions`),
      logger: captureLogger(),
    });
    const saved = { url: process.env.QUESTION_SERVICE_URL, port: process.env.QUESTION_SERVICE_PORT };
    delete process.env.QUESTION_SERVICE_URL;
    process.env.QUESTION_SERVICE_PORT = new URL(qs.url).port;
    let ms: MatchingService | undefined;
    try {
      // Its own engine, where nothing was published: every lookup is a fallback.
      ms = await startMatchingService({
        port: 0,
        eventlineUrl: engineUrl(`${name}-matching`),
        databaseUrl: databaseUrl(unique('matching')),
        logger: captureLogger(),
      });
      await ms.lists.ready();
      const reply = await ask(ms, 'alice', 'Arrays', 'easy');
      assert.equal(reply.status, 202, JSON.stringify(reply.body));
      assert.deepEqual(reply.body.validatedFrom, { topics: 'http', difficulties: 'http' });
    } finally {
      for (const [variable, value] of [
        ['QUESTION_SERVICE_URL', saved.url],
        ['QUESTION_SERVICE_PORT', saved.port],
      ] as const) {
        if (value === undefined) delete process.env[variable];
        else process.env[variable] = value;
      }
      await ms?.close();
      await qs.close();
    }
  });

  test('with no list in the view and the question service unreachable, a request gets a 503 saying why', async () => {
    const name = unique('down');
    const qs = await startQuestionService({
      port: 0,
      eventlineUrl: engineUrl(`${name}-questions`),
      databaseUrl: databaseUrl(`${name}-questions`),
      logger: captureLogger(),
    });
    const url = qs.url;
    await qs.close();
    const ms = await startMatchingService({
      port: 0,
      questionServiceUrl: url,
      eventlineUrl: engineUrl(`${name}-matching`),
      databaseUrl: databaseUrl(unique('matching')),
      logger: captureLogger(),
      fallbackTimeoutMs: 500,
    });
    try {
      await ms.lists.ready();
      const reply = await ask(ms, 'alice', 'Arrays', 'easy');
      assert.equal(reply.status, 503);
      assert.equal(reply.body.code, 'LISTS_UNAVAILABLE');
      assert.match(
        reply.body.message,
        /not in the matching service's view .* the question service did not answer/,
      );
      const m = await scrape(ms.url);
      assert.ok(metric(m, 'matching_http_fallback_total{list="topics",outcome="error"}') >= 1);
      assert.equal(metric(m, 'matching_requests_total{outcome="unavailable"}'), 1);
    } finally {
      await ms.close();
    }
  });
});

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

describe('on PostgreSQL', () => {
  test('two instances on one database pair 40 simultaneous requests into 20 matches, none twice, none left waiting', async () => {
    const pg = await createTempDatabase('catalogue_ms');
    const name = unique('pg');
    const qs = await startQuestionService({
      port: 0,
      eventlineUrl: engineUrl(name),
      databaseUrl: databaseUrl(`${name}-questions`),
      logger: captureLogger(),
    });
    const instances = [
      await matching(qs, { eventlineUrl: engineUrl(name), databaseUrl: pg.url }),
      await matching(qs, { eventlineUrl: engineUrl(name), databaseUrl: pg.url }),
    ];
    try {
      for (const ms of instances) await waitFor('the views to hold both lists', () => ms.lists.fromViews);
      const users = Array.from({ length: 40 }, (_, i) => `user-${i}`);
      const replies = await Promise.all(
        users.map((user, i) => ask(instances[i % 2]!, user, 'Dynamic Programming', 'medium')),
      );
      assert.deepEqual(
        replies.filter((r) => r.status !== 200 && r.status !== 202).map((r) => r.body),
        [],
      );
      const matches = replies.filter((r) => r.status === 200).map((r) => r.body.match);
      assert.equal(matches.length, 20);
      const paired = matches.flatMap((m) => m.users as string[]).sort();
      assert.deepEqual(paired, [...users].sort(), 'every user is in exactly one match');
      const m = await scrape(instances[0]!.url);
      assert.equal(metric(m, 'matching_queue_waiting'), 0);
    } finally {
      for (const ms of instances) await ms.close();
      await qs.close();
      await pg.drop();
    }
  });
});

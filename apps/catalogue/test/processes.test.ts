/**
 * Both services as real processes on one embedded engine file, started as `npm start` starts them.
 * The question service is stopped: the matching service keeps validating and pairing from its
 * views, with no HTTP fallback, and still does after a restart of its own.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { http, metric, scrape, serviceProcesses, stopProcess, waitFor } from '../../shared/test/helpers.ts';

const QUESTION_MAIN = new URL('../src/question-service-main.ts', import.meta.url);
const MATCHING_MAIN = new URL('../src/matching-service-main.ts', import.meta.url);

const services = serviceProcesses('catalogue-processes');
after(() => services.cleanup());

test('with the question service stopped, the matching service keeps working from its views', async () => {
  const env = {
    EVENTLINE_URL: `sqlite:${join(services.dir, 'events.db')}`,
    QUESTION_SERVICE_PORT: '0',
    MATCHING_SERVICE_PORT: '0',
  };
  const questions = await services.start(QUESTION_MAIN, env);
  // Each service keeps its state in its own database, by default under .eventline/apps/.
  assert.ok(existsSync(join(services.dir, '.eventline/apps/question-service.db')));
  let matching = await services.start(MATCHING_MAIN, { ...env, QUESTION_SERVICE_URL: questions.url });
  assert.ok(existsSync(join(services.dir, '.eventline/apps/matching-service.db')));
  await waitFor(
    'the views to hold both lists',
    async () => (await http('GET', `${matching.url}/health`)).body.fromViews,
  );

  assert.equal(
    (
      await http('POST', `${questions.url}/api/questions`, {
        title: 'BFS',
        topic: 'Graphs',
        difficulty: 'hard',
      })
    ).status,
    201,
  );
  await waitFor('Graphs in the view', async () =>
    ((await http('GET', `${matching.url}/api/lists`)).body.topics.items as string[]).includes('Graphs'),
  );

  assert.equal(await stopProcess(questions), 0, 'the question service stops cleanly on SIGTERM');
  await assert.rejects(fetch(`${questions.url}/api/topics`), 'the question service is gone');

  const pairUp = async (a: string, b: string, topic: string): Promise<string> => {
    const first = await http('POST', `${matching.url}/api/match`, { user: a, topic, difficulty: 'hard' });
    assert.equal(first.status, 202, JSON.stringify(first.body));
    assert.deepEqual(first.body.validatedFrom, { topics: 'view', difficulties: 'view' });
    const second = await http('POST', `${matching.url}/api/match`, { user: b, topic, difficulty: 'hard' });
    assert.equal(second.status, 200, JSON.stringify(second.body));
    assert.deepEqual(second.body.match.users, [a, b]);
    return first.body.request.id;
  };
  const aliceRequest = await pairUp('alice', 'bob', 'Graphs');
  const unknown = await http('POST', `${matching.url}/api/match`, {
    user: 'carol',
    topic: 'Trees',
    difficulty: 'hard',
  });
  assert.equal(unknown.status, 400);
  assert.equal(unknown.body.field, 'topic');
  let m = await scrape(matching.url);
  assert.equal(metric(m, 'matching_http_fallback_total{list="topics",outcome="ok"}'), 0);
  assert.equal(metric(m, 'matching_http_fallback_total{list="topics",outcome="error"}'), 0);
  assert.ok(metric(m, 'matching_cache_hits_total{list="topics"}') >= 3);

  // The matching service restarts while the question service is still down: its views are rebuilt
  // from the log, and it goes on without ever asking the question service.
  assert.equal(await stopProcess(matching), 0, 'the matching service stops cleanly on SIGTERM');
  matching = await services.start(MATCHING_MAIN, { ...env, QUESTION_SERVICE_URL: questions.url });
  await waitFor(
    'the views to hold both lists',
    async () => (await http('GET', `${matching.url}/health`)).body.fromViews,
  );
  await pairUp('dave', 'erin', 'Dynamic Programming');
  m = await scrape(matching.url);
  assert.equal(metric(m, 'matching_http_fallback_total{list="topics",outcome="error"}'), 0);
  assert.equal(metric(m, 'matching_cache_misses_total{list="topics"}'), 0);
  // The pairing made before the restart is still there: the queue lives in the service's database.
  const before = await http('GET', `${matching.url}/api/match/requests/${aliceRequest}`);
  assert.equal(before.body.request.status, 'matched');
  assert.deepEqual(before.body.match.users, ['alice', 'bob']);
  assert.equal(await stopProcess(matching), 0);
  assert.equal(
    matching.log.filter((l) => typeof l === 'object' && /over HTTP/.test(String((l as { msg?: string }).msg)))
      .length,
    0,
    'no fallback was logged',
  );
});

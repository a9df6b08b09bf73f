/** The HTTP edges of both services: clear 400s naming the bad field, 404s, health, metrics. */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { serviceLogger } from '../../shared/index.ts';
import { http, metric, scrape, unique, waitFor } from '../../shared/test/helpers.ts';
import { type AiService, startAiService } from '../src/ai-service.ts';
import { type ContentService, startContentService } from '../src/content-service.ts';
import { OfflineProvider } from '../src/llm/offline.ts';

let dir: string;
let ai: AiService;
let content: ContentService;
const GENERATE = '/llm/questions/generate-for-content-service';

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'apps-qgen-http-'));
  const tag = unique('qh');
  const common = {
    host: '127.0.0.1',
    port: 0,
    eventlineUrl: `sqlite:${join(dir, 'events.db')}`,
    topics: { request: `${tag}.request`, response: `${tag}.response`, generate: `${tag}.generate` },
  };
  ai = await startAiService({
    ...common,
    databaseUrl: `sqlite:${join(dir, 'ai.db')}`,
    llm: new OfflineProvider(),
    logger: serviceLogger('ai-service', 'silent'),
  });
  content = await startContentService({
    ...common,
    databaseUrl: `sqlite:${join(dir, 'content.db')}`,
    logger: serviceLogger('content-service', 'silent'),
  });
});

after(async () => {
  await content?.close();
  await ai?.close();
  rmSync(dir, { recursive: true, force: true });
});

const valid = { request_id: 'v-1', topic: 'Python Basics', num_questions: 3, difficulty: 'easy' };

const cases: [string, unknown, string, RegExp][] = [
  ['no request_id', { ...valid, request_id: undefined }, 'request_id', /request_id is required/],
  [
    'a request_id with spaces',
    { ...valid, request_id: 'a b' },
    'request_id',
    /request_id must be letters, digits and \. _ : - only/,
  ],
  ['no topic', { ...valid, topic: undefined }, 'topic', /topic is required/],
  ['an empty topic', { ...valid, topic: '  ' }, 'topic', /topic must not be empty/],
  ['a numeric topic', { ...valid, topic: 7 }, 'topic', /topic must be a string, got number/],
  [
    'zero questions',
    { ...valid, num_questions: 0 },
    'num_questions',
    /num_questions must be from 1 to 20, got 0/,
  ],
  [
    'too many questions',
    { ...valid, num_questions: 21 },
    'num_questions',
    /num_questions must be from 1 to 20, got 21/,
  ],
  [
    'a fractional count',
    { ...valid, num_questions: 2.5 },
    'num_questions',
    /num_questions must be a whole number/,
  ],
  [
    'a count as text',
    { ...valid, num_questions: '3' },
    'num_questions',
    /num_questions must be a whole number, got string "3"/,
  ],
  [
    'an unknown difficulty',
    { ...valid, difficulty: 'extreme' },
    'difficulty',
    /difficulty must be one of easy, medium, hard, got "extreme"/,
  ],
  ['an array body', [valid], 'body', /the request body must be a JSON object/],
];

for (const [what, body, field, message] of cases) {
  test(`POST ${GENERATE} with ${what}: 400 naming ${field}`, async () => {
    const r = await http('POST', `${ai.url}${GENERATE}`, body);
    assert.equal(r.status, 400);
    assert.equal(r.body.error, 'Bad Request');
    assert.equal(r.body.field, field);
    assert.match(String(r.body.message), message);
  });
}

test('malformed JSON is a 400 too, and nothing was accepted by any of the bad requests', async () => {
  const r = await http('POST', `${ai.url}${GENERATE}`, undefined, '{"request_id": ');
  assert.equal(r.status, 400);
  assert.match(String(r.body.message), /JSON/i);
  const missing = await http('GET', `${ai.url}/llm/questions/requests/v-1`);
  assert.equal(missing.status, 404);
  assert.equal(missing.body.message, 'no request v-1');
});

test('the content service: 400 for bad input, 404 for unknown requests and routes', async () => {
  const bad = await http('POST', `${content.url}/api/requests`, {
    topic: 'Git',
    num_questions: 1,
    difficulty: 'meh',
  });
  assert.equal(bad.status, 400);
  assert.equal(bad.body.field, 'difficulty');
  const unknown = await http('GET', `${content.url}/api/requests/nope-1`);
  assert.equal(unknown.status, 404);
  assert.equal(unknown.body.field, 'id');
  const badLimit = await http('GET', `${content.url}/api/requests?limit=0`);
  assert.equal(badLimit.status, 400);
  assert.equal(badLimit.body.field, 'limit');
  const noRoute = await http('GET', `${content.url}/api/nothing`);
  assert.equal(noRoute.status, 404);
  assert.match(String(noRoute.body.message), /no route GET \/api\/nothing/);
});

test('health reports the LLM and the circuit breaker', async () => {
  const h = await http<{ status: string; llm: string; circuit: { state: string } }>(
    'GET',
    `${ai.url}/health`,
  );
  assert.equal(h.status, 200);
  assert.deepEqual([h.body.status, h.body.llm, h.body.circuit.state], ['ok', 'offline', 'closed']);
  const c = await http('GET', `${content.url}/health`);
  assert.equal(c.body.status, 'ok');
});

test("both services serve /metrics: Eventline's metrics for their consumers and the AI service's outbox", async () => {
  const { request, response } = ai.config.topics;
  const consumed = (m: Map<string, number>, group: string, topic: string): number =>
    metric(m, `eventline_records_consumed_total{group="${group}",topic="${topic}",outcome="success"}`);
  assert.equal(
    (await http('POST', `${ai.url}${GENERATE}`, { ...valid, request_id: 'metrics-1' })).status,
    200,
  );
  const fromAi = await waitFor('the generator consumer to count the request', async () => {
    const m = await scrape(ai.url);
    return consumed(m, ai.config.generatorGroup, request) === 1 ? m : undefined;
  });
  // The request event reached the consumer through the outbox.
  assert.ok(metric(fromAi, 'eventline_outbox_relayed_total{outbox="eventline_outbox"}') >= 1);
  assert.ok(fromAi.has('eventline_outbox_backlog_events{outbox="eventline_outbox"}'));
  const fromContent = await waitFor('the content service to count the response', async () => {
    const m = await scrape(content.url);
    return consumed(m, 'content-service-question-consumer', response) === 1 ? m : undefined;
  });
  assert.equal(consumed(fromContent, 'content-service-question-consumer', request), 1);
});

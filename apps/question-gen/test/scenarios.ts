/**
 * Seed 002 end to end, written once and run on each engine: `flow.test.ts` on the embedded engine,
 * `flow.integration.ts` on Kafka. Every test takes fresh topic and group names; the services run
 * with real HTTP, their own SQLite databases (PostgreSQL in one case) and, where a process is
 * killed, as real processes.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { after, before, describe, test } from 'node:test';
import { connect, type Eventline, type LogLevel, readDeadLetters, replayDeadLetters } from 'eventline';
import { serviceLogger } from '../../shared/index.ts';
import { http, readTopic, startProcess, stopProcess, unique, waitFor } from '../../shared/test/helpers.ts';
import { createTempDatabase } from '../../shared/test/pg.ts';
import { type AiService, startAiService } from '../src/ai-service.ts';
import {
  type ContentService,
  type ContentServiceConfig,
  type StoredRequest,
  startContentService,
} from '../src/content-service.ts';
import { type Question, type QuestionTopicNames, questionTopics } from '../src/events.ts';
import { OfflineProvider } from '../src/llm/offline.ts';
import type { LlmProvider, QuestionSpec } from '../src/llm/provider.ts';

export interface EngineUnderTest {
  name: string;
  /** The engine URL every service and process of one test uses. */
  url(dir: string): string;
}

/** The services' own logs stay quiet in tests unless LOG_LEVEL asks for them. */
const LOG_LEVEL = (process.env.LOG_LEVEL as LogLevel | undefined) ?? 'silent';
const AI_MAIN = new URL('../src/ai-service-main.ts', import.meta.url);
const GENERATE = '/llm/questions/generate-for-content-service';

interface Names {
  topics: QuestionTopicNames;
  generatorGroup: string;
  responderGroup: string;
  consumerGroup: string;
}

/**
 * The offline LLM, but each call waits until `release()` is called or its signal aborts (as an
 * HTTP call to a real LLM would be cut short).
 */
class GatedLlm implements LlmProvider {
  readonly name = 'gated';
  calls = 0;
  readonly #offline = new OfflineProvider();
  readonly #gate = Promise.withResolvers<void>();

  release(): void {
    this.#gate.resolve();
  }

  async generateQuestions(spec: QuestionSpec, signal?: AbortSignal): Promise<Question[]> {
    this.calls++;
    signal?.throwIfAborted();
    const aborted = Promise.withResolvers<never>();
    const onAbort = (): void => aborted.reject(signal!.reason);
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      await Promise.race([this.#gate.promise, aborted.promise]);
    } finally {
      signal?.removeEventListener('abort', onAbort);
    }
    return this.#offline.generateQuestions(spec, signal);
  }
}

function freshNames(): Names {
  const tag = unique('qg');
  return {
    topics: {
      request: `${tag}.question.request`,
      response: `${tag}.question.response`,
      generate: `${tag}.question.generate`,
    },
    generatorGroup: `${tag}-generator`,
    responderGroup: `${tag}-responder`,
    consumerGroup: `${tag}-content`,
  };
}

export function runScenarios(engine: EngineUnderTest): void {
  describe(`seed 002 on the ${engine.name} engine`, () => {
    let dir: string;
    let bus: Eventline;
    const open: { close(): Promise<void> }[] = [];

    before(async () => {
      dir = mkdtempSync(join(tmpdir(), 'apps-qgen-'));
      bus = await connect(engine.url(dir), { clientId: 'qgen-test' });
    });
    after(async () => {
      for (const s of open.reverse()) await s.close().catch(() => {});
      await bus.close();
      rmSync(dir, { recursive: true, force: true });
    });

    /** Both services in this process, on fresh names and databases. */
    async function startBoth(
      llm: LlmProvider,
      ai: Partial<Parameters<typeof startAiService>[0]> = {},
      databases: { ai?: string; content?: string } = {},
      contentConfig: Partial<ContentServiceConfig> = {},
    ): Promise<{ ai: AiService; content: ContentService; names: Names; stop(): Promise<void> }> {
      const names = freshNames();
      const common = { host: '127.0.0.1', port: 0, eventlineUrl: engine.url(dir), topics: names.topics };
      const aiService = await startAiService({
        ...common,
        databaseUrl: databases.ai ?? `sqlite:${join(dir, `${names.generatorGroup}-ai.db`)}`,
        generatorGroup: names.generatorGroup,
        responderGroup: names.responderGroup,
        llm,
        retryDelayMs: 50,
        logger: serviceLogger('ai-service', LOG_LEVEL),
        ...ai,
      });
      open.push(aiService);
      const content = await startContentService({
        ...common,
        databaseUrl: databases.content ?? `sqlite:${join(dir, `${names.generatorGroup}-content.db`)}`,
        consumerGroup: names.consumerGroup,
        logger: serviceLogger('content-service', LOG_LEVEL),
        ...contentConfig,
      });
      open.push(content);
      return {
        ai: aiService,
        content,
        names,
        stop: async () => {
          await content.close();
          await aiService.close();
        },
      };
    }

    const settled = (url: string, id: string): Promise<StoredRequest> =>
      waitFor(`request ${id} answered in the content service`, async () => {
        const r = await http<StoredRequest>('GET', `${url}/api/requests/${id}`);
        return r.status === 200 && r.body.status !== 'pending' ? r.body : undefined;
      });

    async function responsesFor(names: Names, id: string) {
      const all = await readTopic(bus, questionTopics(names.topics).response);
      return all.filter((m) => m.value?.eventData.request_id === id);
    }

    test('the seed curl example: accepted at once, questions generated, stored by the content service', async () => {
      const llm = new OfflineProvider();
      const { ai, content, names, stop } = await startBoth(llm);
      const reply = await http('POST', `${ai.url}${GENERATE}`, {
        request_id: 'test-123',
        topic: 'Python Basics',
        num_questions: 3,
        difficulty: 'easy',
      });
      assert.equal(reply.status, 200);
      assert.equal(reply.body.status, 'accepted');
      assert.equal(reply.body.request_id, 'test-123');

      const stored = await settled(content.url, 'test-123');
      assert.equal(stored.status, 'completed');
      assert.equal(stored.total_questions, 3);
      assert.equal(stored.questions.length, 3);
      for (const q of stored.questions) assert.ok(q.options.includes(q.correct_answer), q.question);
      assert.deepEqual(
        { topic: stored.topic, num_questions: stored.num_questions, difficulty: stored.difficulty },
        { topic: 'Python Basics', num_questions: 3, difficulty: 'easy' },
      );

      // The seed's envelope on both topics, keyed by request id.
      const requests = await readTopic(bus, questionTopics(names.topics).request);
      assert.equal(requests.length, 1);
      const req = requests[0]!;
      assert.equal(req.key, 'test-123');
      assert.equal(req.value!.eventType, 'question.generation.request');
      assert.equal(req.value!.userId, 'content-service');
      assert.equal(req.value!.eventId, reply.body.event_id);
      assert.deepEqual(req.value!.eventData, {
        request_id: 'test-123',
        topic: 'Python Basics',
        num_questions: 3,
        difficulty: 'easy',
      });
      const responses = await responsesFor(names, 'test-123');
      assert.equal(responses.length, 1);
      const res = responses[0]!.value!;
      assert.equal(res.eventType, 'question.generation.response');
      assert.equal(res.userId, 'ai-service');
      assert.equal(res.eventData.status, 'completed');
      assert.equal(res.eventData.total_questions, 3);
      assert.equal(stored.response_event_id, res.eventId);
      await stop();
    });

    test('a duplicate request_id is not generated twice; a different request under it is a 409', async () => {
      const llm = new OfflineProvider();
      const { ai, content, names, stop } = await startBoth(llm);
      const body = { request_id: 'dup-1', topic: 'SQL joins', num_questions: 2, difficulty: 'medium' };
      const first = await http('POST', `${ai.url}${GENERATE}`, body);
      assert.equal(first.status, 200);
      assert.equal(first.body.duplicate, undefined);
      await settled(content.url, 'dup-1');
      const second = await http('POST', `${ai.url}${GENERATE}`, body);
      assert.equal(second.status, 200);
      assert.equal(second.body.status, 'accepted');
      assert.equal(second.body.duplicate, true);
      assert.equal(second.body.generation_status, 'completed');
      assert.equal(second.body.event_id, first.body.event_id);
      const conflict = await http('POST', `${ai.url}${GENERATE}`, { ...body, topic: 'Git' });
      assert.equal(conflict.status, 409);
      assert.equal(conflict.body.field, 'request_id');
      assert.match(String(conflict.body.message), /already used for another request \(topic "SQL joins"\)/);

      // One request event, one LLM call, one response; the content service answers from its store.
      const requests = (await readTopic(bus, questionTopics(names.topics).request)).filter(
        (m) => m.key === 'dup-1',
      );
      assert.equal(requests.length, 1);
      assert.equal(llm.calls, 1);
      assert.equal((await responsesFor(names, 'dup-1')).length, 1);
      assert.equal(content.stats().stored, 1);
      await stop();
    });

    test('the LLM failing three times then succeeding: retried, one completed response', async () => {
      const llm = new OfflineProvider({ failTimes: 3 });
      const { ai, content, names, stop } = await startBoth(llm, { maxAttempts: 5 });
      await http('POST', `${ai.url}${GENERATE}`, {
        request_id: 'flaky-1',
        topic: 'Kafka partitions',
        num_questions: 4,
        difficulty: 'hard',
      });
      const stored = await settled(content.url, 'flaky-1');
      assert.equal(stored.status, 'completed');
      assert.equal(stored.questions.length, 4);
      assert.equal(llm.calls, 4, 'three failed calls and the one that succeeded');
      const record = await http('GET', `${ai.url}/llm/questions/requests/flaky-1`);
      assert.equal(record.body.attempts, 4);
      assert.equal(record.body.status, 'completed');
      const responses = await responsesFor(names, 'flaky-1');
      assert.deepEqual(
        responses.map((m) => m.value!.eventData.status),
        ['completed'],
      );
      assert.equal(ai.breaker.stats().state, 'closed');
      await assert.rejects(
        readDeadLetters(bus, { group: names.generatorGroup, topic: names.topics.request }),
        /does not exist|unknown topic/i,
        'nothing was dead-lettered',
      );
      await stop();
    });

    test('exhausted retries end as a failed response and a dead letter; a replay completes it', async () => {
      // Three attempts, three failures; the LLM works again from the fourth call on.
      const llm = new OfflineProvider({ failTimes: 3 });
      const { ai, content, names, stop } = await startBoth(llm, { maxAttempts: 3 });
      await http('POST', `${ai.url}${GENERATE}`, {
        request_id: 'doomed-1',
        topic: 'Git',
        num_questions: 2,
        difficulty: 'easy',
      });
      const stored = await settled(content.url, 'doomed-1');
      assert.equal(stored.status, 'failed');
      assert.equal(stored.error_code, 'LLM_UNAVAILABLE');
      assert.match(stored.error ?? '', /scripted failure 3/);
      assert.deepEqual(stored.questions, []);
      assert.equal(llm.calls, 3);
      const responses = await responsesFor(names, 'doomed-1');
      assert.equal(responses.length, 1);
      assert.equal(responses[0]!.value!.eventData.status, 'failed');

      const dead = await waitFor('the dead letter', async () => {
        const list = await readDeadLetters(bus, {
          group: names.generatorGroup,
          topic: questionTopics(names.topics).request,
        });
        return list.length > 0 ? list : undefined;
      });
      assert.equal(dead.length, 1);
      assert.equal(dead[0]!.attempts, 3);
      assert.equal(dead[0]!.error.code, 'LLM_UNAVAILABLE');
      assert.equal(dead[0]!.decoded?.value.eventData.request_id, 'doomed-1');
      const record = await http('GET', `${ai.url}/llm/questions/requests/doomed-1`);
      assert.equal(record.body.status, 'failed');
      assert.equal(record.body.attempts, 3);

      // Replaying the dead letter tries the request again; the completed response replaces the failure.
      const replay = await replayDeadLetters(bus, {
        group: names.generatorGroup,
        topic: names.topics.request,
      });
      assert.equal(replay.replayed, 1);
      const done = await waitFor('the replayed request to complete', async () => {
        const r = await http<StoredRequest>('GET', `${content.url}/api/requests/doomed-1`);
        return r.body.status === 'completed' ? r.body : undefined;
      });
      assert.equal(done.questions.length, 2);
      assert.equal(done.error, undefined);
      assert.equal(llm.calls, 4);
      assert.deepEqual(
        (await responsesFor(names, 'doomed-1')).map((m) => m.value!.eventData.status),
        ['failed', 'completed'],
      );
      await stop();
    });

    test('the circuit breaker opens after repeated failures; a request on its last attempt fails fast', async () => {
      const llm = new OfflineProvider({ failTimes: 1_000 });
      const { ai, content, stop } = await startBoth(llm, {
        maxAttempts: 3,
        breakerThreshold: 2,
        breakerCooldownMs: 600_000,
      });
      await http('POST', `${ai.url}${GENERATE}`, {
        request_id: 'breaker-1',
        topic: 'HTTP status codes',
        num_questions: 1,
        difficulty: 'easy',
      });
      const stored = await settled(content.url, 'breaker-1');
      assert.equal(stored.status, 'failed');
      assert.equal(stored.error_code, 'CIRCUIT_OPEN');
      assert.equal(llm.calls, 2, 'attempt 3 never reached the LLM');
      const stats = ai.breaker.stats();
      assert.equal(stats.state, 'open');
      assert.equal(stats.rejected, 1);
      const health = await http<{ circuit: { state: string } }>('GET', `${ai.url}/health`);
      assert.equal(health.body.circuit.state, 'open');
      await stop();
    });

    test('a request refused by the open breaker waits out its cool-down, then completes', async () => {
      // Two failures open the breaker; the third attempt is refused while it cools down (the
      // retry delays, 50 ms doubling, are far shorter). The request waits until a trial call may
      // go through instead of using up its attempts: the fourth attempt is that trial, and succeeds.
      const llm = new OfflineProvider({ failTimes: 2 });
      const { ai, content, names, stop } = await startBoth(llm, {
        maxAttempts: 4,
        breakerThreshold: 2,
        breakerCooldownMs: 1_500,
      });
      await http('POST', `${ai.url}${GENERATE}`, {
        request_id: 'cooldown-1',
        topic: 'HTTP status codes',
        num_questions: 2,
        difficulty: 'easy',
      });
      const stored = await settled(content.url, 'cooldown-1');
      assert.equal(stored.status, 'completed', JSON.stringify(stored));
      assert.equal(stored.questions.length, 2);
      assert.equal(llm.calls, 3, 'two failed calls, then the trial call that succeeded');
      assert.deepEqual(ai.breaker.stats(), {
        state: 'closed',
        consecutiveFailures: 0,
        rejected: 1,
        opened: 1,
      });
      assert.deepEqual(
        (await responsesFor(names, 'cooldown-1')).map((m) => m.value!.eventData.status),
        ['completed'],
      );
      await assert.rejects(
        readDeadLetters(bus, { group: names.generatorGroup, topic: names.topics.request }),
        /does not exist|unknown topic/i,
        'nothing was dead-lettered',
      );
      await stop();
    });

    test('a database failure on the last delivery: the request ends failed, with a response and a dead letter', async () => {
      const llm = new OfflineProvider();
      const aiDb = join(dir, `${unique('refusing')}-ai.db`);
      const { ai, content, names, stop } = await startBoth(llm, { maxAttempts: 2 }, { ai: `sqlite:${aiDb}` });
      // The AI service's database refuses to store a completed request (the LLM call itself works).
      const sqlite = new DatabaseSync(aiDb);
      try {
        sqlite.exec('PRAGMA busy_timeout = 10000');
        sqlite.exec(`CREATE TRIGGER refuse_completed BEFORE UPDATE OF status ON question_requests
          WHEN NEW.status = 'completed' BEGIN SELECT RAISE(ABORT, 'disk quota exceeded (test trigger)'); END`);
      } finally {
        sqlite.close();
      }
      await http('POST', `${ai.url}${GENERATE}`, {
        request_id: 'db-fail-1',
        topic: 'SQL joins',
        num_questions: 2,
        difficulty: 'medium',
      });
      const stored = await settled(content.url, 'db-fail-1');
      assert.equal(stored.status, 'failed');
      assert.match(stored.error ?? '', /disk quota exceeded \(test trigger\)/);
      assert.equal(stored.error_code, 'ERR_SQLITE_ERROR');
      assert.equal(llm.calls, 2, 'both deliveries generated; the database refused both results');
      const record = await http('GET', `${ai.url}/llm/questions/requests/db-fail-1`);
      assert.equal(record.body.status, 'failed');
      assert.deepEqual(
        (await responsesFor(names, 'db-fail-1')).map((m) => m.value!.eventData.status),
        ['failed'],
      );
      const dead = await waitFor('the dead letter', async () => {
        const list = await readDeadLetters(bus, {
          group: names.generatorGroup,
          topic: questionTopics(names.topics).request,
        });
        return list.length > 0 ? list : undefined;
      });
      assert.equal(dead.length, 1);
      assert.equal(dead[0]!.attempts, 2);
      assert.equal(dead[0]!.decoded?.value.eventData.request_id, 'db-fail-1');
      await stop();
    });

    test('request/reply whose deadline passes mid-generation: a 504, then the request completes once', async () => {
      const llm = new GatedLlm();
      const { ai, content, names, stop } = await startBoth(llm, {}, {}, { requestTimeoutMs: 2_000 });
      try {
        const reply = await http('POST', `${content.url}/api/requests`, {
          request_id: 'rr-late-1',
          topic: 'Python loops',
          num_questions: 2,
          difficulty: 'easy',
        });
        assert.equal(reply.status, 504, JSON.stringify(reply.body));
        assert.equal(reply.body.code, 'AI_SERVICE_TIMEOUT');
        assert.match(String(reply.body.message), /GET \/api\/requests\/rr-late-1 later/);
        await waitFor('the LLM call to be under way', () => llm.calls === 1);
        const during = await http('GET', `${ai.url}/llm/questions/requests/rr-late-1`);
        assert.equal(during.body.status, 'accepted');
        assert.equal(during.body.source, 'request-reply');
      } finally {
        llm.release();
      }
      // The generator consumer owns the request: it finishes it although nobody waits any more.
      const stored = await settled(content.url, 'rr-late-1');
      assert.equal(stored.status, 'completed');
      assert.equal(stored.questions.length, 2);
      const record = await http('GET', `${ai.url}/llm/questions/requests/rr-late-1`);
      assert.equal(record.body.status, 'completed');
      assert.equal(record.body.attempts, 1);
      assert.equal(llm.calls, 1);
      const requests = (await readTopic(bus, questionTopics(names.topics).request)).filter(
        (m) => m.key === 'rr-late-1',
      );
      assert.equal(requests.length, 1, 'the request went through question.request, once');
      assert.equal((await responsesFor(names, 'rr-late-1')).length, 1, 'exactly one response');
      assert.equal(content.stats().stored, 1);
      await stop();
    });

    test('request/reply through the content service: answered in the HTTP response, stored once', async () => {
      const llm = new OfflineProvider();
      const { content, names, stop } = await startBoth(llm);
      const reply = await http<StoredRequest>('POST', `${content.url}/api/requests`, {
        request_id: 'rr-1',
        topic: 'JavaScript promises',
        num_questions: 3,
        difficulty: 'medium',
      });
      assert.equal(reply.status, 200, JSON.stringify(reply.body));
      assert.equal(reply.body.status, 'completed');
      assert.equal(reply.body.questions.length, 3);
      // The same response also went out on question.response; the consumer finds it stored.
      await waitFor('the consumer to see the published copy', () => content.stats().duplicates === 1);
      assert.equal(content.stats().stored, 1);
      assert.equal((await responsesFor(names, 'rr-1')).length, 1);
      // Asking again generates nothing new.
      const again = await http<StoredRequest>('POST', `${content.url}/api/requests`, {
        request_id: 'rr-1',
        topic: 'JavaScript promises',
        num_questions: 3,
        difficulty: 'medium',
      });
      assert.equal(again.status, 200);
      assert.deepEqual(again.body.questions, reply.body.questions);
      assert.equal(llm.calls, 1);
      const conflict = await http('POST', `${content.url}/api/requests`, {
        request_id: 'rr-1',
        topic: 'Git',
        num_questions: 3,
        difficulty: 'medium',
      });
      assert.equal(conflict.status, 409);
      assert.equal(conflict.body.field, 'request_id');
      assert.match(
        String(conflict.body.message),
        /already used for another request \(topic "JavaScript promises"\)/,
      );
      assert.equal(llm.calls, 1);
      await stop();
    });

    test('the generator process killed mid-request: a restarted one finishes it exactly once', async () => {
      const names = freshNames();
      const env = {
        EVENTLINE_URL: engine.url(dir),
        DATABASE_URL: `sqlite:${join(dir, `${names.generatorGroup}-ai.db`)}`,
        AI_SERVICE_PORT: '0',
        KAFKA_QUESTION_REQUEST_TOPIC: names.topics.request,
        KAFKA_QUESTION_RESPONSE_TOPIC: names.topics.response,
        KAFKA_QUESTION_GENERATE_TOPIC: names.topics.generate,
        AI_GENERATOR_GROUP: names.generatorGroup,
        AI_RESPONDER_GROUP: names.responderGroup,
        GENERATOR_SESSION_TIMEOUT: '6s',
        LLM_PROVIDER: 'offline',
      };
      const content = await startContentService({
        host: '127.0.0.1',
        port: 0,
        eventlineUrl: engine.url(dir),
        topics: names.topics,
        databaseUrl: `sqlite:${join(dir, `${names.generatorGroup}-content.db`)}`,
        consumerGroup: names.consumerGroup,
        logger: serviceLogger('content-service', LOG_LEVEL),
      });
      open.push(content);
      // The first generator's LLM takes ten minutes: it is killed in the middle of the call.
      const first = await startProcess(AI_MAIN, { env: { ...env, LLM_OFFLINE_DELAY: '10m' } });
      try {
        const accepted = await http('POST', `${first.url}${GENERATE}`, {
          request_id: 'crash-1',
          topic: 'Python loops',
          num_questions: 5,
          difficulty: 'medium',
        });
        assert.equal(accepted.body.status, 'accepted');
        await waitFor('the first generator to call the LLM', async () => {
          const r = await http('GET', `${first.url}/llm/questions/requests/crash-1`);
          return r.body.attempts === 1;
        });
        first.process.kill('SIGKILL');
        assert.equal(await first.exited, 'SIGKILL');
      } finally {
        await stopProcess(first);
      }
      const second = await startProcess(AI_MAIN, { env });
      try {
        const stored = await settled(content.url, 'crash-1');
        assert.equal(stored.status, 'completed');
        assert.equal(stored.questions.length, 5);
        const record = await http('GET', `${second.url}/llm/questions/requests/crash-1`);
        assert.equal(record.body.status, 'completed');
        assert.equal(record.body.attempts, 2, 'one call in the killed process, one in the new one');
        assert.equal((await responsesFor(names, 'crash-1')).length, 1, 'exactly one response published');
        assert.equal(content.stats().stored, 1);
        assert.equal(content.stats().duplicates, 0);
      } finally {
        await stopProcess(second);
        await content.close();
      }
    });

    test('each service keeps its state in PostgreSQL when DATABASE_URL says so', async () => {
      const aiDb = await createTempDatabase('qgen_ai');
      const contentDb = await createTempDatabase('qgen_content');
      try {
        const llm = new OfflineProvider();
        const { ai, content, stop } = await startBoth(llm, {}, { ai: aiDb.url, content: contentDb.url });
        const body = { request_id: 'pg-1', topic: 'Data structures', num_questions: 2, difficulty: 'hard' };
        assert.equal((await http('POST', `${ai.url}${GENERATE}`, body)).status, 200);
        const stored = await settled(content.url, 'pg-1');
        assert.equal(stored.status, 'completed');
        assert.equal(stored.questions.length, 2);
        assert.equal((await http('POST', `${ai.url}${GENERATE}`, body)).body.duplicate, true);
        assert.equal(llm.calls, 1);
        await stop();
      } finally {
        await aiDb.drop();
        await contentDb.drop();
      }
    });
  });
}

/**
 * Seed 002's AI service. `POST /llm/questions/generate-for-content-service` checks the request,
 * stores it and its `question.request` event in one transaction (the outbox publishes the event),
 * and answers "accepted" at once. The generator consumer (group
 * `ai-service-question-generator-consumer`) calls the LLM through a circuit breaker, with retries,
 * and publishes `question.generation.response` on `question.response`: `completed` with the
 * questions or, after the last attempt, `failed` with the error, the request going to the
 * dead-letter topic as well. A responder answers the same request through Eventline's
 * request/reply on `question.generate`: it accepts it the same way (row and event in one
 * transaction), leaves the generation to the generator consumer, and replies with its response.
 */
import {
  connect,
  type Eventline,
  type Logger,
  REPLAYS_HEADER,
  type Responder,
  type Subscription,
} from 'eventline';
import {
  badRequest,
  buildApp,
  type CommonConfig,
  commonConfig,
  envDuration,
  envInt,
  envString,
  HttpError,
  listen,
  openDatabase,
  type RunningService,
  serveMetrics,
  serviceLogger,
} from '../../shared/index.ts';
import { CircuitBreaker } from './circuit-breaker.ts';
import {
  parseGenerationRequest,
  type QuestionGenerationResponseEvent,
  type QuestionTopicNames,
  questionTopics,
  REQUEST_ID_PATTERN,
  topicNames,
} from './events.ts';
import { AI_SCHEMA, conflicts, QuestionGenerator, type RequestRecord } from './generator.ts';
import { type LlmProvider, providerFromEnv } from './llm/provider.ts';

export const AI_SERVICE = 'ai-service';

export interface AiServiceConfig extends CommonConfig {
  topics: QuestionTopicNames;
  /** `AI_GENERATOR_GROUP`, default `ai-service-question-generator-consumer` (the seed's). */
  generatorGroup: string;
  /** `AI_RESPONDER_GROUP`, default `ai-service-question-generator-responder`. */
  responderGroup: string;
  /** Default: from the environment (`LLM_PROVIDER`, `GOOGLE_API_KEY`, …; see llm/provider.ts). */
  llm: LlmProvider;
  /** LLM calls per request before it fails. `LLM_MAX_ATTEMPTS`, default 5. */
  maxAttempts: number;
  /** Wait before the second attempt; doubles each time, at most 30 s. `LLM_RETRY_DELAY`, default `1s`. */
  retryDelayMs: number;
  /** Failures in a row that open the circuit breaker. `LLM_BREAKER_THRESHOLD`, default 5. */
  breakerThreshold: number;
  /**
   * How long the breaker stays open. `LLM_BREAKER_COOLDOWN`, default `30s`. A request it refuses
   * waits this out before its next delivery, so it does not use up its attempts meanwhile.
   */
  breakerCooldownMs: number;
  /**
   * A generator that dies loses its requests to another after this long. `GENERATOR_SESSION_TIMEOUT`,
   * default `10s`.
   */
  sessionTimeoutMs: number;
  /** Run the generator consumer and the responder in this process. Default true. */
  generator: boolean;
  logger: Logger;
}

/** The configuration from the environment (see {@link AiServiceConfig} for the variables). */
export function aiServiceConfig(
  env: Readonly<Record<string, string | undefined>> = process.env,
): Omit<AiServiceConfig, 'llm'> {
  return {
    ...commonConfig('AI_SERVICE_PORT', 8000, env),
    topics: topicNames(env),
    generatorGroup: envString('AI_GENERATOR_GROUP', 'ai-service-question-generator-consumer', env),
    responderGroup: envString('AI_RESPONDER_GROUP', 'ai-service-question-generator-responder', env),
    maxAttempts: envInt('LLM_MAX_ATTEMPTS', 5, 1, 100, env),
    retryDelayMs: envDuration('LLM_RETRY_DELAY', '1s', env),
    breakerThreshold: envInt('LLM_BREAKER_THRESHOLD', 5, 1, 1000, env),
    breakerCooldownMs: envDuration('LLM_BREAKER_COOLDOWN', '30s', env),
    sessionTimeoutMs: envDuration('GENERATOR_SESSION_TIMEOUT', '10s', env),
    generator: envString('AI_GENERATOR', 'true', env) !== 'false',
    logger: serviceLogger(AI_SERVICE),
  };
}

export interface AiService extends RunningService {
  readonly bus: Eventline;
  readonly llm: LlmProvider;
  readonly breaker: CircuitBreaker;
  readonly config: AiServiceConfig;
}

/** Starts the AI service: settings from `config`, the rest from the environment. */
export async function startAiService(config: Partial<AiServiceConfig> = {}): Promise<AiService> {
  const base = aiServiceConfig();
  const c: AiServiceConfig = { ...base, ...config, llm: config.llm ?? providerFromEnv() };
  const { logger } = c;
  const topics = questionTopics(c.topics);
  const db = await openDatabase(AI_SERVICE, c.databaseUrl);
  let bus: Eventline | undefined;
  let subscription: Subscription | undefined;
  let responder: Responder | undefined;
  const app = buildApp({ onServerError: (err, route) => logger.error({ err, route }, 'request failed') });
  try {
    await db.exec(AI_SCHEMA);
    bus = await connect(c.eventlineUrl, { clientId: AI_SERVICE });
    await bus.ensureTopics([topics.request, topics.response, topics.generate]);
    const outbox = await db.createOutbox(bus);
    const breaker = new CircuitBreaker(`LLM ${c.llm.name}`, {
      failureThreshold: c.breakerThreshold,
      cooldownMs: c.breakerCooldownMs,
      // A call cut short because we are stopping says nothing about the LLM.
      isFailure: (err) => (err as Error | undefined)?.name !== 'AbortError',
      onStateChange: (state, previous) =>
        logger.warn({ state, previous, llm: c.llm.name }, `LLM circuit ${state}`),
    });
    const generator = new QuestionGenerator({
      db,
      outbox,
      topics,
      llm: c.llm,
      breaker,
      logger,
      maxAttempts: c.maxAttempts,
      userId: AI_SERVICE,
    });

    app.post('/llm/questions/generate-for-content-service', async (request) => {
      const data = parseGenerationRequest(request.body);
      const id = data.request_id;
      const { created, record } = await generator.accept(data, 'content-service');
      if (!created) {
        const differs = conflicts(record, data);
        if (differs.length > 0) {
          throw new HttpError(
            409,
            `request_id ${id} was already used for another request (${differs.join(', ')}); send a new request_id`,
            { field: 'request_id', code: 'REQUEST_ID_CONFLICT' },
          );
        }
        logger.info(
          { request_id: id, status: record.status },
          `Duplicate question generation request ${id}: not generated again`,
        );
        return {
          status: 'accepted',
          request_id: id,
          duplicate: true,
          generation_status: record.status,
          event_id: record.request_event_id,
          message: `request ${id} was accepted before (now ${record.status}); it is not generated again`,
        };
      }
      logger.info({ request_id: id }, `Received question generation request ${id} from content service`);
      logger.info(
        { request_id: id, topic: topics.request.name },
        `Question generation request ${id} published to topic: ${topics.request.name}`,
      );
      return {
        status: 'accepted',
        request_id: id,
        event_id: record.request_event_id,
        message: `Question generation request accepted; the questions will be published on ${topics.response.name}`,
      };
    });

    app.get<{ Params: { request_id: string } }>('/llm/questions/requests/:request_id', async (request) => {
      const id = request.params.request_id;
      if (!REQUEST_ID_PATTERN.test(id))
        throw badRequest('request_id', `request_id must be letters, digits and . _ : - only`);
      const record = await generator.get(id);
      if (!record) throw new HttpError(404, `no request ${id}`, { field: 'request_id' });
      return view(record);
    });

    app.get('/health', async () => ({
      status: 'ok',
      service: AI_SERVICE,
      llm: c.llm.name,
      circuit: breaker.stats(),
      outbox: await outbox.backlog(),
      generator: c.generator,
    }));
    serveMetrics(app, bus);

    if (c.generator) {
      subscription = bus.subscribe({
        group: c.generatorGroup,
        topics: [topics.request],
        fromBeginning: true,
        concurrency: { partitions: 3, perPartition: 4 },
        sessionTimeout: c.sessionTimeoutMs,
        retry: {
          attempts: c.maxAttempts,
          initialDelay: c.retryDelayMs,
          maxDelay: '30s',
          multiplier: 2,
          jitter: 0.2,
        },
        handler: (msg, ctx) =>
          generator.handleRequestEvent(msg.value!, {
            attempt: ctx.attempt,
            replayed: msg.headers[REPLAYS_HEADER] !== undefined,
            signal: ctx.signal,
          }),
        onError: (err, info) => {
          if (info.deadLetter) {
            logger.error(
              { err, dead_letter_topic: info.deadLetter, offset: info.offset, partition: info.partition },
              `request moved to dead-letter topic ${info.deadLetter}`,
            );
          } else if (info.poison) logger.error({ err, ...info }, 'unreadable request event');
        },
      });
      responder = bus.respond({
        topic: topics.generate,
        group: c.responderGroup,
        sessionTimeout: c.sessionTimeoutMs,
        handler: (msg, ctx): Promise<QuestionGenerationResponseEvent> =>
          generator.generateNow(msg.value!, ctx.signal),
      });
      await Promise.all([subscription.ready(), responder.ready()]);
    }
    const url = await listen(app, c.host, c.port);
    logger.info(
      { url, llm: c.llm.name, engine: c.eventlineUrl, database: db.description },
      'AI service listening',
    );
    const started = bus;
    let closing: Promise<void> | undefined;
    return {
      name: AI_SERVICE,
      url,
      bus: started,
      llm: c.llm,
      breaker,
      config: c,
      close: () => {
        closing ??= (async () => {
          await app.close();
          await Promise.all([subscription?.stop(), responder?.stop()]);
          await db.close();
          await started.close();
        })();
        return closing;
      },
    };
  } catch (err) {
    await app.close().catch(() => {});
    await Promise.all([subscription?.stop(), responder?.stop()]).catch(() => {});
    await db.close().catch(() => {});
    await bus?.close().catch(() => {});
    throw err;
  }
}

function view(r: RequestRecord): Record<string, unknown> {
  const response = r.response ? (JSON.parse(r.response) as QuestionGenerationResponseEvent) : undefined;
  return {
    request_id: r.request_id,
    status: r.status,
    topic: r.topic,
    num_questions: r.num_questions,
    difficulty: r.difficulty,
    source: r.source,
    attempts: r.attempts,
    llm: r.provider,
    accepted_at: r.accepted_at,
    finished_at: r.finished_at,
    ...(r.error ? { error: r.error, error_code: r.error_code } : {}),
    ...(response ? { response_event_id: response.eventId, questions: response.eventData.questions } : {}),
  };
}

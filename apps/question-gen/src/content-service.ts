/**
 * Seed 002's content service. Its consumer (group `content-service-question-consumer`) reads
 * `question.request` (a request is known, `pending`, as soon as it is accepted) and
 * `question.response` (its questions), and stores the questions per request, each response once:
 * the request id is the key of its row and (request id, position) of each question, so a
 * redelivered or republished response changes nothing. `GET /api/requests/:id` shows a request's
 * status and questions.
 *
 * `POST /api/requests` is the second way in: the same request sent with Eventline's request/reply
 * to the AI service's responder, answered in the HTTP response once the questions exist.
 */
import { connect, type Eventline, isEventlineError, type Logger, type Subscription } from 'eventline';
import {
  badRequest,
  buildApp,
  type CommonConfig,
  commonConfig,
  envDuration,
  envString,
  HttpError,
  listen,
  openDatabase,
  type RunningService,
  type ServiceDatabase,
  serveMetrics,
  serviceLogger,
} from '../../shared/index.ts';
import {
  isResponseEvent,
  parseGenerationRequest,
  type Question,
  type QuestionGenerationRequestData,
  type QuestionGenerationRequestEvent,
  type QuestionGenerationResponseEvent,
  type QuestionTopicNames,
  questionTopics,
  REQUEST_ID_PATTERN,
  requestEvent,
  topicNames,
} from './events.ts';

export const CONTENT_SERVICE = 'content-service';

export const CONTENT_SCHEMA = `
CREATE TABLE IF NOT EXISTS content_requests (
  request_id TEXT PRIMARY KEY,
  topic TEXT,
  num_questions INTEGER,
  difficulty TEXT,
  status TEXT NOT NULL,
  total_questions INTEGER NOT NULL DEFAULT 0,
  error TEXT,
  error_code TEXT,
  response_event_id TEXT,
  requested_at TEXT,
  answered_at TEXT,
  updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS content_questions (
  request_id TEXT NOT NULL,
  position INTEGER NOT NULL,
  question TEXT NOT NULL,
  options TEXT NOT NULL,
  correct_answer TEXT NOT NULL,
  explanation TEXT NOT NULL,
  difficulty TEXT NOT NULL,
  PRIMARY KEY (request_id, position)
)`;

export interface ContentServiceConfig extends CommonConfig {
  topics: QuestionTopicNames;
  /** `CONTENT_CONSUMER_GROUP`, default `content-service-question-consumer`. */
  consumerGroup: string;
  /** How long `POST /api/requests` waits for the AI service. `CONTENT_REQUEST_TIMEOUT`, default `60s`. */
  requestTimeoutMs: number;
  logger: Logger;
}

export function contentServiceConfig(
  env: Readonly<Record<string, string | undefined>> = process.env,
): ContentServiceConfig {
  return {
    ...commonConfig('CONTENT_SERVICE_PORT', 8003, env),
    topics: topicNames(env),
    consumerGroup: envString('CONTENT_CONSUMER_GROUP', 'content-service-question-consumer', env),
    requestTimeoutMs: envDuration('CONTENT_REQUEST_TIMEOUT', '60s', env),
    logger: serviceLogger(CONTENT_SERVICE),
  };
}

/** A request as the content service stores it. */
export interface StoredRequest {
  request_id: string;
  status: 'pending' | 'completed' | 'failed';
  topic: string | null;
  num_questions: number | null;
  difficulty: string | null;
  total_questions: number;
  questions: Question[];
  error?: string;
  error_code?: string;
  response_event_id: string | null;
  requested_at: string | null;
  answered_at: string | null;
}

export interface ContentService extends RunningService {
  readonly bus: Eventline;
  /** What the consumer did: responses stored, and copies of responses already stored. */
  stats(): { stored: number; duplicates: number };
}

/** The content service's rows: requests and their questions. */
export class ContentStore {
  readonly #db: ServiceDatabase;

  constructor(db: ServiceDatabase) {
    this.#db = db;
  }

  /** Notes a request as pending; fills in what a response that came first did not know. */
  async recordRequest(data: QuestionGenerationRequestData): Promise<void> {
    const now = new Date().toISOString();
    await this.#db.run(
      `INSERT INTO content_requests (request_id, topic, num_questions, difficulty, status, requested_at, updated_at)
       VALUES (?, ?, ?, ?, 'pending', ?, ?)
       ON CONFLICT (request_id) DO UPDATE SET
         topic = COALESCE(content_requests.topic, excluded.topic),
         num_questions = COALESCE(content_requests.num_questions, excluded.num_questions),
         difficulty = COALESCE(content_requests.difficulty, excluded.difficulty),
         requested_at = COALESCE(content_requests.requested_at, excluded.requested_at)`,
      [data.request_id, data.topic, data.num_questions, data.difficulty, now, now],
    );
  }

  /**
   * Stores a response and its questions in one transaction, unless the request has its answer
   * already (a `completed` response replaces only a `failed` one). True when stored.
   */
  storeResponse(event: QuestionGenerationResponseEvent): Promise<boolean> {
    const d = event.eventData;
    const now = new Date().toISOString();
    return this.#db.transaction(async (tx) => {
      const rows = await tx.query(
        `INSERT INTO content_requests
           (request_id, status, total_questions, error, error_code, response_event_id, answered_at, updated_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (request_id) DO UPDATE SET
           status = excluded.status, total_questions = excluded.total_questions, error = excluded.error,
           error_code = excluded.error_code, response_event_id = excluded.response_event_id,
           answered_at = excluded.answered_at, updated_at = excluded.updated_at
         WHERE content_requests.status = 'pending'
            OR (content_requests.status = 'failed' AND excluded.status = 'completed')
         RETURNING request_id`,
        [
          d.request_id,
          d.status,
          d.total_questions,
          d.error ?? null,
          d.error_code ?? null,
          event.eventId,
          now,
          now,
        ],
      );
      if (rows.length === 0) return false;
      for (const [i, q] of d.questions.entries()) {
        await tx.run(
          `INSERT INTO content_questions (request_id, position, question, options, correct_answer, explanation, difficulty)
           VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (request_id, position) DO NOTHING`,
          [
            d.request_id,
            i + 1,
            q.question,
            JSON.stringify(q.options),
            q.correct_answer,
            q.explanation,
            q.difficulty,
          ],
        );
      }
      return true;
    });
  }

  async get(requestId: string): Promise<StoredRequest | undefined> {
    const [r] = await this.#db.query('SELECT * FROM content_requests WHERE request_id = ?', [requestId]);
    if (!r) return undefined;
    const questions = await this.#db.query(
      'SELECT question, options, correct_answer, explanation, difficulty FROM content_questions WHERE request_id = ? ORDER BY position',
      [requestId],
    );
    return {
      request_id: r.request_id as string,
      status: r.status as StoredRequest['status'],
      topic: (r.topic as string | null) ?? null,
      num_questions: r.num_questions === null ? null : Number(r.num_questions),
      difficulty: (r.difficulty as string | null) ?? null,
      total_questions: Number(r.total_questions),
      questions: questions.map((q) => ({
        question: q.question as string,
        options: JSON.parse(q.options as string) as string[],
        correct_answer: q.correct_answer as string,
        explanation: q.explanation as string,
        difficulty: q.difficulty as Question['difficulty'],
      })),
      ...(r.error ? { error: r.error as string, error_code: r.error_code as string } : {}),
      response_event_id: (r.response_event_id as string | null) ?? null,
      requested_at: (r.requested_at as string | null) ?? null,
      answered_at: (r.answered_at as string | null) ?? null,
    };
  }

  async list(limit: number): Promise<Record<string, unknown>[]> {
    const rows = await this.#db.query(
      `SELECT request_id, status, topic, num_questions, difficulty, total_questions, requested_at, answered_at
       FROM content_requests ORDER BY updated_at DESC, request_id LIMIT ?`,
      [limit],
    );
    return rows.map((r) => ({ ...r }));
  }
}

/** Starts the content service: settings from `config`, the rest from the environment. */
export async function startContentService(
  config: Partial<ContentServiceConfig> = {},
): Promise<ContentService> {
  const c: ContentServiceConfig = { ...contentServiceConfig(), ...config };
  const { logger } = c;
  const topics = questionTopics(c.topics);
  const db = await openDatabase(CONTENT_SERVICE, c.databaseUrl);
  const store = new ContentStore(db);
  const counts = { stored: 0, duplicates: 0 };
  let bus: Eventline | undefined;
  let subscription: Subscription | undefined;
  const app = buildApp({ onServerError: (err, route) => logger.error({ err, route }, 'request failed') });
  try {
    await db.exec(CONTENT_SCHEMA);
    bus = await connect(c.eventlineUrl, { clientId: CONTENT_SERVICE });
    await bus.ensureTopics([topics.request, topics.response, topics.generate]);
    const started = bus;

    const store1 = async (event: QuestionGenerationResponseEvent, via: string): Promise<void> => {
      const id = event.eventData.request_id;
      if (await store.storeResponse(event)) {
        counts.stored++;
        logger.info(
          {
            request_id: id,
            status: event.eventData.status,
            total_questions: event.eventData.total_questions,
            via,
          },
          `Stored ${event.eventData.status} response for request ${id}`,
        );
      } else {
        counts.duplicates++;
        logger.info(
          { request_id: id, event_id: event.eventId, via },
          `Response for request ${id} already stored: ignored`,
        );
      }
    };

    subscription = bus.subscribe({
      group: c.consumerGroup,
      topics: [topics.request, topics.response],
      fromBeginning: true,
      concurrency: 3,
      handler: async (msg) => {
        if (msg.topic === topics.request.name) {
          await store.recordRequest((msg.value as QuestionGenerationRequestEvent).eventData);
        } else {
          await store1(msg.value as QuestionGenerationResponseEvent, msg.topic);
        }
      },
      onError: (err, info) => {
        if (info.deadLetter || info.poison) logger.error({ err, ...info }, 'event could not be stored');
      },
    });

    app.get<{ Params: { id: string } }>('/api/requests/:id', async (request) => {
      const id = request.params.id;
      if (!REQUEST_ID_PATTERN.test(id))
        throw badRequest('id', 'a request id is letters, digits and . _ : - only');
      const found = await store.get(id);
      if (!found) throw new HttpError(404, `no request ${id} (not sent, or not seen yet)`, { field: 'id' });
      return found;
    });

    app.get<{ Querystring: { limit?: string } }>('/api/requests', async (request) => {
      const raw = request.query.limit;
      const limit = raw === undefined ? 20 : Number(raw);
      if (!Number.isInteger(limit) || limit < 1 || limit > 500) {
        throw badRequest('limit', `limit must be a whole number from 1 to 500, got ${JSON.stringify(raw)}`);
      }
      return { requests: await store.list(limit) };
    });

    app.post('/api/requests', async (request) => {
      const data = parseGenerationRequest(request.body, { requestIdOptional: true });
      const id = data.request_id;
      await store.recordRequest(data);
      logger.info(
        { request_id: id, via: topics.generate.name },
        `Requesting questions for ${id} through request/reply`,
      );
      let reply: unknown;
      try {
        reply = await started.request(topics.generate, requestEvent(data, CONTENT_SERVICE), {
          key: id,
          timeout: c.requestTimeoutMs,
        });
      } catch (err) {
        if (isEventlineError(err, 'EVENTLINE_ERR_TIMEOUT')) {
          throw new HttpError(
            504,
            `the AI service did not answer request ${id} within ${c.requestTimeoutMs} ms; a request it received is still generated, and its answer stored here: GET /api/requests/${id} later (if it stays pending, send the same request again: it is not generated twice)`,
            { code: 'AI_SERVICE_TIMEOUT' },
          );
        }
        if (isEventlineError(err, 'EVENTLINE_ERR_REMOTE')) {
          const remote = err.details as { code?: string; message?: string } | undefined;
          if (remote?.code === 'REQUEST_ID_CONFLICT') {
            throw new HttpError(409, `${remote.message}; send a new request_id`, {
              field: 'request_id',
              code: 'REQUEST_ID_CONFLICT',
            });
          }
          throw new HttpError(502, `the AI service failed request ${id}: ${err.message}`, {
            code: 'AI_SERVICE_ERROR',
          });
        }
        throw err;
      }
      if (!isResponseEvent(reply)) {
        throw new HttpError(
          502,
          `the AI service answered request ${id} with something that is not a response event`,
          {
            code: 'AI_SERVICE_BAD_REPLY',
          },
        );
      }
      await store1(reply, 'request-reply');
      return store.get(id);
    });

    app.get('/health', async () => ({ status: 'ok', service: CONTENT_SERVICE, ...counts }));
    serveMetrics(app, started);

    await subscription.ready();
    const url = await listen(app, c.host, c.port);
    logger.info({ url, engine: c.eventlineUrl, database: db.description }, 'content service listening');
    let closing: Promise<void> | undefined;
    return {
      name: CONTENT_SERVICE,
      url,
      bus: started,
      stats: () => ({ ...counts }),
      close: () => {
        closing ??= (async () => {
          await app.close();
          await subscription?.stop();
          await db.close();
          await started.close();
        })();
        return closing;
      },
    };
  } catch (err) {
    await app.close().catch(() => {});
    await subscription?.stop().catch(() => {});
    await db.close().catch(() => {});
    await bus?.close().catch(() => {});
    throw err;
  }
}

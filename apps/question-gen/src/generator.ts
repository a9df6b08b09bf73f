/**
 * The AI service's state and its question generator. One table, `question_requests`, keyed by
 * `request_id`, holds every request the service accepted and what became of it; the outbox in the
 * same database carries the events. That table is what makes the service idempotent:
 *
 * - accepting a request inserts its row and its `question.request` event in one transaction; a
 *   second request with the same id finds the row and publishes nothing;
 * - a request event is generated only by the event its row was accepted with (a copy of the
 *   event, or another event reusing the id, is skipped);
 * - a response is published only by the update that moves the row from `accepted` to `completed`
 *   or `failed`, in the same transaction, so a request redelivered after a crash can call the LLM
 *   again but never publishes a second response.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { isRetryable, type Logger, NonRetryableError } from 'eventline';
import type { ServiceDatabase, ServiceOutbox, Sql } from '../../shared/index.ts';
import { type CircuitBreaker, CircuitOpenError } from './circuit-breaker.ts';
import {
  isQuestion,
  type Question,
  type QuestionGenerationRequestData,
  type QuestionGenerationRequestEvent,
  type QuestionGenerationResponseEvent,
  type QuestionTopics,
  requestEvent,
  responseEvent,
} from './events.ts';
import type { LlmProvider } from './llm/provider.ts';

export type RequestStatus = 'accepted' | 'completed' | 'failed';
/** How a request reached the service. */
export type RequestSource = 'http' | 'request-reply' | 'topic';

/** A row of `question_requests`, as `GET /llm/questions/requests/:id` shows it. */
export interface RequestRecord {
  request_id: string;
  topic: string;
  num_questions: number;
  difficulty: string;
  user_id: string;
  source: RequestSource;
  request_event_id: string;
  status: RequestStatus;
  /** LLM calls made for it, across retries and restarts. */
  attempts: number;
  provider: string | null;
  error: string | null;
  error_code: string | null;
  response_event_id: string | null;
  /** The response event as published (JSON text). */
  response: string | null;
  accepted_at: string;
  finished_at: string | null;
}

export const AI_SCHEMA = `
CREATE TABLE IF NOT EXISTS question_requests (
  request_id TEXT PRIMARY KEY,
  topic TEXT NOT NULL,
  num_questions INTEGER NOT NULL,
  difficulty TEXT NOT NULL,
  user_id TEXT NOT NULL,
  source TEXT NOT NULL,
  request_event_id TEXT NOT NULL,
  status TEXT NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  provider TEXT,
  error TEXT,
  error_code TEXT,
  response_event_id TEXT,
  response TEXT,
  accepted_at TEXT NOT NULL,
  finished_at TEXT
)`;

export interface GeneratorOptions {
  db: ServiceDatabase;
  outbox: ServiceOutbox;
  topics: QuestionTopics;
  llm: LlmProvider;
  breaker: CircuitBreaker;
  logger: Logger;
  /** LLM calls per request before it fails (the consumer's delivery attempts). */
  maxAttempts: number;
  /** `userId` of the response events. */
  userId: string;
}

export interface AcceptResult {
  /** False when a request with this id existed already: nothing was published. */
  created: boolean;
  record: RequestRecord;
}

export interface HandleContext {
  /** The delivery attempt (1, 2, …): the last one turns a failure into a `failed` response. */
  attempt: number;
  /** The record came back from its dead-letter topic: a request that failed may be tried again. */
  replayed: boolean;
  signal: AbortSignal;
}

const SELECT = 'SELECT * FROM question_requests WHERE request_id = ?';

export class QuestionGenerator {
  readonly #o: GeneratorOptions;

  constructor(options: GeneratorOptions) {
    this.#o = options;
  }

  async get(requestId: string, sql: Sql = this.#o.db): Promise<RequestRecord | undefined> {
    const [row] = await sql.query<RequestRecord & Record<string, unknown>>(SELECT, [requestId]);
    return row === undefined
      ? undefined
      : { ...row, attempts: Number(row.attempts), num_questions: Number(row.num_questions) };
  }

  /**
   * Accepts a request from HTTP: inserts its row and publishes its `question.request` event in one
   * transaction. A request id seen before publishes nothing and returns the existing record.
   */
  accept(data: QuestionGenerationRequestData, userId: string): Promise<AcceptResult> {
    return this.#accept(requestEvent(data, userId), 'http');
  }

  #accept(event: QuestionGenerationRequestEvent, source: RequestSource): Promise<AcceptResult> {
    const id = event.eventData.request_id;
    return this.#o.outbox.transaction(async (tx) => {
      if (!(await this.#insert(tx, event, source)))
        return { created: false, record: (await this.get(id, tx))! };
      await tx.publish(this.#o.topics.request, event, { key: id });
      return { created: true, record: (await this.get(id, tx))! };
    });
  }

  /** Inserts the row for `event` unless its request id exists; true when inserted. */
  async #insert(sql: Sql, event: QuestionGenerationRequestEvent, source: RequestSource): Promise<boolean> {
    const d = event.eventData;
    const rows = await sql.query(
      `INSERT INTO question_requests
         (request_id, topic, num_questions, difficulty, user_id, source, request_event_id, status, accepted_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, 'accepted', ?)
       ON CONFLICT (request_id) DO NOTHING RETURNING request_id`,
      [
        d.request_id,
        d.topic,
        d.num_questions,
        d.difficulty,
        event.userId,
        source,
        event.eventId,
        new Date().toISOString(),
      ],
    );
    return rows.length === 1;
  }

  /** The row for `event`, inserted if the event came from elsewhere (another publisher). */
  async #rowFor(event: QuestionGenerationRequestEvent, source: RequestSource): Promise<RequestRecord> {
    const existing = await this.get(event.eventData.request_id);
    if (existing) return existing;
    await this.#o.db.transaction((tx) => this.#insert(tx, event, source));
    return (await this.get(event.eventData.request_id))!;
  }

  /**
   * Handles a `question.request` event (the generator consumer). Resolves when the request is
   * answered or needs nothing; rejects to have it delivered again later; on the last attempt a
   * failure is stored, published as a `failed` response, and rethrown as `NonRetryableError` so the
   * record also goes to the dead-letter topic. A failure outside the LLM call (the database, the
   * outbox) on the last attempt is stored as `failed` too, as far as the database lets it, and
   * rethrown: the record goes to the dead-letter topic, and the request does not stay `accepted`.
   */
  async handleRequestEvent(event: QuestionGenerationRequestEvent, ctx: HandleContext): Promise<void> {
    try {
      await this.#generate(event, ctx);
    } catch (err) {
      // A NonRetryableError from #generate means the failure is stored and published already.
      if (ctx.signal.aborted || err instanceof NonRetryableError) throw err;
      if (ctx.attempt < this.#o.maxAttempts && isRetryable(err)) throw err;
      const id = event.eventData.request_id;
      this.#o.logger.error(
        { request_id: id, attempt: ctx.attempt, of: this.#o.maxAttempts, err },
        'question generation failed for good outside the LLM call',
      );
      await this.#finish(id, 'failed', [], err, codeOf(err, 'INTERNAL_ERROR')).catch((finishErr: unknown) =>
        this.#o.logger.error(
          { request_id: id, err: finishErr },
          'the failure could not be stored either: the request stays accepted until its dead letter is replayed',
        ),
      );
      throw err;
    }
  }

  async #generate(event: QuestionGenerationRequestEvent, ctx: HandleContext): Promise<void> {
    const { logger } = this.#o;
    const id = event.eventData.request_id;
    const row = await this.#rowFor(event, 'topic');
    if (row.request_event_id !== event.eventId) {
      logger.warn(
        { request_id: id, event_id: event.eventId },
        'duplicate request event for a known request_id: skipped',
      );
      return;
    }
    if (row.status === 'completed') {
      logger.info({ request_id: id }, 'request already answered: skipped');
      return;
    }
    if (row.status === 'failed' && !ctx.replayed) {
      // Stored and published as failed already (a crash came before the dead letter): finish the job.
      throw new NonRetryableError(`request ${id} failed: ${row.error}`, {
        code: row.error_code ?? 'GENERATION_FAILED',
      });
    }
    logger.info(
      { request_id: id, topic: event.eventData.topic, attempt: ctx.attempt },
      `Received question generation request - request_id: ${id}, topic: ${event.eventData.topic}`,
    );
    let questions: Question[];
    try {
      questions = await this.#callLlm(event.eventData, ctx.signal);
    } catch (err) {
      if (ctx.signal.aborted) throw err; // shutting down or the partition moved: someone tries again
      const last = ctx.attempt >= this.#o.maxAttempts || !isRetryable(err);
      logger.warn(
        { request_id: id, attempt: ctx.attempt, of: this.#o.maxAttempts, err },
        last ? 'question generation failed for good' : 'question generation failed; will retry',
      );
      if (!last) {
        // The open breaker refused without calling the LLM. Redelivered at once, the request would be
        // refused again and use up its attempts while the breaker cools down: wait until a trial
        // call may go through, so the request fails only if the LLM itself keeps failing.
        if (err instanceof CircuitOpenError && err.retryInMs > 0) {
          await sleep(err.retryInMs, undefined, { signal: ctx.signal });
        }
        throw err;
      }
      await this.#finish(id, 'failed', [], err);
      throw new NonRetryableError(
        `request ${id} failed after ${ctx.attempt} attempt(s): ${(err as Error).message}`,
        {
          code: codeOf(err),
          cause: err,
        },
      );
    }
    await this.#finish(id, 'completed', questions);
    logger.info(
      { request_id: id, total_questions: questions.length },
      `Question generation completed and response published - request_id: ${id}`,
    );
  }

  /**
   * Answers a request sent with Eventline's request/reply. The request takes the durable path: its
   * row and its `question.request` event are written in one transaction, as {@link accept} does,
   * so the generator consumer (with its retries and dead letters) generates it. This only waits for
   * the row to be answered and resolves with its response event, which is also published on
   * `question.response` like any other. A request id accepted before is not generated again: this
   * waits for that request's answer. When `signal` aborts (the requester's deadline, or the
   * responder stopping), this rejects and the generation goes on: the response is still published.
   */
  async generateNow(
    event: QuestionGenerationRequestEvent,
    signal: AbortSignal,
  ): Promise<QuestionGenerationResponseEvent> {
    const id = event.eventData.request_id;
    const { created, record } = await this.#accept(event, 'request-reply');
    const differs = conflicts(record, event.eventData);
    if (differs.length > 0) {
      throw Object.assign(
        new Error(`request_id ${id} was already used for another request (${differs.join(', ')})`),
        {
          code: 'REQUEST_ID_CONFLICT',
        },
      );
    }
    if (created) {
      this.#o.logger.info(
        { request_id: id, via: 'request-reply', topic: this.#o.topics.request.name },
        `Received question generation request - request_id: ${id}; handed to the generator through ${this.#o.topics.request.name}`,
      );
    }
    let row = record;
    try {
      while (row.status === 'accepted') {
        await sleep(100, undefined, { signal });
        row = (await this.get(id))!;
      }
    } catch (err) {
      if (!signal.aborted) throw err;
      throw Object.assign(
        new Error(
          `request ${id} is not answered yet; it is still being generated, and its response will be published on ${this.#o.topics.response.name}`,
        ),
        { code: 'STILL_PENDING', cause: err },
      );
    }
    return JSON.parse(row.response!) as QuestionGenerationResponseEvent;
  }

  async #callLlm(data: QuestionGenerationRequestData, signal: AbortSignal): Promise<Question[]> {
    const id = data.request_id;
    await this.#o.db.run(
      'UPDATE question_requests SET attempts = attempts + 1, provider = ? WHERE request_id = ?',
      [this.#o.llm.name, id],
    );
    this.#o.logger.info(
      { request_id: id, num_questions: data.num_questions, llm: this.#o.llm.name },
      `Generating questions - request_id: ${id}, num_questions: ${data.num_questions}`,
    );
    const questions = await this.#o.breaker.run(() =>
      this.#o.llm.generateQuestions(
        { topic: data.topic, numQuestions: data.num_questions, difficulty: data.difficulty },
        signal,
      ),
    );
    if (questions.length !== data.num_questions || !questions.every(isQuestion)) {
      throw Object.assign(
        new Error(
          `${this.#o.llm.name} returned ${questions.length} question(s), not ${data.num_questions} well-formed ones`,
        ),
        { code: 'INVALID_LLM_OUTPUT' },
      );
    }
    return questions;
  }

  /**
   * Moves the row to its outcome and publishes the response, in one transaction: `accepted` →
   * `completed` or `failed`, and `failed` → `completed` (a replayed request that now succeeded).
   * When the row has moved already (another generation won) nothing is published.
   */
  async #finish(
    id: string,
    status: 'completed' | 'failed',
    questions: Question[],
    err?: unknown,
    code: string = codeOf(err),
  ): Promise<void> {
    const published = await this.#o.outbox.transaction(async (tx) => {
      const response = responseEvent(
        {
          request_id: id,
          status,
          questions,
          total_questions: questions.length,
          ...(status === 'failed' ? { error: (err as Error)?.message ?? String(err), error_code: code } : {}),
        },
        this.#o.userId,
      );
      const changed = await tx.run(
        `UPDATE question_requests
           SET status = ?, error = ?, error_code = ?, response_event_id = ?, response = ?, finished_at = ?
         WHERE request_id = ? AND (status = 'accepted' OR (status = 'failed' AND ? = 'completed'))`,
        [
          status,
          response.eventData.error ?? null,
          response.eventData.error_code ?? null,
          response.eventId,
          JSON.stringify(response),
          new Date().toISOString(),
          id,
          status,
        ],
      );
      if (changed === 0) return false;
      await tx.publish(this.#o.topics.response, response, { key: id });
      return true;
    });
    if (!published)
      this.#o.logger.info({ request_id: id, status }, 'request was answered meanwhile: nothing published');
  }
}

/** The fields in which a stored request differs from `data`, as `name "stored value"`. */
export function conflicts(row: RequestRecord, data: QuestionGenerationRequestData): string[] {
  return (['topic', 'num_questions', 'difficulty'] as const)
    .filter((f) => row[f] !== data[f])
    .map((f) => `${f} ${JSON.stringify(row[f])}`);
}

/** A stable code for a failure, written to the `failed` response and the dead letter. */
function codeOf(err: unknown, fallback = 'LLM_ERROR'): string {
  const code = (err as { code?: unknown } | undefined)?.code;
  return typeof code === 'string' && code !== '' ? code : fallback;
}

/**
 * Seed 002's events: the envelope (`eventId`, `eventType`, `eventData`, `userId`) and its two
 * payloads, as the seed's Pydantic models define them, on JSON topics whose codec checks every value
 * on publish and on read. A record that does not have the shape is refused on publish
 * (EVENTLINE_ERR_ENCODE) and goes to the dead-letter topic when read, never into a handler.
 */
import { randomUUID } from 'node:crypto';
import { defineTopic, json, type Topic } from 'eventline';
import { envString, objectBody, requireInt, requireOneOf, requireString } from '../../shared/index.ts';

export const DIFFICULTIES = ['easy', 'medium', 'hard'] as const;
export type Difficulty = (typeof DIFFICULTIES)[number];

/** Most questions one request may ask for. */
export const MAX_QUESTIONS = 20;

/** `QuestionGenerationRequestData`. */
export interface QuestionGenerationRequestData {
  request_id: string;
  topic: string;
  num_questions: number;
  difficulty: Difficulty;
}

/** One generated multiple-choice question. `correct_answer` is one of `options`, word for word. */
export interface Question {
  question: string;
  options: string[];
  correct_answer: string;
  explanation: string;
  difficulty: Difficulty;
}

/** `QuestionGenerationResponseData`: `completed` with the questions, or `failed` with the error. */
export interface QuestionGenerationResponseData {
  request_id: string;
  status: 'completed' | 'failed';
  questions: Question[];
  total_questions: number;
  /** Why it failed (status `failed` only). */
  error?: string;
  /** A stable code for the failure: `LLM_ERROR`, `CIRCUIT_OPEN`, `INVALID_LLM_OUTPUT`, … */
  error_code?: string;
}

export interface EventEnvelope<T extends string, D> {
  eventId: string;
  eventType: T;
  eventData: D;
  userId: string;
}

export type QuestionGenerationRequestEvent = EventEnvelope<
  'question.generation.request',
  QuestionGenerationRequestData
>;
export type QuestionGenerationResponseEvent = EventEnvelope<
  'question.generation.response',
  QuestionGenerationResponseData
>;

export const REQUEST_EVENT_TYPE = 'question.generation.request';
export const RESPONSE_EVENT_TYPE = 'question.generation.response';

/** Request ids become record keys and URL path segments: keep them plain. */
export const REQUEST_ID_PATTERN = /^[A-Za-z0-9._:-]{1,128}$/;

// ---- shape checks --------------------------------------------------------------------------------

const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);
const isText = (v: unknown): v is string => typeof v === 'string' && v.trim() !== '';

export function isRequestData(v: unknown): v is QuestionGenerationRequestData {
  return (
    isObject(v) &&
    typeof v.request_id === 'string' &&
    REQUEST_ID_PATTERN.test(v.request_id) &&
    isText(v.topic) &&
    Number.isInteger(v.num_questions) &&
    (v.num_questions as number) >= 1 &&
    (v.num_questions as number) <= MAX_QUESTIONS &&
    (DIFFICULTIES as readonly unknown[]).includes(v.difficulty)
  );
}

export function isQuestion(v: unknown): v is Question {
  return (
    isObject(v) &&
    isText(v.question) &&
    Array.isArray(v.options) &&
    v.options.length >= 2 &&
    v.options.every(isText) &&
    new Set(v.options).size === v.options.length &&
    typeof v.correct_answer === 'string' &&
    v.options.includes(v.correct_answer) &&
    typeof v.explanation === 'string' &&
    (DIFFICULTIES as readonly unknown[]).includes(v.difficulty)
  );
}

export function isResponseData(v: unknown): v is QuestionGenerationResponseData {
  if (!isObject(v) || typeof v.request_id !== 'string' || !Array.isArray(v.questions)) return false;
  if (!v.questions.every(isQuestion) || v.total_questions !== v.questions.length) return false;
  if (v.status === 'completed') return true;
  return v.status === 'failed' && typeof v.error === 'string';
}

function isEnvelope(v: unknown, type: string): v is Record<string, unknown> & { eventData: unknown } {
  return isObject(v) && isText(v.eventId) && v.eventType === type && isText(v.userId) && 'eventData' in v;
}

export const isRequestEvent = (v: unknown): v is QuestionGenerationRequestEvent =>
  isEnvelope(v, REQUEST_EVENT_TYPE) && isRequestData(v.eventData);
export const isResponseEvent = (v: unknown): v is QuestionGenerationResponseEvent =>
  isEnvelope(v, RESPONSE_EVENT_TYPE) && isResponseData(v.eventData);

// ---- topics --------------------------------------------------------------------------------------

/** Topic names; the seed's environment variables override them. */
export interface QuestionTopicNames {
  /** `KAFKA_QUESTION_REQUEST_TOPIC`, default `question.request`. */
  request: string;
  /** `KAFKA_QUESTION_RESPONSE_TOPIC`, default `question.response`. */
  response: string;
  /** Requests sent with Eventline's request/reply. `KAFKA_QUESTION_GENERATE_TOPIC`, default `question.generate`. */
  generate: string;
}

export function topicNames(
  env: Readonly<Record<string, string | undefined>> = process.env,
): QuestionTopicNames {
  return {
    request: envString('KAFKA_QUESTION_REQUEST_TOPIC', 'question.request', env),
    response: envString('KAFKA_QUESTION_RESPONSE_TOPIC', 'question.response', env),
    generate: envString('KAFKA_QUESTION_GENERATE_TOPIC', 'question.generate', env),
  };
}

export interface QuestionTopics {
  request: Topic<QuestionGenerationRequestEvent>;
  response: Topic<QuestionGenerationResponseEvent>;
  generate: Topic<QuestionGenerationRequestEvent>;
}

/** The declared topics: 3 partitions each (as the seed creates them), keyed by request id. */
export function questionTopics(names: QuestionTopicNames = topicNames()): QuestionTopics {
  const byRequest = (e: { eventData: { request_id: string } }): string => e.eventData.request_id;
  return {
    request: defineTopic(names.request, {
      partitions: 3,
      key: byRequest,
      type: REQUEST_EVENT_TYPE,
      value: json({ validate: isRequestEvent }),
    }),
    response: defineTopic(names.response, {
      partitions: 3,
      key: byRequest,
      type: RESPONSE_EVENT_TYPE,
      value: json({ validate: isResponseEvent }),
    }),
    generate: defineTopic(names.generate, {
      partitions: 3,
      key: byRequest,
      type: REQUEST_EVENT_TYPE,
      value: json({ validate: isRequestEvent }),
    }),
  };
}

// ---- building events -----------------------------------------------------------------------------

export function requestEvent(
  data: QuestionGenerationRequestData,
  userId: string,
): QuestionGenerationRequestEvent {
  return {
    eventId: `evt_qgen_request_${randomUUID()}`,
    eventType: REQUEST_EVENT_TYPE,
    eventData: data,
    userId,
  };
}

export function responseEvent(
  data: QuestionGenerationResponseData,
  userId: string,
): QuestionGenerationResponseEvent {
  return {
    eventId: `evt_qgen_response_${randomUUID()}`,
    eventType: RESPONSE_EVENT_TYPE,
    eventData: data,
    userId,
  };
}

/**
 * Checks an HTTP body against `QuestionGenerationRequestData`; throws a 400 naming the first bad
 * field. With `requestIdOptional`, a missing `request_id` gets a fresh one.
 */
export function parseGenerationRequest(
  body: unknown,
  options: { requestIdOptional?: boolean } = {},
): QuestionGenerationRequestData {
  const b = objectBody(body);
  const request_id =
    options.requestIdOptional && (b.request_id === undefined || b.request_id === null)
      ? `req-${randomUUID()}`
      : requireString(b, 'request_id', {
          max: 128,
          pattern: REQUEST_ID_PATTERN,
          patternText: 'letters, digits and . _ : - only (at most 128)',
        });
  return {
    request_id,
    topic: requireString(b, 'topic', { max: 200 }),
    num_questions: requireInt(b, 'num_questions', 1, MAX_QUESTIONS),
    difficulty: requireOneOf(b, 'difficulty', DIFFICULTIES),
  };
}

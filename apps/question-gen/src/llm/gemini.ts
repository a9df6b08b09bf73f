/**
 * Google Gemini through Google's official SDK (`@google/genai`). The SDK is imported on the first
 * call, so a service on the offline provider never loads it. The model is asked for JSON matching
 * a schema; the answer is checked question by question before anything is stored.
 */
import { NonRetryableError } from 'eventline';
import { isQuestion, type Question } from '../events.ts';
import type { LlmProvider, QuestionSpec } from './provider.ts';

export interface GeminiProviderOptions {
  apiKey: string;
  /** Default `gemini-2.5-flash`. */
  model?: string;
  /** Each call is aborted after this long. Default 60 000. */
  timeoutMs?: number;
}

/** The model's answer did not have the promised shape. Retryable: the next answer may. */
export class InvalidLlmOutputError extends Error {
  override name = 'InvalidLlmOutputError';
  readonly code = 'INVALID_LLM_OUTPUT';
}

const RESPONSE_SCHEMA = {
  type: 'object',
  properties: {
    questions: {
      type: 'array',
      items: {
        type: 'object',
        properties: {
          question: { type: 'string' },
          options: { type: 'array', items: { type: 'string' }, minItems: 4, maxItems: 4 },
          correct_answer: { type: 'string', description: 'exactly one of the options, word for word' },
          explanation: { type: 'string' },
          difficulty: { type: 'string', enum: ['easy', 'medium', 'hard'] },
        },
        required: ['question', 'options', 'correct_answer', 'explanation', 'difficulty'],
      },
    },
  },
  required: ['questions'],
} as const;

/** The prompt sent for `spec`. */
export function promptFor(spec: QuestionSpec): string {
  return [
    `Write ${spec.numQuestions} multiple-choice questions about "${spec.topic}" at ${spec.difficulty} difficulty.`,
    'Each question has exactly four distinct options, one of which is correct; correct_answer repeats',
    'that option word for word. Add a one-sentence explanation of the answer.',
  ].join(' ');
}

/**
 * Reads the model's JSON answer. Throws `InvalidLlmOutputError` saying what is wrong: not JSON, no
 * `questions` array, the wrong number of questions, or a question without the required shape.
 */
export function parseQuestions(text: string | undefined, spec: QuestionSpec): Question[] {
  if (!text) throw new InvalidLlmOutputError('the model returned no text');
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new InvalidLlmOutputError(`the model's answer is not JSON: ${text.slice(0, 80)}`);
  }
  const list = (parsed as { questions?: unknown } | null)?.questions;
  if (!Array.isArray(list)) throw new InvalidLlmOutputError('the answer has no "questions" array');
  if (list.length !== spec.numQuestions) {
    throw new InvalidLlmOutputError(
      `asked for ${spec.numQuestions} questions, the model gave ${list.length}`,
    );
  }
  const bad = list.findIndex((q) => !isQuestion(q));
  if (bad >= 0) {
    throw new InvalidLlmOutputError(
      `question ${bad + 1} is malformed (needs question, 2+ distinct options, correct_answer among them, explanation, difficulty)`,
    );
  }
  return list as Question[];
}

interface GenAiClient {
  models: {
    generateContent(params: {
      model: string;
      contents: string;
      config: Record<string, unknown>;
    }): Promise<{ text: string | undefined }>;
  };
}

export class GeminiProvider implements LlmProvider {
  readonly name: string;
  readonly #apiKey: string;
  readonly #model: string;
  readonly #timeoutMs: number;
  #client: Promise<GenAiClient> | undefined;

  constructor(options: GeminiProviderOptions) {
    if (!options.apiKey) throw new Error('GeminiProvider needs an API key (GOOGLE_API_KEY)');
    this.#apiKey = options.apiKey;
    this.#model = options.model ?? 'gemini-2.5-flash';
    this.#timeoutMs = options.timeoutMs ?? 60_000;
    this.name = `gemini:${this.#model}`;
  }

  #sdk(): Promise<GenAiClient> {
    this.#client ??= import('@google/genai').then(
      ({ GoogleGenAI }) => new GoogleGenAI({ apiKey: this.#apiKey }) as unknown as GenAiClient,
    );
    return this.#client;
  }

  async generateQuestions(spec: QuestionSpec, signal?: AbortSignal): Promise<Question[]> {
    const client = await this.#sdk();
    const timeout = AbortSignal.timeout(this.#timeoutMs);
    let response: { text: string | undefined };
    try {
      response = await client.models.generateContent({
        model: this.#model,
        contents: promptFor(spec),
        config: {
          responseMimeType: 'application/json',
          responseJsonSchema: RESPONSE_SCHEMA,
          abortSignal: signal ? AbortSignal.any([signal, timeout]) : timeout,
        },
      });
    } catch (err) {
      // A refused key or a bad request will not get better by asking again.
      const status = (err as { status?: unknown }).status;
      if (status === 400 || status === 401 || status === 403 || status === 404) {
        throw new NonRetryableError(
          `Gemini refused the request (HTTP ${status}): ${(err as Error).message}`,
          {
            code: 'LLM_REQUEST_REFUSED',
            cause: err,
          },
        );
      }
      throw err;
    }
    return parseQuestions(response.text, spec);
  }
}

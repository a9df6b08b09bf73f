/**
 * The offline generator: well-formed multiple-choice questions from the bundled question bank,
 * chosen by how well each subject's keywords match the requested topic. Deterministic: the same
 * topic, count and difficulty always give the same questions, options in the same order.
 *
 * It can be scripted for tests and demonstrations: fail the first `failTimes` calls, and take
 * `delayMs` per call (aborted by the signal, as a real HTTP call would be).
 */
import { createHash } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { DIFFICULTIES, type Difficulty, type Question } from '../events.ts';
import type { LlmProvider, QuestionSpec } from './provider.ts';
import { type BankQuestion, type BankSubject, QUESTION_BANK } from './question-bank.ts';

export interface OfflineProviderOptions {
  /** The first this many calls reject with an `LlmUnavailableError`. Default 0. */
  failTimes?: number;
  /** Each call takes this long. Default 0. */
  delayMs?: number;
  bank?: readonly BankSubject[];
}

/** The scripted failure: what an overloaded LLM API looks like to the caller. */
export class LlmUnavailableError extends Error {
  override name = 'LlmUnavailableError';
  readonly code = 'LLM_UNAVAILABLE';
}

export class OfflineProvider implements LlmProvider {
  readonly name = 'offline';
  readonly #failTimes: number;
  readonly #delayMs: number;
  readonly #bank: readonly BankSubject[];
  #calls = 0;

  constructor(options: OfflineProviderOptions = {}) {
    this.#failTimes = options.failTimes ?? 0;
    this.#delayMs = options.delayMs ?? 0;
    this.#bank = options.bank ?? QUESTION_BANK;
  }

  /** Calls made so far, failed ones included. */
  get calls(): number {
    return this.#calls;
  }

  async generateQuestions(spec: QuestionSpec, signal?: AbortSignal): Promise<Question[]> {
    const call = ++this.#calls;
    signal?.throwIfAborted();
    if (this.#delayMs > 0) await sleep(this.#delayMs, undefined, signal ? { signal } : {});
    if (call <= this.#failTimes) {
      throw new LlmUnavailableError(
        `offline LLM: scripted failure ${call} of ${this.#failTimes} (503 overloaded)`,
      );
    }
    return pickQuestions(this.#bank, spec);
  }
}

const words = (text: string): string[] => text.toLowerCase().match(/[a-z0-9+#]+/g) ?? [];

/** A stable number for `text`, to order ties and options without randomness. */
function rank(text: string): number {
  return createHash('sha256').update(text).digest().readUInt32BE(0);
}

function distance(a: Difficulty, b: Difficulty): number {
  return Math.abs(DIFFICULTIES.indexOf(a) - DIFFICULTIES.indexOf(b));
}

/** Chooses `spec.numQuestions` questions: best-matching subjects first, the asked difficulty first. */
export function pickQuestions(bank: readonly BankSubject[], spec: QuestionSpec): Question[] {
  const asked = new Set(words(spec.topic));
  const seed = `${spec.topic.toLowerCase()}|${spec.difficulty}`;
  const subjects = bank
    .map((s) => ({
      s,
      score: s.keywords.filter((k) => asked.has(k)).length + (asked.has(s.name.toLowerCase()) ? 1 : 0),
    }))
    .sort((a, b) => b.score - a.score || rank(seed + a.s.name) - rank(seed + b.s.name));
  // Within the best subjects, the asked difficulty first, then the nearest ones.
  const candidates: { q: BankQuestion; order: number[] }[] = [];
  subjects.forEach(({ s, score }, i) => {
    for (const q of s.questions) {
      candidates.push({
        q,
        order: [
          score > 0 ? i : subjects.length,
          distance(q.difficulty, spec.difficulty),
          rank(seed + q.question),
        ],
      });
    }
  });
  candidates.sort(
    (a, b) => a.order[0]! - b.order[0]! || a.order[1]! - b.order[1]! || a.order[2]! - b.order[2]!,
  );
  return candidates.slice(0, spec.numQuestions).map(({ q }) => {
    const options = [q.correct, ...q.wrong].sort((a, b) => rank(seed + a) - rank(seed + b));
    return {
      question: q.question,
      options,
      correct_answer: q.correct,
      explanation: q.explanation,
      difficulty: q.difficulty,
    };
  });
}

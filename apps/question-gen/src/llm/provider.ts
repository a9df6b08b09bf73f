/**
 * The LLM behind the question generator: one interface, two providers. Google Gemini (through
 * Google's official SDK) when `GOOGLE_API_KEY` is set; otherwise the offline generator, which
 * needs no network and answers the same request with the same questions every time.
 */
import { envDuration, envInt, envOptional, envString } from '../../../shared/index.ts';
import type { Difficulty, Question } from '../events.ts';
import { GeminiProvider } from './gemini.ts';
import { OfflineProvider } from './offline.ts';

/** What to generate. */
export interface QuestionSpec {
  topic: string;
  numQuestions: number;
  difficulty: Difficulty;
}

export interface LlmProvider {
  /** `offline` or `gemini:<model>`, for logs and `/health`. */
  readonly name: string;
  /**
   * Resolves with exactly `spec.numQuestions` well-formed questions, or rejects. A rejection with
   * Eventline's `NonRetryableError` means trying again cannot help (a refused API key).
   */
  generateQuestions(spec: QuestionSpec, signal?: AbortSignal): Promise<Question[]>;
}

/** Which provider the environment selects, and why; nothing is loaded or contacted yet. */
export interface ProviderChoice {
  kind: 'gemini' | 'offline';
  reason: string;
}

type Env = Readonly<Record<string, string | undefined>>;

/**
 * `LLM_PROVIDER` (`gemini` or `offline`) when set; else Gemini when `GOOGLE_API_KEY` is set, else
 * offline. Throws naming the variable for an unknown provider or Gemini without a key.
 */
export function chooseProvider(env: Env = process.env): ProviderChoice {
  const asked = envOptional('LLM_PROVIDER', env)?.toLowerCase();
  const key = envOptional('GOOGLE_API_KEY', env);
  if (asked === undefined) {
    return key
      ? { kind: 'gemini', reason: 'GOOGLE_API_KEY is set' }
      : { kind: 'offline', reason: 'GOOGLE_API_KEY is not set' };
  }
  if (asked === 'offline') return { kind: 'offline', reason: 'LLM_PROVIDER=offline' };
  if (asked === 'gemini') {
    if (!key) throw new Error('LLM_PROVIDER=gemini needs GOOGLE_API_KEY (a Gemini API key)');
    return { kind: 'gemini', reason: 'LLM_PROVIDER=gemini' };
  }
  throw new Error(`LLM_PROVIDER must be gemini or offline, got "${asked}"`);
}

/**
 * The provider the environment selects (see {@link chooseProvider}). Gemini reads `GEMINI_MODEL`
 * (default `gemini-2.5-flash`) and `LLM_TIMEOUT` (default `60s`); the SDK is loaded on the first
 * call. The offline provider reads `LLM_OFFLINE_FAIL_TIMES` and `LLM_OFFLINE_DELAY` (for tests and
 * demonstrations: fail the first N calls, take this long per call).
 */
export function providerFromEnv(env: Env = process.env): LlmProvider {
  const choice = chooseProvider(env);
  if (choice.kind === 'gemini') {
    return new GeminiProvider({
      apiKey: envString('GOOGLE_API_KEY', '', env),
      model: envString('GEMINI_MODEL', 'gemini-2.5-flash', env),
      timeoutMs: envDuration('LLM_TIMEOUT', '60s', env),
    });
  }
  return new OfflineProvider({
    failTimes: envInt('LLM_OFFLINE_FAIL_TIMES', 0, 0, 1_000_000, env),
    delayMs: envDuration('LLM_OFFLINE_DELAY', '0ms', env),
  });
}

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { NonRetryableError } from 'eventline';
import { DIFFICULTIES, isQuestion } from '../src/events.ts';
import { GeminiProvider, InvalidLlmOutputError, parseQuestions, promptFor } from '../src/llm/gemini.ts';
import { LlmUnavailableError, OfflineProvider } from '../src/llm/offline.ts';
import { chooseProvider, providerFromEnv } from '../src/llm/provider.ts';
import { QUESTION_BANK } from '../src/llm/question-bank.ts';

test('the bundled bank: every question has four distinct options and a known difficulty', () => {
  let n = 0;
  for (const s of QUESTION_BANK) {
    for (const q of s.questions) {
      n++;
      const options = [q.correct, ...q.wrong];
      assert.equal(new Set(options).size, 4, q.question);
      assert.ok(DIFFICULTIES.includes(q.difficulty), q.question);
    }
  }
  assert.ok(n >= 20, 'enough for the largest request');
});

test('offline questions are well formed, on topic, and the same for the same request', async () => {
  const llm = new OfflineProvider();
  const spec = { topic: 'Python Loops', numQuestions: 5, difficulty: 'medium' as const };
  const a = await llm.generateQuestions(spec);
  const b = await new OfflineProvider().generateQuestions(spec);
  assert.equal(a.length, 5);
  assert.ok(a.every(isQuestion));
  assert.deepEqual(a, b, 'deterministic');
  const loops = QUESTION_BANK.find((s) => s.name === 'Python loops')!.questions.map((q) => q.question);
  assert.ok(
    a.every((q) => loops.includes(q.question)),
    'all from the matching subject',
  );
  assert.ok(
    a.slice(0, 3).every((q) => q.difficulty === 'medium'),
    'the asked difficulty first',
  );
  // Any topic gets questions; the largest request is served.
  const other = await llm.generateQuestions({
    topic: 'Underwater basket weaving',
    numQuestions: 20,
    difficulty: 'hard',
  });
  assert.equal(other.length, 20);
  assert.equal(new Set(other.map((q) => q.question)).size, 20, 'no question twice');
  assert.equal(llm.calls, 2);
});

test('the offline provider can be scripted to fail N times, then succeeds', async () => {
  const llm = new OfflineProvider({ failTimes: 2 });
  const spec = { topic: 'SQL', numQuestions: 1, difficulty: 'easy' as const };
  await assert.rejects(llm.generateQuestions(spec), LlmUnavailableError);
  await assert.rejects(llm.generateQuestions(spec), /scripted failure 2 of 2/);
  assert.equal((await llm.generateQuestions(spec)).length, 1);
  assert.equal(llm.calls, 3);
});

test('a slow scripted call is cut short by its signal', async () => {
  const llm = new OfflineProvider({ delayMs: 60_000 });
  const ac = new AbortController();
  const call = llm.generateQuestions({ topic: 'Git', numQuestions: 1, difficulty: 'easy' }, ac.signal);
  ac.abort();
  await assert.rejects(call, { name: 'AbortError' });
});

test('provider selection: Gemini with GOOGLE_API_KEY, offline without, LLM_PROVIDER wins', () => {
  assert.equal(chooseProvider({}).kind, 'offline');
  assert.equal(chooseProvider({ GOOGLE_API_KEY: 'k' }).kind, 'gemini');
  assert.equal(chooseProvider({ GOOGLE_API_KEY: 'k', LLM_PROVIDER: 'offline' }).kind, 'offline');
  assert.equal(chooseProvider({ GOOGLE_API_KEY: ' ' }).kind, 'offline', 'a blank key is no key');
  assert.throws(() => chooseProvider({ LLM_PROVIDER: 'gemini' }), /LLM_PROVIDER=gemini needs GOOGLE_API_KEY/);
  assert.throws(
    () => chooseProvider({ LLM_PROVIDER: 'gpt' }),
    /LLM_PROVIDER must be gemini or offline, got "gpt"/,
  );
  const gemini = providerFromEnv({ GOOGLE_API_KEY: 'k', GEMINI_MODEL: 'gemini-x' });
  assert.ok(gemini instanceof GeminiProvider);
  assert.equal(gemini.name, 'gemini:gemini-x');
  const offline = providerFromEnv({ LLM_OFFLINE_FAIL_TIMES: '3' });
  assert.ok(offline instanceof OfflineProvider);
  assert.throws(
    () => providerFromEnv({ LLM_OFFLINE_FAIL_TIMES: 'x' }),
    /LLM_OFFLINE_FAIL_TIMES must be a whole number/,
  );
  assert.throws(() => providerFromEnv({ LLM_OFFLINE_DELAY: 'soon' }), /LLM_OFFLINE_DELAY must be a duration/);
});

test("Gemini's answers are checked before use", () => {
  const spec = { topic: 'Git', numQuestions: 1, difficulty: 'easy' as const };
  const good = {
    question: 'Which command records staged changes?',
    options: ['git commit', 'git add', 'git push', 'git stash'],
    correct_answer: 'git commit',
    explanation: 'commit records what is staged.',
    difficulty: 'easy',
  };
  assert.deepEqual(parseQuestions(JSON.stringify({ questions: [good] }), spec), [good]);
  assert.throws(() => parseQuestions(undefined, spec), InvalidLlmOutputError);
  assert.throws(() => parseQuestions('Sure! Here are', spec), /not JSON/);
  assert.throws(() => parseQuestions('{"items":[]}', spec), /no "questions" array/);
  assert.throws(
    () => parseQuestions(JSON.stringify({ questions: [good, good] }), spec),
    /asked for 1 questions, the model gave 2/,
  );
  assert.throws(
    () => parseQuestions(JSON.stringify({ questions: [{ ...good, correct_answer: 'git merge' }] }), spec),
    /question 1 is malformed/,
  );
  assert.match(promptFor(spec), /1 multiple-choice questions about "Git" at easy difficulty/);
  assert.ok(
    !(new InvalidLlmOutputError('x') instanceof NonRetryableError),
    'a bad answer is worth asking again',
  );
});

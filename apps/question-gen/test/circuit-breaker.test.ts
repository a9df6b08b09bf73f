import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CircuitBreaker, CircuitOpenError, type CircuitState } from '../src/circuit-breaker.ts';

const fails = (): Promise<never> => Promise.reject(new Error('503'));
const works = (): Promise<string> => Promise.resolve('ok');

function breaker(threshold = 3, cooldownMs = 1000) {
  let now = 0;
  const changes: string[] = [];
  const b = new CircuitBreaker('llm', {
    failureThreshold: threshold,
    cooldownMs,
    now: () => now,
    onStateChange: (s: CircuitState, p: CircuitState) => changes.push(`${p}->${s}`),
  });
  return { b, changes, advance: (ms: number) => (now += ms) };
}

test('opens after the threshold of consecutive failures and refuses without calling', async () => {
  const { b, changes } = breaker(3);
  let calls = 0;
  const counted = () => {
    calls++;
    return fails();
  };
  for (let i = 0; i < 3; i++) await assert.rejects(b.run(counted), /503/);
  assert.equal(b.state, 'open');
  const err = await b.run(counted).catch((e: unknown) => e);
  assert.ok(err instanceof CircuitOpenError);
  assert.equal(err.code, 'CIRCUIT_OPEN');
  assert.equal(err.retryInMs, 1000);
  assert.equal(calls, 3, 'the open breaker did not call');
  assert.deepEqual(changes, ['closed->open']);
  assert.deepEqual(b.stats(), { state: 'open', consecutiveFailures: 3, rejected: 1, opened: 1 });
});

test('a success resets the count of failures in a row', async () => {
  const { b } = breaker(3);
  await assert.rejects(b.run(fails));
  await assert.rejects(b.run(fails));
  assert.equal(await b.run(works), 'ok');
  await assert.rejects(b.run(fails));
  await assert.rejects(b.run(fails));
  assert.equal(b.state, 'closed');
});

test('half-open after the cool-down: one trial; success closes, failure opens again', async () => {
  const { b, advance, changes } = breaker(1, 1000);
  await assert.rejects(b.run(fails));
  advance(999);
  assert.equal(b.state, 'open');
  advance(1);
  assert.equal(b.state, 'half-open');
  // While the trial runs, other calls are refused.
  let release!: () => void;
  const trial = b.run(() => new Promise<string>((r) => (release = () => r('done'))));
  await assert.rejects(b.run(works), CircuitOpenError);
  release();
  assert.equal(await trial, 'done');
  assert.equal(b.state, 'closed');
  await assert.rejects(b.run(fails));
  advance(1000);
  await assert.rejects(b.run(fails), /503/);
  assert.equal(b.state, 'open', 'a failed trial opens it again');
  assert.deepEqual(changes, [
    'closed->open',
    'open->half-open',
    'half-open->closed',
    'closed->open',
    'open->half-open',
    'half-open->open',
  ]);
});

test("errors that are not the dependency's fault do not count", async () => {
  const b = new CircuitBreaker('llm', {
    failureThreshold: 1,
    isFailure: (e) => (e as Error).name !== 'AbortError',
  });
  const aborted = Object.assign(new Error('stopped'), { name: 'AbortError' });
  await assert.rejects(
    b.run(() => Promise.reject(aborted)),
    /stopped/,
  );
  assert.equal(b.state, 'closed');
});

test('bad settings are refused, naming them', () => {
  assert.throws(
    () => new CircuitBreaker('x', { failureThreshold: 0 }),
    /failureThreshold must be a whole number of at least 1, got 0/,
  );
  assert.throws(() => new CircuitBreaker('x', { cooldownMs: -1 }), /cooldownMs must be 0 or more, got -1/);
});

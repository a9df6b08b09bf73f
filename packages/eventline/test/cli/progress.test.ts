import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { createProgress, type ProgressOptions } from '../../src/cli/progress.ts';

/** A stream that keeps what is written, and a clock the test moves. */
function harness(isTTY: boolean, options: Partial<ProgressOptions> = {}, total = true) {
  const writes: string[] = [];
  let t = 1_000_000;
  const progress = createProgress({
    label: 'replay dlq.g.t',
    unit: 'records',
    ...(total ? { total: 100 } : {}),
    stream: { isTTY, write: (s: string) => writes.push(s) },
    now: () => t,
    ...options,
  });
  return {
    progress,
    writes,
    /** What was written so far (a copy: assertions narrow their argument's type). */
    written: (): string[] => [...writes],
    at(ms: number) {
      t = 1_000_000 + ms;
    },
  };
}

describe('the progress reporter', () => {
  test('not on a terminal: plain lines for each further tenth or every 2 s, after a quiet first second', () => {
    const h = harness(false);
    h.at(100);
    h.progress.update(5);
    h.at(900);
    h.progress.update(30);
    assert.deepEqual(h.writes, [], 'nothing within the first second');
    h.at(1200);
    h.progress.update(32);
    h.at(1300);
    h.progress.update(38);
    h.at(1400);
    h.progress.update(41);
    h.at(3400);
    h.progress.update(42);
    h.at(3500);
    h.progress.update(100);
    h.at(4000);
    h.progress.finish();
    assert.deepEqual(h.writes, [
      'replay dlq.g.t: 32/100 records  32%  27/s\n',
      'replay dlq.g.t: 41/100 records  41%  29/s\n',
      'replay dlq.g.t: 42/100 records  42%  12/s\n',
      'replay dlq.g.t: 100/100 records  100%  25/s  in 4.0 s\n',
    ]);
    for (const w of h.written()) assert.ok(!w.includes('\r'), 'no carriage returns off a terminal');
  });

  test('an operation that ends within a second prints nothing', () => {
    const h = harness(false);
    h.at(10);
    h.progress.update(50);
    h.at(20);
    h.progress.update(100);
    h.progress.finish();
    assert.deepEqual(h.writes, []);
  });

  test('on a terminal: one line redrawn in place with a bar, at most every 100 ms, ended by a newline', () => {
    const h = harness(true);
    h.at(1000);
    h.progress.update(50);
    h.at(1050);
    h.progress.update(60);
    h.at(1200);
    h.progress.update(75);
    h.at(2000);
    h.progress.finish('stopped');
    assert.deepEqual(h.writes, [
      '\r\x1b[2Kreplay dlq.g.t  [############............]  50/100 records  50%  50/s',
      '\r\x1b[2Kreplay dlq.g.t  [##################......]  75/100 records  75%  63/s',
      '\r\x1b[2Kreplay dlq.g.t  [##################......]  75/100 records  75%  38/s  in 2.0 s  (stopped)\n',
    ]);
  });

  test('clear removes a bar before an error, and nothing is written after it', () => {
    const h = harness(true);
    h.at(1500);
    h.progress.update(10);
    h.progress.clear();
    h.progress.update(20);
    h.progress.finish();
    assert.deepEqual(h.writes.slice(1), ['\r\x1b[2K']);
  });

  test('with --json: nothing while it runs, then one JSON line', () => {
    const h = harness(false, { json: true });
    for (let i = 1; i <= 10; i++) {
      h.at(i * 1000);
      h.progress.update(i * 10);
    }
    assert.deepEqual(h.writes, []);
    h.progress.finish();
    assert.deepEqual(
      h.writes.map((w) => JSON.parse(w)),
      [{ progress: 'replay dlq.g.t', done: 100, total: 100, elapsedMs: 10_000 }],
    );
  });

  test('without a total: counts and rate only; everyStep: a line per step with its note', () => {
    const h = harness(false, { everyStep: true, rate: false, unit: 'suites' }, false);
    h.progress.update(1, undefined, 'embedded done');
    h.at(5000);
    h.progress.update(2, undefined, 'schemas done');
    h.progress.finish();
    assert.deepEqual(h.writes, [
      'replay dlq.g.t: 1 suites  embedded done\n',
      'replay dlq.g.t: 2 suites  schemas done\n',
      'replay dlq.g.t: 2 suites  in 5.0 s\n',
    ]);
  });
});

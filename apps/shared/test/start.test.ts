/**
 * `npm start` (apps/start.ts) for real: every service a process, on free ports and a fresh engine
 * and data folder; the seed's curl example against it; Ctrl-C (SIGINT) and `--duration` stop it.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, test } from 'node:test';

const START = new URL('../../start.ts', import.meta.url).pathname;
const dir = mkdtempSync(join(tmpdir(), 'apps-start-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const env = {
  ...process.env,
  EVENTLINE_URL: `sqlite:${join(dir, 'events.db')}`,
  APPS_DATA_DIR: join(dir, 'apps'),
  AI_SERVICE_PORT: '0',
  QUESTION_SERVICE_PORT: '0',
  MATCHING_SERVICE_PORT: '0',
  CONTENT_SERVICE_PORT: '0',
  EVENTLINE_LOG_LEVEL: 'error',
};

function run(args: string[]) {
  const child = spawn(process.execPath, [START, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: string[] = [];
  const waiters = new Set<() => void>();
  const onLine = (l: string): void => {
    lines.push(l);
    for (const w of waiters) w();
  };
  createInterface({ input: child.stdout! }).on('line', onLine);
  createInterface({ input: child.stderr! }).on('line', onLine);
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const waitForLine = (pattern: RegExp, timeoutMs = 120_000): Promise<string> =>
    new Promise((resolve, reject) => {
      const check = (): void => {
        const hit = lines.find((l) => pattern.test(l));
        if (hit !== undefined) {
          clearTimeout(timer);
          waiters.delete(check);
          resolve(hit);
        }
      };
      const timer = setTimeout(() => {
        waiters.delete(check);
        reject(new Error(`no line matching ${pattern}; output:\n${lines.join('\n')}`));
      }, timeoutMs);
      waiters.add(check);
      check();
    });
  const urlOf = (service: string): string => {
    const line = lines.find((l) => new RegExp(`^\\s+${service}\\s+http://`).test(l));
    assert.ok(line, `no URL printed for ${service}:\n${lines.join('\n')}`);
    return line.trim().split(/\s+/)[1]!;
  };
  return { child, lines, exited, waitForLine, urlOf };
}

test('npm start: the services listen, the seed example works, Ctrl-C stops them all', async () => {
  const app = run([]);
  await app.waitForLine(/Press Ctrl-C to stop/);
  assert.ok(app.lines.some((l) => /seed 002 topics: question\.request \(created\)/.test(l)));
  assert.ok(app.lines.some((l) => /seed 002: example request req-123 is completed with 5 questions/.test(l)));
  assert.ok(app.lines.some((l) => l.includes('curl -X POST "http://')));
  const ai = app.urlOf('ai-service');
  const content = app.urlOf('content-service');
  // QUESTION_SERVICE_PORT is 0 here: the matching service is told where the question service listens.
  const questions = app.urlOf('question-service');
  assert.ok(
    app.lines.some((l) => l.includes(`HTTP fallback to the question service at ${questions})`)),
    app.lines.join('\n'),
  );

  const accepted = await fetch(`${ai}/llm/questions/generate-for-content-service`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({
      request_id: 'test-123',
      topic: 'Python Basics',
      num_questions: 3,
      difficulty: 'easy',
    }),
  });
  assert.equal(accepted.status, 200);
  assert.equal(((await accepted.json()) as { status: string }).status, 'accepted');
  let stored: { status: string; questions: unknown[] } | undefined;
  for (let i = 0; i < 300 && stored?.status !== 'completed'; i++) {
    const r = await fetch(`${content}/api/requests/test-123`);
    if (r.status === 200) stored = (await r.json()) as typeof stored;
    if (stored?.status !== 'completed') await new Promise((r) => setTimeout(r, 100));
  }
  assert.equal(stored?.status, 'completed');
  assert.equal(stored?.questions.length, 3);

  app.child.kill('SIGINT');
  assert.equal(await app.exited, 0);
  assert.ok(app.lines.some((l) => l.startsWith('Stopped.')));
  await assert.rejects(fetch(`${ai}/health`), 'the AI service is gone');
  await assert.rejects(fetch(`${content}/health`), 'the content service is gone');
});

test('npm start -- --duration 1 stops by itself and continues from the data of the last run', async () => {
  const app = run(['--duration', '1']);
  assert.equal(await app.exited, 0, app.lines.join('\n'));
  assert.ok(app.lines.some((l) => /example request req-123 \(from an earlier run\) is completed/.test(l)));
  assert.ok(app.lines.some((l) => l.startsWith('Stopped.')));
});

test('a bad --duration is refused', async () => {
  const app = run(['--duration', 'soon']);
  assert.equal(await app.exited, 2);
  assert.ok(app.lines.some((l) => l.includes('--duration must be a number of seconds above 0, got "soon"')));
});

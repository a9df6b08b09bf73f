import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';

/** A name no other test run uses: tests share engines, never topics or groups. */
export function unique(prefix: string): string {
  return `${prefix}-${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`;
}

/** Polls `check` until it returns a truthy value; fails with `what` after `timeoutMs`. */
export async function waitFor<T>(
  what: string,
  check: () => T | Promise<T>,
  timeoutMs = 15_000,
  everyMs = 20,
): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await check();
      if (v) return v as NonNullable<T>;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) {
      throw new Error(
        `timed out after ${timeoutMs} ms waiting for ${what}${last ? ` (last error: ${last})` : ''}`,
      );
    }
    await sleep(everyMs);
  }
}

/** Counts how often each id occurs; returns the ids missing from `expected` and those seen twice or more. */
export function tally(
  seen: readonly string[],
  expected: readonly string[],
): { missing: string[]; duplicated: string[] } {
  const counts = new Map<string, number>();
  for (const id of seen) counts.set(id, (counts.get(id) ?? 0) + 1);
  return {
    missing: expected.filter((id) => !counts.has(id)),
    duplicated: [...counts].filter(([, n]) => n > 1).map(([id]) => id),
  };
}

/** A child Node process whose stdout is read as JSON lines. */
export interface Child {
  readonly process: ChildProcess;
  readonly lines: unknown[];
  readonly stderr: string[];
  /** Resolves with the first line (already seen or future) that matches. */
  waitForLine<T = unknown>(what: string, match: (line: T) => boolean, timeoutMs?: number): Promise<T>;
  /** Resolves with the exit code (or signal name). */
  readonly exited: Promise<number | string>;
  kill(signal: NodeJS.Signals): void;
}

/** Starts `script` (a .ts file) with the same Node and one JSON argument. */
export function spawnNode(script: URL, arg: unknown): Child {
  const child = spawn(process.execPath, [script.pathname, JSON.stringify(arg)], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, EVENTLINE_LOG_LEVEL: process.env.EVENTLINE_LOG_LEVEL ?? 'error' },
  });
  const lines: unknown[] = [];
  const stderr: string[] = [];
  const listeners = new Set<() => void>();
  createInterface({ input: child.stdout! }).on('line', (l) => {
    try {
      lines.push(JSON.parse(l));
    } catch {
      lines.push(l);
    }
    for (const fn of listeners) fn();
  });
  createInterface({ input: child.stderr! }).on('line', (l) => stderr.push(l));
  const exited = new Promise<number | string>((resolve) =>
    child.on('exit', (code, signal) => {
      resolve(code ?? signal ?? -1);
      for (const fn of listeners) fn();
    }),
  );
  return {
    process: child,
    lines,
    stderr,
    exited,
    kill: (signal) => {
      child.kill(signal);
    },
    waitForLine<T>(what: string, match: (line: T) => boolean, timeoutMs = 20_000): Promise<T> {
      return new Promise((resolve, reject) => {
        const check = (): void => {
          const hit = lines.find((l) => match(l as T));
          if (hit !== undefined) {
            cleanup();
            resolve(hit as T);
          } else if (child.exitCode !== null || child.signalCode !== null) {
            cleanup();
            reject(new Error(`child exited before ${what}; stderr: ${stderr.slice(-5).join(' | ')}`));
          }
        };
        const timer = setTimeout(() => {
          cleanup();
          reject(new Error(`timed out waiting for ${what}; stderr: ${stderr.slice(-5).join(' | ')}`));
        }, timeoutMs);
        const cleanup = (): void => {
          clearTimeout(timer);
          listeners.delete(check);
        };
        listeners.add(check);
        check();
      });
    },
  };
}

/** What a finished process printed, and its exit code (-1 when a signal ended it). */
export interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** A script running as a process: its output so far, and how it ended once it did. */
export interface Started {
  readonly child: ChildProcess;
  stdout(): string;
  stderr(): string;
  /** Its non-empty stdout lines so far. */
  lines(): string[];
  /** Resolves with the exit code (or signal name) once it ended and its output was read. */
  readonly exited: Promise<number | string>;
  /** Resolves once it ended: exit code and everything it printed. */
  result(): Promise<Run>;
}

export interface ScriptOptions {
  /** The child's whole environment; default ours. */
  env?: NodeJS.ProcessEnv;
  /** Its working directory; default ours. */
  cwd?: string;
  /** Written to its stdin, which is then closed; without it, stdin is empty (`/dev/null`). */
  input?: string;
}

/** Starts `script` (a `.ts` or `.mjs` file) with the same Node and `args`, keeping its output. */
export function startScript(script: string, args: readonly string[], options: ScriptOptions = {}): Started {
  const child = spawn(process.execPath, [script, ...args], {
    env: options.env ?? process.env,
    ...(options.cwd === undefined ? {} : { cwd: options.cwd }),
    stdio: [options.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d) => {
    stdout += d;
  });
  child.stderr!.on('data', (d) => {
    stderr += d;
  });
  if (options.input !== undefined) {
    // A child that exits without reading its input must not fail the test with EPIPE.
    child.stdin!.on('error', () => {});
    child.stdin!.end(options.input);
  }
  // 'close', not 'exit': by then all of its output has been read.
  const exited = new Promise<number | string>((resolve) =>
    child.on('close', (code, signal) => resolve(code ?? signal ?? -1)),
  );
  return {
    child,
    stdout: () => stdout,
    stderr: () => stderr,
    lines: () => stdout.split('\n').filter(Boolean),
    exited,
    result: async () => {
      const code = await exited;
      return { code: typeof code === 'number' ? code : -1, stdout, stderr };
    },
  };
}

/** Runs `script` with the same Node to its end; resolves with its exit code and output. */
export function runScript(
  script: string,
  args: readonly string[],
  options: ScriptOptions = {},
): Promise<Run> {
  return startScript(script, args, options).result();
}

/** Helpers for the catalogue tests: HTTP calls, metric scrapes, waiting, and services as processes. */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from 'eventline';

/** A name no other test run uses. */
export function unique(prefix: string): string {
  return `${prefix}-${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`;
}

/** A fresh folder, removed by the returned function. */
export function tempDir(prefix: string): { dir: string; remove(): void } {
  const dir = mkdtempSync(join(tmpdir(), `${prefix}-`));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Polls `check` until it returns a truthy value; fails naming `what` after `timeoutMs`. */
export async function waitFor<T>(
  what: string,
  check: () => T | Promise<T>,
  timeoutMs = 20_000,
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
    await sleep(10);
  }
}

export interface Reply<T> {
  status: number;
  body: T;
}

/** An HTTP call with a JSON body (if any); the reply's body parsed as JSON when it is JSON. */
// biome-ignore lint/suspicious/noExplicitAny: test replies are checked field by field
export async function http<T = any>(method: string, url: string, body?: unknown): Promise<Reply<T>> {
  const res = await fetch(url, {
    method,
    ...(body === undefined
      ? {}
      : { headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) }),
  });
  const text = await res.text();
  let parsed: unknown = text;
  if ((res.headers.get('content-type') ?? '').includes('json') && text !== '') parsed = JSON.parse(text);
  return { status: res.status, body: parsed as T };
}

/** A Prometheus scrape as `name{label="v",…}` → value, labels in the order the text gives them. */
export async function scrape(baseUrl: string): Promise<Map<string, number>> {
  const res = await fetch(`${baseUrl}/metrics`);
  if (res.status !== 200) throw new Error(`GET /metrics answered ${res.status}`);
  const out = new Map<string, number>();
  for (const line of (await res.text()).split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const at = line.lastIndexOf(' ');
    out.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return out;
}

/** A metric's value, 0 when the series is absent (a counter never incremented). */
export function metric(m: Map<string, number>, series: string): number {
  return m.get(series) ?? 0;
}

/** A logger that keeps every line, for asserting what a service logged. */
export function captureLogger(): Logger & {
  lines: { level: string; msg: string | undefined; obj: object }[];
} {
  const lines: { level: string; msg: string | undefined; obj: object }[] = [];
  const at =
    (level: string) =>
    (obj: object, msg?: string): void => {
      lines.push({ level, msg, obj });
    };
  return { lines, debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
}

/** A service started as a process with `runMain`: its URL once it listens, its log, its exit. */
export interface ServiceProcess {
  readonly url: string;
  readonly process: ChildProcess;
  /** Log lines on stderr, parsed when JSON. */
  readonly log: unknown[];
  readonly exited: Promise<number | string>;
}

/** Starts `script` (a `*-main.ts`) with the same Node, in `cwd`, with `env` added to ours. */
export async function startProcess(
  script: URL,
  options: { cwd: string; env: Record<string, string> },
): Promise<ServiceProcess> {
  const child = spawn(process.execPath, [script.pathname], {
    cwd: options.cwd,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, LOG_LEVEL: 'info', EVENTLINE_LOG_LEVEL: 'warn', ...options.env },
  });
  const log: unknown[] = [];
  createInterface({ input: child.stderr! }).on('line', (l) => {
    try {
      log.push(JSON.parse(l));
    } catch {
      log.push(l);
    }
  });
  const exited = new Promise<number | string>((resolve) =>
    child.on('exit', (code, signal) => resolve(code ?? signal ?? -1)),
  );
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`${script.pathname} did not start: ${tail(log)}`)),
      30_000,
    );
    createInterface({ input: child.stdout! }).on('line', (l) => {
      try {
        const line = JSON.parse(l) as { url?: string };
        if (typeof line.url === 'string') {
          clearTimeout(timer);
          resolve(line.url);
        }
      } catch {
        // not the start line
      }
    });
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`${script.pathname} exited (${code}) before listening: ${tail(log)}`));
    });
  });
  return { url, process: child, log, exited };
}

function tail(log: unknown[]): string {
  return log
    .slice(-5)
    .map((l) => (typeof l === 'string' ? l : JSON.stringify(l)))
    .join(' | ');
}

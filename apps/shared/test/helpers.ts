/**
 * Helpers for the tests of every system under apps/: names, waiting, temporary folders, HTTP calls,
 * metric scrapes, captured logs, reading topics, and services as processes. Names, polling and
 * running a script to its end are Eventline's own test helpers.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { Eventline, Logger, Message, Topic } from 'eventline';
import { waitFor as poll } from '../../../packages/eventline/test/helpers.ts';

export { type Run, runScript, unique } from '../../../packages/eventline/test/helpers.ts';

/**
 * Polls `check` until it returns a truthy value; fails naming `what` after `timeoutMs` (default
 * 60 s: services here start as processes and, on Kafka, join consumer groups first).
 */
export function waitFor<T>(
  what: string,
  check: () => T | Promise<T>,
  timeoutMs = 60_000,
): Promise<NonNullable<T>> {
  return poll(what, check, timeoutMs);
}

/** A fresh folder, removed by the returned function. */
export function tempDir(prefix: string): { dir: string; remove(): void } {
  const dir = mkdtempSync(join(tmpdir(), `${prefix}-`));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

export interface Reply<T> {
  status: number;
  body: T;
}

/**
 * An HTTP call with `body` sent as JSON (or `raw`, text sent as JSON as it is: a malformed body);
 * the reply's body parsed as JSON when it is JSON, else its text.
 */
// biome-ignore lint/suspicious/noExplicitAny: test replies are checked field by field
export async function http<T = any>(
  method: string,
  url: string,
  body?: unknown,
  raw?: string,
): Promise<Reply<T>> {
  const res = await fetch(url, {
    method,
    ...(body === undefined && raw === undefined
      ? {}
      : { headers: { 'content-type': 'application/json' }, body: raw ?? JSON.stringify(body) }),
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

/** Every record of `topic`, all partitions, oldest first per partition. */
export async function readTopic<V>(bus: Eventline, topic: Topic<V, string>): Promise<Message<V, string>[]> {
  const out: Message<V, string>[] = [];
  for (const { partition, start, end } of await bus.reader.offsets(topic.name)) {
    let from = start;
    while (from < end) {
      const batch = await bus.reader.read(topic, { partition, from: { offset: from }, max: 500 });
      if (batch.length === 0) break;
      out.push(...batch);
      from = batch[batch.length - 1]!.offset + 1;
    }
  }
  return out;
}

/** A service started as a process with `runMain`: its URL once it listens, its log, its exit. */
export interface ServiceProcess {
  readonly url: string;
  readonly process: ChildProcess;
  /** Log lines on stderr, parsed when JSON. */
  readonly log: unknown[];
  /** Resolves with the exit code (or signal name). */
  readonly exited: Promise<number | string>;
}

/**
 * Starts `script` (a `*-main.ts`) with the same Node, in `cwd` (default ours), with `env` added to
 * ours; resolves once it printed the URL it listens on. Fails with the end of its log when it exits
 * first or says nothing for 60 s.
 */
export async function startProcess(
  script: URL,
  options: { cwd?: string; env: Record<string, string> },
): Promise<ServiceProcess> {
  const child = spawn(process.execPath, [script.pathname], {
    ...(options.cwd === undefined ? {} : { cwd: options.cwd }),
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
      60_000,
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

/** Stops a service process with SIGTERM (unless it ended already); resolves with its exit code. */
export function stopProcess(p: ServiceProcess): Promise<number | string> {
  if (p.process.exitCode === null && p.process.signalCode === null) p.process.kill('SIGTERM');
  return p.exited;
}

/**
 * The service processes of one test file, all working in one fresh folder (`dir`). Call `cleanup()`
 * in `after`: it kills those still running and removes the folder.
 */
export function serviceProcesses(prefix: string): {
  readonly dir: string;
  start(script: URL, env: Record<string, string>): Promise<ServiceProcess>;
  cleanup(): Promise<void>;
} {
  const temp = tempDir(prefix);
  const running = new Set<ServiceProcess>();
  return {
    dir: temp.dir,
    async start(script, env) {
      const p = await startProcess(script, { cwd: temp.dir, env });
      running.add(p);
      void p.exited.then(() => running.delete(p));
      return p;
    },
    async cleanup() {
      for (const p of running) {
        p.process.kill('SIGKILL');
        await p.exited;
      }
      temp.remove();
    },
  };
}

function tail(log: unknown[]): string {
  return log
    .slice(-5)
    .map((l) => (typeof l === 'string' ? l : JSON.stringify(l)))
    .join(' | ');
}

/** Helpers for the seed 002 tests: names, polling, HTTP, service processes, reading topics. */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Eventline, Message, Topic } from 'eventline';

/** A name no other run uses (tests share engines, never topics or groups). */
export function unique(prefix: string): string {
  return `${prefix}-${Date.now().toString(36)}-${randomBytes(3).toString('hex')}`;
}

/** Polls `check` until it returns a truthy value; fails naming `what` after `timeoutMs`. */
export async function waitFor<T>(
  what: string,
  check: () => T | Promise<T>,
  timeoutMs = 60_000,
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
    await sleep(50);
  }
}

export interface HttpReply<T = Record<string, unknown>> {
  status: number;
  body: T;
}

export async function http<T = Record<string, unknown>>(
  method: 'GET' | 'POST',
  url: string,
  body?: unknown,
  raw?: string,
): Promise<HttpReply<T>> {
  const res = await fetch(url, {
    method,
    ...(body !== undefined || raw !== undefined
      ? { headers: { 'content-type': 'application/json' }, body: raw ?? JSON.stringify(body) }
      : {}),
  });
  return { status: res.status, body: (await res.json()) as T };
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

/** A service started as its own process: `node <script>`; its first stdout line gives its URL. */
export interface ServiceProcess {
  readonly child: ChildProcess;
  readonly url: string;
  readonly stderr: string[];
  readonly exited: Promise<number | string>;
}

export async function spawnService(script: URL, env: Record<string, string>): Promise<ServiceProcess> {
  const child = spawn(process.execPath, [script.pathname], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, EVENTLINE_LOG_LEVEL: 'error', LOG_LEVEL: 'warn', ...env },
  });
  const stderr: string[] = [];
  createInterface({ input: child.stderr! }).on('line', (l) => stderr.push(l));
  const exited = new Promise<number | string>((resolve) =>
    child.on('exit', (code, signal) => resolve(code ?? signal ?? -1)),
  );
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`${script.pathname} did not start; stderr: ${stderr.join(' | ')}`)),
      60_000,
    );
    createInterface({ input: child.stdout! }).once('line', (line) => {
      clearTimeout(timer);
      try {
        resolve((JSON.parse(line) as { url: string }).url);
      } catch {
        reject(new Error(`unexpected first line from ${script.pathname}: ${line}`));
      }
    });
    void exited.then((code) => {
      clearTimeout(timer);
      reject(
        new Error(`${script.pathname} exited (${code}) before listening; stderr: ${stderr.join(' | ')}`),
      );
    });
  });
  return { child, url, stderr, exited };
}

/** Stops a service process: SIGTERM, and resolves once it exited. */
export async function stopProcess(p: ServiceProcess): Promise<void> {
  if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGTERM');
  await p.exited;
}

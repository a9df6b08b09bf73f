/**
 * `npm start`: the reference systems of the seed documents, each service its own process, all on
 * one engine (the embedded `sqlite:.eventline/events.db` unless EVENTLINE_URL says otherwise).
 *
 * 1. Each system's topics (and schemas) are ensured once, here, before its services start.
 * 2. The services start as child processes; each prints its URL when it listens.
 * 3. Seed data goes in, and the URLs and the seed documents' curl examples are printed.
 *
 *   npm start                     runs until Ctrl-C (every service finishes its work and stops)
 *   npm start -- --duration 20    stops by itself after 20 seconds
 *
 * Ports: AI_SERVICE_PORT (8000), QUESTION_SERVICE_PORT (8001), MATCHING_SERVICE_PORT (8002),
 * CONTENT_SERVICE_PORT (8003).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import module from 'node:module';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { connect, DEFAULT_URL } from 'eventline';
import type { SystemSetup } from './shared/index.ts';

module.enableCompileCache?.();

/**
 * The systems and their services, in start order. A system whose files are missing is left out. A
 * service's `urlOf` sets variables to the URL of another service of its system, which it waits for
 * (unless the variable is set already).
 */
const SYSTEMS: {
  seed: string;
  title: string;
  setup: string;
  services: { name: string; script: string; urlOf?: Record<string, string> }[];
}[] = [
  {
    seed: '000',
    title: 'question catalogue: topic and difficulty lists, cached by the matching service',
    setup: 'catalogue/src/setup.ts',
    services: [
      { name: 'question-service', script: 'catalogue/src/question-service-main.ts' },
      {
        name: 'matching-service',
        script: 'catalogue/src/matching-service-main.ts',
        urlOf: { QUESTION_SERVICE_URL: 'question-service' },
      },
    ],
  },
  {
    seed: '002',
    title: 'AI question generation: request and response events between the AI and content services',
    setup: 'question-gen/src/setup.ts',
    services: [
      { name: 'ai-service', script: 'question-gen/src/ai-service-main.ts' },
      { name: 'content-service', script: 'question-gen/src/content-service-main.ts' },
    ],
  },
];

const HERE = new URL('./', import.meta.url);
const ROOT = new URL('../', import.meta.url).pathname;
const path = (relative: string): string => new URL(relative, HERE).pathname;

const { values } = parseArgs({ options: { duration: { type: 'string' } } });
const duration = values.duration === undefined ? undefined : Number(values.duration);
if (duration !== undefined && !(duration > 0)) {
  process.stderr.write(`--duration must be a number of seconds above 0, got "${values.duration}"\n`);
  process.exit(2);
}
const url = process.env.EVENTLINE_URL ?? DEFAULT_URL;
const tty = process.stdout.isTTY;
const colours = [36, 33, 35, 32, 34, 31];
const say = (line: string): void => {
  process.stdout.write(`${line}\n`);
};
const bold = (s: string): string => (tty ? `\x1b[1m${s}\x1b[0m` : s);

// ---- 1. topics and schemas, once ---------------------------------------------------------------

const systems = SYSTEMS.map((s) => ({
  ...s,
  services: s.services.filter((svc) => existsSync(path(svc.script))),
  setupModule: existsSync(path(s.setup)) ? path(s.setup) : undefined,
})).filter((s) => s.services.length > 0);

say(bold(`Eventline apps on ${url}`));
const modules = new Map<string, Partial<SystemSetup>>();
{
  const bus = await connect(url, { clientId: 'apps-start' });
  try {
    for (const s of systems) {
      if (!s.setupModule) continue;
      const m = (await import(s.setupModule)) as Partial<SystemSetup>;
      modules.set(s.seed, m);
      for (const line of (await m.setup?.(bus)) ?? []) say(`  ${line}`);
    }
  } finally {
    await bus.close();
  }
}

// ---- 2. the services ----------------------------------------------------------------------------

interface Running {
  name: string;
  child: ChildProcess;
  url?: string;
  exited: Promise<void>;
}
const running: Running[] = [];
let stopping = false;
let colour = 0;

/** A service's JSON log line, shortened for the console; other lines as they are. */
function pretty(line: string): string {
  try {
    const o = JSON.parse(line) as { level?: string; msg?: string; err?: { message?: string } };
    if (typeof o.msg !== 'string') return line;
    const level = o.level === 'info' || o.level === undefined ? '' : `${o.level.toUpperCase()} `;
    return `${level}${o.msg}${o.err?.message ? `: ${o.err.message}` : ''}`;
  } catch {
    return line;
  }
}

function start(name: string, script: string, extraEnv: Record<string, string>): Promise<string> {
  // Its own process group: Ctrl-C reaches this process only, which stops each service once.
  const child = spawn(process.execPath, [path(script)], {
    cwd: ROOT,
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: {
      ...process.env,
      ...extraEnv,
      EVENTLINE_URL: url,
      NODE_COMPILE_CACHE: module.getCompileCacheDir?.() ?? '',
    },
  });
  const c = colours[colour++ % colours.length]!;
  const label = tty ? `\x1b[${c}m${name.padEnd(16)}\x1b[0m` : name.padEnd(16);
  const { promise: listening, resolve, reject } = Promise.withResolvers<string>();
  const recent: string[] = [];
  const r: Running = { name, child, exited: new Promise((done) => child.once('exit', () => done())) };
  createInterface({ input: child.stdout! }).on('line', (l) => {
    if (r.url === undefined) {
      try {
        r.url = (JSON.parse(l) as { url: string }).url;
        resolve(r.url);
        return;
      } catch {
        // not the start-up line
      }
    }
    say(`${label} ${l}`);
  });
  createInterface({ input: child.stderr! }).on('line', (l) => {
    recent.push(l);
    if (recent.length > 20) recent.shift();
    say(`${label} ${pretty(l)}`);
  });
  child.once('exit', (code, signal) => {
    if (!stopping) say(`${label} exited (${signal ?? code})`);
    reject(new Error(`${name} exited (${signal ?? code}) before it listened`));
  });
  running.push(r);
  return listening;
}

async function shutdown(code: number): Promise<never> {
  if (!stopping) {
    stopping = true;
    say('\nStopping: each service finishes its in-flight work and commits.');
    for (const r of running)
      if (r.child.exitCode === null && r.child.signalCode === null) r.child.kill('SIGTERM');
    await Promise.all(running.map((r) => r.exited));
    say('Stopped. Everything is kept in .eventline/; npm start continues where it left off.');
  }
  process.exit(code);
}

process.once('SIGINT', () => void shutdown(0));
process.once('SIGTERM', () => void shutdown(0));
// Should this process die another way, do not leave services holding the ports.
process.once('exit', () => {
  for (const r of running)
    if (r.child.exitCode === null && r.child.signalCode === null) r.child.kill('SIGTERM');
});

const urls: Record<string, string> = {};
try {
  for (const s of systems) {
    const listening = new Map<string, Promise<string>>();
    for (const svc of s.services) {
      listening.set(
        svc.name,
        (async () => {
          const env: Record<string, string> = {};
          for (const [variable, other] of Object.entries(svc.urlOf ?? {})) {
            const given = process.env[variable];
            const u = given === undefined || given.trim() === '' ? await listening.get(other) : given;
            if (u !== undefined) env[variable] = u;
          }
          return start(svc.name, svc.script, env);
        })(),
      );
    }
    const started = await Promise.all([...listening].map(async ([name, p]) => [name, await p] as const));
    for (const [name, u] of started) urls[name] = u;
  }
} catch (err) {
  say(`\n${(err as Error).message}; see its output above (a port in use? set the *_SERVICE_PORT variables).`);
  await shutdown(1);
}

// ---- 3. seed data, URLs, things to try ------------------------------------------------------------

for (const s of systems) {
  for (const line of (await modules
    .get(s.seed)
    ?.seed?.(urls)
    .catch((e: unknown) => [`seed ${s.seed}: ${(e as Error).message}`])) ?? []) {
    say(line);
  }
}

say(`\n${bold('Services')}`);
for (const s of systems) {
  say(`  seed ${s.seed}: ${s.title}`);
  for (const svc of s.services) say(`    ${svc.name.padEnd(18)} ${urls[svc.name]}`);
}
const tries = systems.flatMap((s) => modules.get(s.seed)?.tryIt?.(urls) ?? []);
if (tries.length > 0) {
  say(`\n${bold('Try')}`);
  for (const line of tries) say(`  ${line}`);
}
const cli = url === DEFAULT_URL ? 'npx eventline' : `npx eventline --url ${url}`;
say(`\nLook inside from another terminal: ${cli} topics list, ${cli} groups list, ${cli} dlq list`);
say(duration === undefined ? 'Press Ctrl-C to stop.\n' : `Stopping after ${duration} s.\n`);
if (duration !== undefined) setTimeout(() => void shutdown(0), duration * 1000);

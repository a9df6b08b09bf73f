/**
 * `npm start`: a small system on the embedded engine. Two producer processes publish orders, a
 * consumer group bills them, a third consumer joins later and one leaves: watch the partitions
 * move. Everything is stored in .eventline/events.db, where the eventline CLI finds it.
 *
 *   npm start                 runs until Ctrl-C
 *   npm start -- --duration 20   stops by itself after 20 seconds
 */
import { type ChildProcess, spawn } from 'node:child_process';
import module from 'node:module';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { connect, DEFAULT_URL } from 'eventline';
import { GROUP, orders } from './shared.ts';

module.enableCompileCache?.();

const { values } = parseArgs({ options: { duration: { type: 'string' } } });
const duration = values.duration === undefined ? undefined : Number(values.duration);
const url = process.env.EVENTLINE_URL ?? DEFAULT_URL;
const tty = process.stdout.isTTY;
const colours = [36, 33, 35, 32, 34, 31];

const bus = await connect(url);
await bus.ensureTopics([orders]);
await bus.close();

const say = (line: string): void => {
  process.stdout.write(`${line}\n`);
};
say(`Eventline demo on ${url}: topic ${orders.name} (3 partitions, keyed by customer), group ${GROUP}.`);
say(
  'Two producers and two consumers start now; a third consumer joins after 8 s and the first leaves after 16 s.',
);
say('Look at it from another terminal while it runs:');
// The CLI finds the default database by itself; any other engine is named.
const cli = url === DEFAULT_URL ? 'npx eventline' : `npx eventline --url ${url}`;
say(`  ${cli} topics describe ${orders.name}`);
say(`  ${cli} groups describe ${GROUP}`);
say(`  ${cli} consume ${orders.name} --from-beginning --max 5`);
say(duration === undefined ? 'Press Ctrl-C to stop.\n' : `Stopping after ${duration} s.\n`);

const children = new Map<string, ChildProcess>();
let colour = 0;

function start(script: string, name: string): void {
  const child = spawn(process.execPath, [new URL(script, import.meta.url).pathname, name], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, EVENTLINE_URL: url, NODE_COMPILE_CACHE: module.getCompileCacheDir?.() ?? '' },
  });
  const c = colours[colour++ % colours.length]!;
  const label = tty ? `\x1b[${c}m${name.padEnd(10)}\x1b[0m` : name.padEnd(10);
  createInterface({ input: child.stdout! }).on('line', (l) => say(`${label} ${l}`));
  createInterface({ input: child.stderr! }).on('line', (l) => say(`${label} ${l}`));
  child.on('exit', (code, signal) => {
    children.delete(name);
    if (!stopping) say(`${label} exited (${signal ?? code})`);
  });
  children.set(name, child);
}

async function stop(name: string): Promise<void> {
  const child = children.get(name);
  if (child === undefined) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  await exited;
}

let stopping = false;
const timers: NodeJS.Timeout[] = [];
async function shutdown(): Promise<void> {
  if (stopping) return;
  stopping = true;
  for (const t of timers) clearTimeout(t);
  say('\nStopping: producers first, then consumers (each finishes and commits what it started).');
  for (const name of [...children.keys()].filter((n) => n.startsWith('producer'))) await stop(name);
  await Promise.all([...children.keys()].map(stop));
  const after = await connect(url);
  const d = await after.admin.describeGroup(GROUP);
  await after.close();
  const lag = d.partitions.reduce((s, p) => s + p.lag, 0);
  say(
    `Done. Group ${GROUP} is ${d.state} with ${lag} record(s) not yet billed; run npm start again to continue.`,
  );
  say(`Inspect it: ${cli} groups describe ${GROUP}`);
}

process.once('SIGINT', () => void shutdown());
process.once('SIGTERM', () => void shutdown());

start('./consumer.ts', 'consumer-1');
start('./consumer.ts', 'consumer-2');
start('./producer.ts', 'producer-1');
start('./producer.ts', 'producer-2');
timers.push(setTimeout(() => start('./consumer.ts', 'consumer-3'), 8000));
timers.push(setTimeout(() => void stop('consumer-1').then(() => say('consumer-1 left the group')), 16_000));
if (duration !== undefined) timers.push(setTimeout(() => void shutdown(), duration * 1000));

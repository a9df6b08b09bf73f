/**
 * Schema benchmarks, peers in the same run:
 * - Avro encode and decode of the seed's TaskCreatedEvent through Eventline's codec (wire format,
 *   validation, logical types, safe longs) against raw avsc `toBuffer`/`fromBuffer` on the same
 *   records, and against `@kafkajs/confluent-schema-registry`'s encode/decode.
 * - Schema lookups by id over HTTP from one client against `eventline registry` running in its own
 *   process, as it does in production.
 */
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { SchemaRegistry as KafkajsRegistry } from '@kafkajs/confluent-schema-registry';
import avsc from 'avsc';
import { avro } from '../packages/eventline/src/schema/avro.ts';
import { httpRegistry } from '../packages/eventline/src/schema/http-registry.ts';
import type { InferAvro } from '../packages/eventline/src/schema/infer.ts';
import { TASK_CREATED } from '../packages/eventline/test/schema/fixtures.ts';
import { alternate, type Figure, judge, log, median, round } from './lib.ts';

const PRIORITIES = ['CRITICAL', 'HIGH', 'MEDIUM', 'LOW'] as const;

type TaskCreated = InferAvro<typeof TASK_CREATED>;

function records(n: number): TaskCreated[] {
  const now = Date.now();
  return Array.from({ length: n }, (_, i) => ({
    eventId: randomUUID(),
    eventTimestamp: now + i,
    userId: `user-${i % 997}`,
    taskId: `task-${i}`,
    title: `Write the quarterly report, part ${i}`,
    description: i % 3 === 0 ? null : 'Collect the figures from every team and summarise them',
    priority: PRIORITIES[i % 4]!,
    dueDate: i % 2 === 0 ? null : now + 86_400_000,
    categoryId: i % 5 === 0 ? null : `cat-${i % 17}`,
    tags: i % 4 === 0 ? [] : ['work', `q${(i % 4) + 1}`],
  }));
}

function rate(n: number, fn: () => void): number {
  const t0 = process.hrtime.bigint();
  fn();
  return n / (Number(process.hrtime.bigint() - t0) / 1e9);
}

async function rateAsync(n: number, fn: () => Promise<void>): Promise<number> {
  const t0 = process.hrtime.bigint();
  await fn();
  return n / (Number(process.hrtime.bigint() - t0) / 1e9);
}

/** Starts `eventline registry` in its own process, as it runs in production; returns its URL. */
async function startServer(dir: string): Promise<{ url: string; stop(): Promise<void> }> {
  const bin = new URL('../packages/eventline/bin/eventline.mjs', import.meta.url);
  const child = spawn(
    process.execPath,
    [bin.pathname, 'registry', '--port', '0', '--json', '--url', `sqlite:${join(dir, 'registry.db')}`],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  const [line] = (await once(createInterface({ input: child.stdout! }), 'line')) as [string];
  return {
    url: (JSON.parse(line) as { url: string }).url,
    stop: async () => {
      child.kill('SIGINT');
      await once(child, 'exit');
    },
  };
}

export async function runSchemas(options: { quick: boolean }): Promise<Figure[]> {
  const n = options.quick ? 50_000 : 200_000;
  const reps = options.quick ? 3 : 7;
  const values = records(n);
  const dir = mkdtempSync(join(tmpdir(), 'eventline-bench-schemas-'));
  const server = await startServer(dir);
  const registry = httpRegistry(server.url);
  const figures: Figure[] = [];
  try {
    const codec = avro(TASK_CREATED).bind({
      topic: 'task.created',
      part: 'value',
      registry: async () => registry,
    });
    await codec.prepareEncode?.();
    const raw = avsc.Type.forSchema(TASK_CREATED as unknown as avsc.Schema);
    const framed = values.map((v) => codec.encode(v));
    const rawBytes = values.map((v) => raw.toBuffer(v));
    await codec.prepareDecode?.(framed[0]!);
    // Warm both paths so the first measured repetition is not the JIT's.
    for (let i = 0; i < 20_000; i++) {
      codec.decode(framed[i % n]!);
      raw.fromBuffer(rawBytes[i % n]!);
    }

    log(`schemas: encode ${n} TaskCreatedEvent records x${reps}`);
    const enc = await alternate(
      reps,
      async () =>
        rate(n, () => {
          for (let i = 0; i < n; i++) codec.encode(values[i]!);
        }),
      async () =>
        rate(n, () => {
          for (let i = 0; i < n; i++) raw.toBuffer(values[i]!);
        }),
    );
    log(`schemas: decode ${n} records x${reps}`);
    const dec = await alternate(
      reps,
      async () =>
        rate(n, () => {
          for (let i = 0; i < n; i++) codec.decode(framed[i]!);
        }),
      async () =>
        rate(n, () => {
          for (let i = 0; i < n; i++) raw.fromBuffer(rawBytes[i]!);
        }),
    );

    // The ecosystem's client, against our server: same records, same wire format.
    const peer = new KafkajsRegistry({ host: server.url });
    const { id } = await peer.register(
      { type: 'AVRO' as never, schema: JSON.stringify(TASK_CREATED) },
      { subject: 'task.created-value' },
    );
    const m = Math.min(n, 50_000);
    const peerEnc: number[] = [];
    const peerDec: number[] = [];
    for (let r = 0; r < Math.min(reps, 3); r++) {
      peerEnc.push(
        await rateAsync(m, async () => {
          for (let i = 0; i < m; i++) await peer.encode(id, values[i]);
        }),
      );
      peerDec.push(
        await rateAsync(m, async () => {
          for (let i = 0; i < m; i++) await peer.decode(framed[i]!);
        }),
      );
    }

    figures.push(
      judge({
        name: 'avro encode, TaskCreatedEvent (wire format + validation)',
        value: round(enc.a),
        unit: 'records/s',
        target: { op: '>=', value: 400_000 },
        ratio: { to: 'raw avsc toBuffer', value: round(enc.a / enc.b, 2), target: 0.8 },
        runs: enc.aRuns.map((x) => round(x)),
        note: `raw avsc ${round(enc.b)}/s; @kafkajs/confluent-schema-registry encode ${round(median(peerEnc))}/s`,
      }),
      judge({
        name: 'avro decode, TaskCreatedEvent (wire format + schema lookup)',
        value: round(dec.a),
        unit: 'records/s',
        target: { op: '>=', value: 700_000 },
        ratio: { to: 'raw avsc fromBuffer', value: round(dec.a / dec.b, 2), target: 0.8 },
        runs: dec.aRuns.map((x) => round(x)),
        note: `raw avsc ${round(dec.b)}/s; @kafkajs/confluent-schema-registry decode ${round(median(peerDec))}/s`,
      }),
      {
        name: 'peer: @kafkajs/confluent-schema-registry encode',
        value: round(median(peerEnc)),
        unit: 'records/s',
      },
      {
        name: 'peer: @kafkajs/confluent-schema-registry decode',
        value: round(median(peerDec)),
        unit: 'records/s',
      },
    );

    // Lookups by id over HTTP: one client, keep-alive, sequential requests (no client cache).
    const url = `${server.url}/schemas/ids/${id}`;
    const lookups = async (seconds: number, inFlight: number): Promise<number> => {
      let done = 0;
      const until = Date.now() + seconds * 1000;
      const t0 = process.hrtime.bigint();
      await Promise.all(
        Array.from({ length: inFlight }, async () => {
          while (Date.now() < until) {
            const res = await fetch(url);
            if (res.status !== 200) throw new Error(`lookup answered ${res.status}`);
            await res.arrayBuffer();
            done++;
          }
        }),
      );
      return done / (Number(process.hrtime.bigint() - t0) / 1e9);
    };
    await lookups(1, 1);
    const seconds = options.quick ? 2 : 5;
    log(`schemas: registry lookups by id over HTTP, ${seconds}s sequential and ${seconds}s with 8 in flight`);
    const sequential = await lookups(seconds, 1);
    const concurrent = await lookups(seconds, 8);
    figures.push(
      judge({
        name: 'registry lookups by id over HTTP, one client, 8 requests in flight',
        value: round(concurrent),
        unit: 'lookups/s',
        target: { op: '>=', value: 5_000 },
        note: 'GET /schemas/ids/{id} with fetch (keep-alive, no client cache) against `eventline registry` in its own process',
      }),
      {
        name: 'registry lookups by id over HTTP, one client, one request at a time',
        value: round(sequential),
        unit: 'lookups/s',
        note: 'bound by the round trip: the server was idle most of the time (CPU profile); fetch costs more than the server',
      },
    );
  } finally {
    await server.stop();
    await registry.close();
    rmSync(dir, { recursive: true, force: true });
  }
  return figures;
}

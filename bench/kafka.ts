/**
 * `npm run bench -- kafka`: Eventline's Kafka engine beside raw @platformatic/kafka (the client it
 * is built on) and KafkaJS, on a single local broker, in one run, alternating: batched publish and
 * consume of 1 KiB records with acks=all. The embedded engine is measured beside them. Every figure
 * reports the CPU seconds the client process and the broker's JVM used, since they share two cores.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Consumer, ProduceAcks, Producer } from '@platformatic/kafka';
import { Kafka, logLevel, Partitioners } from 'kafkajs';
import {
  bytes,
  connect,
  defineTopic,
  type Eventline,
  silentLogger,
} from '../packages/eventline/src/index.ts';
import { livePid, nodesFor, startKafka, stopKafka } from '../tools/kafka/kafka.ts';
import { eventlineConsume, eventlinePublish, settle } from './embedded.ts';
import { type Figure, judge, log, median, round } from './lib.ts';

const VALUE = randomBytes(1024);
const BATCH = 1000;
const PARTITIONS = 3;
/**
 * Every consumer fetches as Eventline's group members do: at most 1 MiB per partition and 8 MiB per
 * fetch, waiting at most 500 ms at the broker. @platformatic/kafka's defaults (5 s, 50 MiB, a
 * 1024-message stream buffer) made it 3 to 4 times slower here, which would flatter Eventline.
 */
const FETCH = { maxWaitMs: 500, maxBytes: 8 * 1024 * 1024, maxBytesPerPartition: 1024 * 1024 };
let topicSeq = 0;

interface Run {
  rate: number;
  clientCpu: number;
  brokerCpu: number;
  /** Milliseconds the untimed teardown (leaving the group, closing) took, when there is one. */
  stopMs: number;
}

/** What a timed part may hand back: its teardown, run after the clock stopped. */
type Timed = () => Promise<(() => Promise<void>) | void>;

/** CPU seconds a process has used, from /proc (clock ticks of 10 ms). */
function cpuOf(pid: number | undefined): number {
  if (pid === undefined) return 0;
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return 0;
  }
}

async function measure(n: number, broker: number | undefined, fn: Timed): Promise<Run> {
  const cpu0 = process.cpuUsage();
  const b0 = cpuOf(broker);
  const t0 = performance.now();
  const teardown = await fn();
  const seconds = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const brokerCpu = cpuOf(broker) - b0;
  const t1 = performance.now();
  await teardown?.();
  return {
    rate: n / seconds,
    clientCpu: (cpu.user + cpu.system) / 1e6,
    brokerCpu,
    stopMs: teardown ? performance.now() - t1 : 0,
  };
}

const keyOf = (i: number): string => `key-${i % 1000}`;

/**
 * The headers Eventline puts on each record (CloudEvents binary mode: id, time, type, source,
 * spec version), so that the peers send the same bytes.
 */
function ceHeaders(): Record<string, string> {
  return {
    ce_id: randomUUID(),
    ce_specversion: '1.0',
    ce_type: 'bench',
    ce_source: '/bench',
    ce_time: new Date().toISOString(),
  };
}

const NAME_BUFFERS = new Map(Object.keys(ceHeaders()).map((k) => [k, Buffer.from(k)]));

/** The same headers as a Map of Buffers for @platformatic/kafka, with the names built once. */
function ceHeaderBuffers(): Map<Buffer, Buffer> {
  return new Map(Object.entries(ceHeaders()).map(([k, v]) => [NAME_BUFFERS.get(k)!, Buffer.from(v)]));
}

async function freshTopic(bus: Eventline): Promise<string> {
  const name = `bench-${Date.now().toString(36)}-${++topicSeq}`;
  await bus.admin.createTopic(name, { partitions: PARTITIONS, retention: '1h' });
  return name;
}

// ---- publish --------------------------------------------------------------------------------

async function eventlineKafkaPublish(
  bus: Eventline,
  n: number,
  atomic: boolean,
): Promise<() => Promise<void>> {
  const t = defineTopic(await freshTopic(bus), { partitions: PARTITIONS, value: bytes() });
  return async () => {
    for (let done = 0; done < n; done += BATCH) {
      await bus.publishBatch(
        t,
        Array.from({ length: BATCH }, (_, i) => ({ value: VALUE, key: keyOf(done + i) })),
        { atomic },
      );
    }
  };
}

async function rawPublish(bus: Eventline, brokers: string[], n: number): Promise<() => Promise<void>> {
  const topic = await freshTopic(bus);
  return async () => {
    const producer = new Producer({
      clientId: 'bench-raw',
      bootstrapBrokers: brokers,
      idempotent: true,
      acks: ProduceAcks.ALL,
    });
    try {
      for (let done = 0; done < n; done += BATCH) {
        await producer.send({
          messages: Array.from({ length: BATCH }, (_, i) => ({
            topic,
            key: Buffer.from(keyOf(done + i)),
            value: VALUE,
            headers: ceHeaderBuffers(),
          })),
          acks: ProduceAcks.ALL,
        });
      }
    } finally {
      await producer.close();
    }
  };
}

async function kafkajsPublish(bus: Eventline, brokers: string[], n: number): Promise<() => Promise<void>> {
  const topic = await freshTopic(bus);
  return async () => {
    const kafka = new Kafka({ clientId: 'bench-kafkajs', brokers, logLevel: logLevel.NOTHING });
    const producer = kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner });
    await producer.connect();
    try {
      for (let done = 0; done < n; done += BATCH) {
        await producer.send({
          topic,
          acks: -1,
          messages: Array.from({ length: BATCH }, (_, i) => ({
            key: keyOf(done + i),
            value: VALUE,
            headers: ceHeaders(),
          })),
        });
      }
    } finally {
      await producer.disconnect();
    }
  };
}

// ---- consume --------------------------------------------------------------------------------

async function fill(bus: Eventline, n: number): Promise<string> {
  const t = defineTopic(await freshTopic(bus), { partitions: PARTITIONS, value: bytes() });
  for (let done = 0; done < n; done += BATCH) {
    await bus.publishBatch(
      t,
      Array.from({ length: BATCH }, (_, i) => ({ value: VALUE, key: keyOf(done + i) })),
      {
        atomic: false,
      },
    );
  }
  return t.name;
}

// Each consumer's clock stops at the n-th record; leaving the group is its teardown, timed apart.

function eventlineKafkaConsume(bus: Eventline, topic: string, n: number): Timed {
  return async () => {
    let seen = 0;
    const done = Promise.withResolvers<void>();
    const sub = bus.subscribe({
      group: `bench-eventline-${++topicSeq}`,
      topics: [topic],
      fromBeginning: true,
      concurrency: PARTITIONS,
      handler: () => {
        if (++seen === n) done.resolve();
      },
    });
    await done.promise;
    return () => sub.stop();
  };
}

function rawConsume(brokers: string[], topic: string, n: number): Timed {
  return async () => {
    const consumer = new Consumer({
      clientId: 'bench-raw',
      groupId: `bench-raw-${++topicSeq}`,
      bootstrapBrokers: brokers,
    });
    const stream = await consumer.consume({
      topics: [topic],
      mode: 'earliest',
      autocommit: true,
      maxWaitTime: FETCH.maxWaitMs,
      maxBytes: FETCH.maxBytes,
      maxBytesPerPartition: FETCH.maxBytesPerPartition,
      highWaterMark: 8192,
    });
    let seen = 0;
    await new Promise<void>((resolve) => {
      stream.on('data', () => {
        if (++seen === n) resolve();
      });
    });
    return async () => {
      await stream.close();
      await consumer.close(true);
    };
  };
}

function kafkajsConsume(brokers: string[], topic: string, n: number): Timed {
  return async () => {
    const kafka = new Kafka({ clientId: 'bench-kafkajs', brokers, logLevel: logLevel.NOTHING });
    const consumer = kafka.consumer({
      groupId: `bench-kafkajs-${++topicSeq}`,
      maxWaitTimeInMs: FETCH.maxWaitMs,
      maxBytes: FETCH.maxBytes,
      maxBytesPerPartition: FETCH.maxBytesPerPartition,
    });
    await consumer.connect();
    await consumer.subscribe({ topic, fromBeginning: true });
    let seen = 0;
    const done = Promise.withResolvers<void>();
    await consumer.run({
      partitionsConsumedConcurrently: PARTITIONS,
      eachBatch: async ({ batch }) => {
        seen += batch.messages.length;
        if (seen >= n) done.resolve();
      },
    });
    await done.promise;
    return () => consumer.disconnect();
  };
}

// ---- the suite ------------------------------------------------------------------------------

/** A contender: `prepare(n)` sets up (a fresh topic, say) and returns the timed part for n records. */
type Side = { name: string; prepare: (n: number) => Promise<Timed> };

async function compare(
  reps: number,
  n: number,
  broker: number | undefined,
  sides: Side[],
): Promise<Map<string, Run[]>> {
  const runs = new Map<string, Run[]>(sides.map((s) => [s.name, []]));
  // A tenth of the work untimed first, so neither the broker's JIT nor a client's is measured cold.
  for (const side of sides) {
    const teardown = await (await side.prepare(Math.ceil(n / 10)))();
    await teardown?.();
  }
  for (let r = 0; r < reps; r++) {
    for (const side of sides) {
      const fn = await side.prepare(n);
      runs.get(side.name)!.push(await measure(n, broker, fn));
      log(`  ${side.name}: ${round(runs.get(side.name)!.at(-1)!.rate)} records/s`);
    }
  }
  return runs;
}

function summary(runs: Run[]): Omit<Run, 'stopMs'> & { stop: string } {
  const stopMs = median(runs.map((r) => r.stopMs));
  return {
    rate: round(median(runs.map((r) => r.rate))),
    clientCpu: round(median(runs.map((r) => r.clientCpu)), 2),
    brokerCpu: round(median(runs.map((r) => r.brokerCpu)), 2),
    stop: stopMs > 0 ? `, leaving the group took ${round(stopMs)} ms (not timed)` : '',
  };
}

type Summary = ReturnType<typeof summary>;

/** Brokers given from outside: their CPU is not measured. */
const EXTERNAL = process.env.KAFKA_BROKERS;

const cpuNote = (s: Summary): string =>
  `client ${s.clientCpu} CPU s, broker ${EXTERNAL ? 'not measured (external)' : `${s.brokerCpu} CPU s`}${s.stop}`;

/** The two judged figures of one workload: Eventline against raw @platformatic/kafka and against KafkaJS. */
function againstPeers(
  what: string,
  e: Summary,
  raw: Summary,
  kafkajs: Summary,
  labels: { durability: string; raw: string; kafkajs: string },
): Figure[] {
  const peers = [
    { name: 'raw @platformatic/kafka', short: 'raw', s: raw, to: labels.raw, target: 0.9 },
    { name: 'KafkaJS', short: 'KafkaJS', s: kafkajs, to: labels.kafkajs, target: 1.5 },
  ];
  return peers.map((p) =>
    judge({
      name: `kafka: ${what} vs ${p.name} (records/s)`,
      value: e.rate,
      unit: 'records/s',
      durability: labels.durability,
      ratio: { to: p.to, value: round(e.rate / p.s.rate, 2), target: p.target },
      note: `${p.short} ${p.s.rate} records/s; eventline ${cpuNote(e)}; ${p.short} ${cpuNote(p.s)}`,
    }),
  );
}

export async function runKafka(options: { quick: boolean }): Promise<Figure[]> {
  let brokers: string[];
  if (EXTERNAL) brokers = EXTERNAL.split(',');
  else {
    await stopKafka('single');
    brokers = (await startKafka('single', { log })).brokers;
  }
  const broker = EXTERNAL ? undefined : livePid(nodesFor('single')[0]!);
  const bus = await connect(`kafka://${brokers.join(',')}`, {
    logger: silentLogger,
    clientId: 'bench-eventline',
  });
  const reps = options.quick ? 1 : 3;
  const n = options.quick ? 50_000 : 200_000;
  const figures: Figure[] = [];
  try {
    await settle();
    log(
      `kafka publish: ${n} records of 1 KiB in batches of ${BATCH}, acks=all, ${PARTITIONS} partitions, ${reps} alternating runs`,
    );
    const publish = await compare(reps, n, broker, [
      { name: 'eventline', prepare: (m) => eventlineKafkaPublish(bus, m, false) },
      { name: 'platformatic', prepare: (m) => rawPublish(bus, brokers, m) },
      { name: 'kafkajs', prepare: (m) => kafkajsPublish(bus, brokers, m) },
      { name: 'eventline-atomic', prepare: (m) => eventlineKafkaPublish(bus, m, true) },
    ]);
    const ep = summary(publish.get('eventline')!);
    const rp = summary(publish.get('platformatic')!);
    const kp = summary(publish.get('kafkajs')!);
    const ap = summary(publish.get('eventline-atomic')!);
    figures.push(
      ...againstPeers('publish batched', ep, rp, kp, {
        durability: 'acks=all, idempotent producer, batches not atomic across partitions ({ atomic: false })',
        raw: '@platformatic/kafka Producer.send, idempotent, acks=all',
        kafkajs: 'KafkaJS producer.send, acks=-1 (without its experimental idempotence)',
      }),
      {
        name: 'kafka: publish batched, atomic across partitions (records/s)',
        value: ap.rate,
        unit: 'records/s',
        durability: 'acks=all, one Kafka transaction per batch (the default of publishBatch)',
        note: cpuNote(ap),
      },
    );

    await settle();
    const topic = await fill(bus, n);
    log(
      `kafka consume: ${n} records from the start of a ${PARTITIONS}-partition topic, fresh group each run`,
    );
    const consume = await compare(reps, n, broker, [
      { name: 'eventline', prepare: async (m) => eventlineKafkaConsume(bus, topic, m) },
      { name: 'platformatic', prepare: async (m) => rawConsume(brokers, topic, m) },
      { name: 'kafkajs', prepare: async (m) => kafkajsConsume(brokers, topic, m) },
    ]);
    const ec = summary(consume.get('eventline')!);
    const rc = summary(consume.get('platformatic')!);
    const kc = summary(consume.get('kafkajs')!);
    figures.push(
      ...againstPeers('consume', ec, rc, kc, {
        durability: 'read_committed; offsets committed after handling',
        raw: '@platformatic/kafka consume stream, autocommit, same fetch sizes and wait, 8192-message buffer',
        kafkajs: 'KafkaJS eachBatch, same fetch sizes and wait',
      }),
    );

    await settle();
    log('embedded engine beside them, same records');
    const embeddedPublish = await measure(n, undefined, async () => {
      await eventlinePublish(n);
    });
    const embeddedConsume = await measure(n, undefined, async () => {
      await eventlineConsume(n);
    });
    figures.push(
      {
        name: 'embedded beside kafka: publish batched (records/s, includes setup)',
        value: round(embeddedPublish.rate),
        unit: 'records/s',
        durability: 'fsync per commit (SQLite WAL, synchronous=FULL)',
        note: `client ${round(embeddedPublish.clientCpu, 2)} CPU s, no broker`,
      },
      {
        name: 'embedded beside kafka: publish then consume (records/s, includes the publish)',
        value: round(embeddedConsume.rate),
        unit: 'records/s',
        note: `client ${round(embeddedConsume.clientCpu, 2)} CPU s, no broker`,
      },
    );
  } finally {
    await bus.close();
    if (!EXTERNAL) await stopKafka('single');
  }
  return figures;
}

/**
 * Schemas on real Kafka: the built-in registry lives in Kafka's `_schemas` topic and is served over
 * HTTP; a third-party stack (KafkaJS + @kafkajs/confluent-schema-registry) that knows only the
 * Confluent wire format and the registry URL reads what Eventline writes, and the reverse.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { SchemaRegistry as KafkajsRegistry, SchemaType } from '@kafkajs/confluent-schema-registry';
import { Kafka, logLevel, Partitioners } from 'kafkajs';
import { connect, type Eventline } from '../../src/client.ts';
import { silentLogger } from '../../src/observability/logger.ts';
import { avro } from '../../src/schema/avro.ts';
import type { InferAvro } from '../../src/schema/infer.ts';
import { type RegistryServer, startRegistryServer } from '../../src/schema/server.ts';
import { defineTopic } from '../../src/topic.ts';
import { unique, waitFor } from '../helpers.ts';
import { TASK_CREATED } from '../schema/fixtures.ts';
import { kafkaBrokers } from './kafka-env.ts';

const brokers = kafkaBrokers().split(',');
const url = `kafka://${brokers.join(',')}`;
const kafkajs = new Kafka({ clientId: 'schema-interop', brokers, logLevel: logLevel.NOTHING });

function task(n: number): InferAvro<typeof TASK_CREATED> {
  return {
    eventId: `e-${n}`,
    eventTimestamp: 1_795_000_000_000 + n,
    userId: `user-${n % 3}`,
    taskId: `task-${n}`,
    title: `Task ${n}`,
    description: n % 2 ? null : `about ${n}`,
    priority: (['CRITICAL', 'HIGH', 'MEDIUM', 'LOW'] as const)[n % 4]!,
    dueDate: n % 2 ? 1_795_000_100_000 : null,
    categoryId: null,
    tags: n % 3 ? ['a'] : [],
  };
}

describe('schemas on real Kafka, with the ecosystem client', () => {
  let bus: Eventline;
  let server: RegistryServer;
  before(async () => {
    bus = await connect(url, { logger: silentLogger, clientId: 'schema-interop' });
    server = await startRegistryServer(await bus.registry(), { port: 0 });
  });
  after(async () => {
    await server?.close();
    await bus?.close();
  });

  test('the registry is stored in a compacted single-partition _schemas topic on Kafka', async () => {
    const d = await bus.admin.describeTopic('_schemas');
    assert.equal(d.partitions.length, 1);
    assert.equal(d.config.cleanupPolicy, 'compact');
  });

  test('records Eventline writes decode with a client that knows only the wire format and the registry URL', async () => {
    const t = defineTopic(unique('si-out'), {
      partitions: 2,
      value: avro(TASK_CREATED),
      key: (v) => v.taskId,
    });
    await bus.ensureTopics([t]);
    const values = Array.from({ length: 20 }, (_, n) => task(n));
    await bus.publishBatch(
      t,
      values.map((value) => ({ value })),
    );
    const foreign = new KafkajsRegistry({ host: server.url });
    const consumer = kafkajs.consumer({ groupId: unique('si-kafkajs') });
    const seen: unknown[] = [];
    await consumer.connect();
    await consumer.subscribe({ topic: t.name, fromBeginning: true });
    await consumer.run({
      eachMessage: async ({ message }) => {
        seen.push({ ...(await foreign.decode(message.value!)) });
      },
    });
    try {
      await waitFor('KafkaJS to decode 20 records', () => seen.length >= 20, 30_000);
    } finally {
      await consumer.disconnect();
    }
    const byId = new Map(seen.map((v) => [(v as { eventId: string }).eventId, v]));
    for (const v of values) assert.deepEqual(byId.get(v.eventId), v);
  });

  test('records a Confluent serializer writes are consumed by Eventline, typed and resolved', async () => {
    const name = unique('si-in');
    const foreign = new KafkajsRegistry({ host: server.url });
    const { id } = await foreign.register(
      { type: SchemaType.AVRO, schema: JSON.stringify(TASK_CREATED) },
      { subject: `${name}-value` },
    );
    const producer = kafkajs.producer({ createPartitioner: Partitioners.DefaultPartitioner });
    const t = defineTopic(name, { partitions: 2, value: avro(TASK_CREATED) });
    await bus.ensureTopics([t]);
    await producer.connect();
    try {
      await producer.send({
        topic: name,
        messages: await Promise.all(
          Array.from({ length: 20 }, async (_, n) => ({
            key: `task-${n}`,
            value: await foreign.encode(id, task(n)),
          })),
        ),
      });
    } finally {
      await producer.disconnect();
    }
    const seen: Record<string, unknown>[] = [];
    const sub = bus.subscribe({
      group: unique('si-eventline'),
      topics: [t],
      fromBeginning: true,
      handler: (m) => {
        const priority: 'CRITICAL' | 'HIGH' | 'MEDIUM' | 'LOW' = m.value.priority;
        assert.ok(priority);
        seen.push({ ...m.value });
      },
    });
    try {
      await waitFor('Eventline to consume 20 records', () => seen.length >= 20, 30_000);
    } finally {
      await sub.stop();
    }
    const byId = new Map(seen.map((v) => [v.eventId, v]));
    for (let n = 0; n < 20; n++) assert.deepEqual(byId.get(`e-${n}`), task(n));
  });

  test('a new connection finds the same schemas and ids in Kafka', async () => {
    const subject = `${unique('si-restart')}-value`;
    const { id } = await (await bus.registry()).register(subject, { schema: JSON.stringify(TASK_CREATED) });
    const other = await connect(url, { logger: silentLogger, clientId: 'schema-interop-2' });
    try {
      const registry = await other.registry();
      assert.equal((await registry.getVersion(subject, 'latest')).id, id);
      assert.equal(JSON.parse((await registry.getById(id)).schema).name, 'TaskCreatedEvent');
    } finally {
      await other.close();
    }
  });
});

/**
 * Interoperability on real Kafka with a different client (KafkaJS): records Eventline publishes
 * are read by KafkaJS with their key, value, headers, partition and offset, and records KafkaJS
 * writes are consumed by Eventline. Keys land on the same partitions on the embedded engine, on
 * Kafka through Eventline, and through KafkaJS's default (Java-compatible) partitioner.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Kafka, logLevel, Partitioners } from 'kafkajs';
import { connect, type Eventline } from '../../src/client.ts';
import { bytes } from '../../src/codec.ts';
import { silentLogger } from '../../src/observability/logger.ts';
import { defineTopic } from '../../src/topic.ts';
import { unique, waitFor } from '../helpers.ts';
import { kafkaBrokers } from './kafka-env.ts';

const brokers = kafkaBrokers().split(',');
const kafkajs = new Kafka({ clientId: 'interop-kafkajs', brokers, logLevel: logLevel.NOTHING });

describe('interop with KafkaJS on real Kafka', () => {
  let bus: Eventline;
  before(async () => {
    bus = await connect(`kafka://${brokers.join(',')}`, {
      logger: silentLogger,
      clientId: 'interop-eventline',
    });
  });
  after(async () => {
    await bus.close();
  });

  test('records published by Eventline are read by KafkaJS with key, value, headers, partition and offset', async () => {
    const t = defineTopic<{ n: number }>(unique('interop-out'), { partitions: 3, key: (v) => `k${v.n}` });
    await bus.ensureTopics([t]);
    const published = await bus.publishBatch(
      t,
      Array.from({ length: 30 }, (_, n) => ({
        value: { n },
        headers: { 'x-n': String(n), trace: Buffer.from([1, 2, 3]) },
      })),
    );
    const consumer = kafkajs.consumer({ groupId: unique('kafkajs-reader') });
    const seen: {
      partition: number;
      offset: number;
      key: string;
      value: { n: number };
      headers: Record<string, Buffer>;
    }[] = [];
    await consumer.connect();
    await consumer.subscribe({ topic: t.name, fromBeginning: true });
    await consumer.run({
      eachMessage: async ({ partition, message }) => {
        seen.push({
          partition,
          offset: Number(message.offset),
          key: message.key!.toString(),
          value: JSON.parse(message.value!.toString()),
          headers: message.headers as Record<string, Buffer>,
        });
      },
    });
    try {
      await waitFor('KafkaJS to read 30 records', () => seen.length >= 30, 30_000);
    } finally {
      await consumer.disconnect();
    }
    for (const r of published) {
      const n = published.indexOf(r);
      const m = seen.find((s) => s.value.n === n);
      assert.ok(m, `record ${n} was read`);
      assert.equal(m.partition, r.partition);
      assert.equal(m.offset, r.offset);
      assert.equal(m.key, `k${n}`);
      assert.equal(m.headers['x-n']!.toString(), String(n));
      assert.deepEqual([...m.headers.trace!], [1, 2, 3]);
      assert.equal(m.headers.ce_id!.toString(), r.id);
      assert.equal(m.headers.ce_specversion!.toString(), '1.0');
    }
  });

  test('records written by KafkaJS are consumed by Eventline, and KafkaJS picks the same partitions', async () => {
    const name = unique('interop-in');
    await bus.admin.createTopic(name, { partitions: 5 });
    const producer = kafkajs.producer({ createPartitioner: Partitioners.DefaultPartitioner });
    await producer.connect();
    const sent = new Map<string, number>();
    try {
      for (let i = 0; i < 40; i++) {
        const [meta] = await producer.send({
          topic: name,
          messages: [
            { key: `user-${i}`, value: JSON.stringify({ i }), headers: { origin: 'kafkajs', i: String(i) } },
          ],
        });
        sent.set(`user-${i}`, meta!.partition);
      }
    } finally {
      await producer.disconnect();
    }
    const t = defineTopic<{ i: number }>(name, { partitions: 5 });
    const got: { key: string | null; partition: number; value: { i: number }; origin: string | undefined }[] =
      [];
    const sub = bus.subscribe({
      group: unique('eventline-reader'),
      topics: [t],
      fromBeginning: true,
      handler: (m) =>
        void got.push({ key: m.key, partition: m.partition, value: m.value, origin: m.headers.origin }),
    });
    try {
      await waitFor('Eventline to consume 40 records', () => got.length >= 40, 30_000);
    } finally {
      await sub.stop();
    }
    for (const g of got) {
      assert.equal(g.origin, 'kafkajs');
      assert.equal(g.key, `user-${g.value.i}`);
      assert.equal(g.partition, sent.get(g.key!), `${g.key} is where KafkaJS put it`);
    }
    // Eventline's partitioner agrees with KafkaJS's for every key.
    const ours = defineTopic(name, { partitions: 5, value: bytes() });
    for (const [key, partition] of sent) {
      const r = await bus.publish(ours, Buffer.from('x'), { key });
      assert.equal(r.partition, partition, `Eventline put ${key} where KafkaJS did`);
    }
  });

  test('a key lands on the same partition on the embedded engine and on Kafka', async () => {
    const memory = await connect('sqlite::memory:', { logger: silentLogger });
    try {
      const name = unique('same-keys');
      const t = defineTopic(name, { partitions: 7, value: bytes() });
      await Promise.all([bus.ensureTopics([t]), memory.ensureTopics([t])]);
      const keys = Array.from({ length: 200 }, (_, i) => `order-${i * 7919}`);
      const onKafka = await bus.publishBatch(
        t,
        keys.map((key) => ({ key, value: Buffer.from(key) })),
      );
      const embedded = await memory.publishBatch(
        t,
        keys.map((key) => ({ key, value: Buffer.from(key) })),
      );
      assert.deepEqual(
        onKafka.map((r) => r.partition),
        embedded.map((r) => r.partition),
      );
      assert.equal(new Set(onKafka.map((r) => r.partition)).size, 7);
    } finally {
      await memory.close();
    }
  });
});

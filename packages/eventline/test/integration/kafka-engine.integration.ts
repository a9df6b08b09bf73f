/**
 * What only the Kafka engine has to get right, on a real broker: compressed record batches with
 * each of Kafka's codecs (written, read back by Eventline, and by KafkaJS for gzip, the codec it
 * ships), and the topic configs that carry them.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Kafka, logLevel } from 'kafkajs';
import { connect, type Eventline } from '../../src/client.ts';
import { silentLogger } from '../../src/observability/logger.ts';
import { type Compression, defineTopic } from '../../src/topic.ts';
import { unique, waitFor } from '../helpers.ts';
import { kafkaBrokers } from './kafka-env.ts';

const brokers = kafkaBrokers().split(',');

describe('Kafka engine specifics on real Kafka', () => {
  let bus: Eventline;
  before(async () => {
    bus = await connect(`kafka://${brokers.join(',')}`, {
      logger: silentLogger,
      clientId: 'engine-specifics',
    });
  });
  after(async () => {
    await bus.close();
  });

  for (const codec of ['gzip', 'snappy', 'lz4', 'zstd'] as const satisfies Compression[]) {
    test(`a topic compressed with ${codec}: compression.type is set, and records written in batches read back whole`, async () => {
      const t = defineTopic<{ n: number; text: string }>(unique(`compressed-${codec}`), {
        partitions: 2,
        compression: codec,
        key: (v) => `k${v.n}`,
      });
      await bus.ensureTopics([t]);
      assert.equal((await bus.admin.describeTopic(t.name)).config.compression, codec, 'compression.type');
      const text = 'highly compressible '.repeat(50);
      const items = Array.from({ length: 40 }, (_, n) => ({ value: { n, text } }));
      await bus.publishBatch(t, items.slice(0, 20));
      await bus.publishBatch(t, items.slice(20), { atomic: false });
      const back = [];
      for (const partition of [0, 1])
        back.push(...(await bus.reader.read(t, { partition, from: 'earliest', max: 100 })));
      assert.deepEqual(
        back.map((m) => m.value.n).sort((a, b) => a - b),
        items.map((i) => i.value.n),
      );
      assert.ok(back.every((m) => m.value.text === text && m.key === `k${m.value.n}`));
    });
  }

  test('KafkaJS reads a gzip-compressed topic Eventline wrote', async () => {
    const t = defineTopic<{ n: number }>(unique('compressed-interop'), { compression: 'gzip' });
    await bus.ensureTopics([t]);
    await bus.publishBatch(
      t,
      Array.from({ length: 10 }, (_, n) => ({ value: { n } })),
    );
    const kafkajs = new Kafka({ clientId: 'compressed-kafkajs', brokers, logLevel: logLevel.NOTHING });
    const consumer = kafkajs.consumer({ groupId: unique('kafkajs-gzip') });
    const seen: number[] = [];
    await consumer.connect();
    try {
      await consumer.subscribe({ topic: t.name, fromBeginning: true });
      await consumer.run({
        eachMessage: async ({ message }) => {
          seen.push(JSON.parse(message.value!.toString()).n);
        },
      });
      await waitFor('KafkaJS reading 10 records', () => seen.length >= 10, 20_000);
    } finally {
      await consumer.disconnect();
    }
    assert.deepEqual(
      seen,
      Array.from({ length: 10 }, (_, n) => n),
    );
  });
});

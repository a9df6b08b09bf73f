/**
 * Faults on a real 3-node Kafka cluster (started by `npm run test:kafka` from Maven Central jars):
 * a broker killed with SIGKILL and restarted while a producer publishes and a group consumes, and
 * a consumer process killed with SIGKILL. Topics have replication factor 3 and min.insync.replicas 2.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { Admin } from '@platformatic/kafka';
import { restartNode, signalNode } from '../../../../tools/kafka/kafka.ts';
import { connect, type Eventline } from '../../src/client.ts';
import { bytes } from '../../src/codec.ts';
import { silentLogger } from '../../src/observability/logger.ts';
import { defineTopic } from '../../src/topic.ts';
import { type Child, spawnNode, tally, unique, waitFor } from '../helpers.ts';

const cluster = process.env.KAFKA_CLUSTER;
if (!cluster)
  throw new Error('KAFKA_CLUSTER is not set: run these with `npm run test:kafka`, which starts the cluster');
const url = `kafka://${cluster}`;
const CONSUMER = new URL('../conformance/processes/consumer.ts', import.meta.url);

/** The node leading a partition now. */
async function leaderOf(topic: string, partition: number): Promise<number> {
  const admin = new Admin({ clientId: 'faults', bootstrapBrokers: cluster!.split(',') });
  try {
    const metadata = await admin.metadata({ topics: [topic], forceUpdate: true });
    return metadata.topics.get(topic)!.partitions[partition]!.leader;
  } finally {
    await admin.close();
  }
}

describe('faults on a 3-node Kafka cluster', () => {
  let producerBus: Eventline;
  let consumerBus: Eventline;
  before(async () => {
    producerBus = await connect(url, { logger: silentLogger, clientId: 'faults-producer' });
    consumerBus = await connect(url, { logger: silentLogger, clientId: 'faults-consumer' });
  });
  after(async () => {
    await Promise.allSettled([producerBus.close(), consumerBus.close()]);
  });

  test('a broker killed with SIGKILL and restarted: no acknowledged record is lost and the group keeps consuming', {
    timeout: 180_000,
  }, async () => {
    const t = defineTopic<{ id: string }>(unique('faults-broker'), {
      partitions: 3,
      replicationFactor: 3,
      minInsyncReplicas: 2,
      key: (v) => v.id,
    });
    await producerBus.ensureTopics([t]);
    const consumed = new Set<string>();
    let duplicates = 0;
    const sub = consumerBus.subscribe({
      group: unique('faults-group'),
      topics: [t],
      fromBeginning: true,
      sessionTimeout: '10s',
      onError: () => {},
      handler: (m) => {
        if (consumed.has(m.value.id)) duplicates++;
        consumed.add(m.value.id);
      },
    });
    await waitFor('the consumer to own the partitions', () => sub.assignment().length === 3, 60_000);
    // Internal topics (offsets, transactions) are created on first use with 3 replicas: use them now.
    const acked = new Set<string>();
    for (const r of await producerBus.publishBatch(t, [
      { value: { id: 'warm-0' } },
      { value: { id: 'warm-1' } },
      { value: { id: 'warm-2' } },
    ])) {
      void r;
    }
    for (const id of ['warm-0', 'warm-1', 'warm-2']) acked.add(id);

    let running = true;
    let failures = 0;
    const producing = (async () => {
      for (let i = 0; running; i++) {
        const id = `r${i}`;
        try {
          await producerBus.publish(t, { id });
          acked.add(id);
        } catch {
          failures++; // not acknowledged: it may or may not be stored, and is not counted
          await sleep(100);
        }
      }
    })();

    await sleep(3000);
    const victim = await leaderOf(t.name, 0);
    const before = acked.size;
    assert.ok(signalNode('cluster', victim, 'SIGKILL'), `node ${victim} was running`);
    await sleep(8000);
    const duringOutage = acked.size - before;
    await restartNode('cluster', victim);
    await sleep(4000);
    running = false;
    await producing;

    assert.ok(duringOutage > 0, 'publishing went on while a broker was down');
    await waitFor(
      'the group to consume every acknowledged record',
      () => [...acked].every((id) => consumed.has(id)),
      90_000,
      200,
    );
    await sub.stop();
    // And every acknowledged record is stored: read the whole topic back.
    const stored = new Set<string>();
    const reader = await connect(url, { logger: silentLogger });
    try {
      for (const p of await reader.reader.offsets(t.name)) {
        for (let offset = p.start; offset < p.end; ) {
          const ms = await reader.reader.read(t, { partition: p.partition, from: { offset }, max: 5000 });
          if (ms.length === 0) break;
          for (const m of ms) stored.add(m.value.id);
          offset = ms[ms.length - 1]!.offset + 1;
        }
      }
    } finally {
      await reader.close();
    }
    const lost = [...acked].filter((id) => !stored.has(id));
    assert.deepEqual(lost, [], 'acknowledged records missing from the log');
    process.stderr.write(
      `  broker ${victim} killed: ${acked.size} records acknowledged (${duringOutage} while it was down), ${failures} publish attempts failed, ${duplicates} redelivered\n`,
    );
  });

  test('a consumer process killed with SIGKILL is replaced by the survivors with no record lost', {
    timeout: 180_000,
  }, async () => {
    const t = defineTopic(unique('faults-consumer'), {
      partitions: 6,
      replicationFactor: 3,
      minInsyncReplicas: 2,
      value: bytes(),
    });
    await producerBus.ensureTopics([t]);
    const group = unique('faults-members');
    const children: Child[] = [];
    const start = async (name: string): Promise<Child> => {
      const child = spawnNode(CONSUMER, {
        url,
        topic: t.name,
        group,
        name,
        delayMs: 2,
        sessionTimeout: '6s',
      });
      await child.waitForLine<{ ready?: string }>(`${name} ready`, (l) => l.ready === name, 60_000);
      children.push(child);
      return child;
    };
    try {
      const a = await start('a');
      const b = await start('b');
      const ids = Array.from({ length: 3000 }, (_, i) => `m${i}`);
      for (let i = 0; i < ids.length; i += 500) {
        await producerBus.publishBatch(
          t,
          ids.slice(i, i + 500).map((id) => ({ value: Buffer.from(id), key: id })),
        );
      }
      const handled = (c: Child): string[] =>
        (c.lines as { id?: string }[]).filter((l) => l.id).map((l) => l.id!);
      await waitFor('a to handle some records', () => handled(a).length >= 300, 60_000);
      a.kill('SIGKILL');
      await a.exited;
      await waitFor(
        'every record handled',
        () => new Set([...handled(a), ...handled(b)]).size === ids.length,
        120_000,
        200,
      );
      const { missing } = tally([...handled(a), ...handled(b)], ids);
      assert.deepEqual(missing, []);
    } finally {
      for (const c of children) c.kill('SIGTERM');
      await Promise.all(children.map((c) => c.exited));
    }
  });
});

/**
 * The outbox through a full outage of a real 3-node Kafka cluster (started by `npm run test:kafka`):
 * every broker is killed with SIGKILL for 30 seconds while 10,000 events are accepted through the
 * outbox; once the brokers are back, every event is delivered, in order per key, none lost, and with
 * dedup on none is handled twice.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { nodesFor, restartNode, signalNode } from '../../../../tools/kafka/kafka.ts';
import { connect, type Eventline } from '../../src/client.ts';
import { silentLogger } from '../../src/observability/logger.ts';
import { createOutbox } from '../../src/patterns/outbox.ts';
import { sqliteDedupStore } from '../../src/runtime/dedup-sqlite.ts';
import type { Subscription } from '../../src/runtime/subscription.ts';
import { defineTopic } from '../../src/topic.ts';
import { tally, unique, waitFor } from '../helpers.ts';

const cluster = process.env.KAFKA_CLUSTER;
if (!cluster)
  throw new Error('KAFKA_CLUSTER is not set: run these with `npm run test:kafka`, which starts the cluster');
const url = `kafka://${cluster}`;
const EVENTS = 10_000;
const KEYS = 50;
const OUTAGE_MS = 30_000;

type Event = { key: string; seq: number };

describe('outbox through a Kafka outage', () => {
  let dir: string;
  let bus: Eventline;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'eventline-outage-'));
    bus = await connect(url, { logger: silentLogger, clientId: 'outbox-outage' });
  });
  after(async () => {
    await bus.close().catch(() => {});
    rmSync(dir, { recursive: true, force: true });
  });

  test('every broker down for 30 s: events accepted meanwhile are all delivered once, in order per key', {
    timeout: 600_000,
  }, async () => {
    const t = defineTopic<Event>(unique('outbox-outage'), {
      partitions: 6,
      replicationFactor: 3,
      minInsyncReplicas: 2,
      key: (v) => v.key,
    });
    await bus.ensureTopics([t]);
    const db = new DatabaseSync(join(dir, 'service.db'));
    db.exec('PRAGMA journal_mode=WAL; CREATE TABLE accepted (seq INTEGER PRIMARY KEY, key TEXT NOT NULL)');
    const relayErrors: string[] = [];
    const outbox = await createOutbox(bus, {
      database: db,
      maxRetryDelay: '2s',
      onError: (err) => relayErrors.push((err as { code?: string }).code ?? err.message),
    });
    const store = sqliteDedupStore({ path: join(dir, 'dedup.db') });
    const group = unique('outbox-outage-group');
    const handled: string[] = [];
    const skipped: string[] = [];
    const lastSeq = new Map<string, number>();
    const outOfOrder: string[] = [];
    const subscribe = (): Subscription =>
      bus.subscribe({
        group,
        topics: [t],
        fromBeginning: true,
        sessionTimeout: '30s',
        onError: () => {},
        dedup: { store, onDuplicate: (m) => skipped.push(m.id!) },
        handler: (m) => {
          const prev = lastSeq.get(m.value.key) ?? -1;
          if (m.value.seq <= prev) outOfOrder.push(`${m.value.key}: ${m.value.seq} after ${prev}`);
          lastSeq.set(m.value.key, m.value.seq);
          handled.push(m.id!);
        },
      });

    const ids: string[] = [];
    let seq = 0;
    const accept = async (n: number): Promise<void> => {
      for (let end = seq + n; seq < end; seq += 10) {
        const first = seq;
        const entries = await outbox.transaction(async (tx) => {
          const insert = tx.db.prepare('INSERT INTO accepted VALUES (?, ?)');
          const items = Array.from({ length: 10 }, (_, i) => {
            const s = first + i;
            insert.run(s, `k${s % KEYS}`);
            return { value: { key: `k${s % KEYS}`, seq: s } };
          });
          return tx.publishBatch(t, items);
        });
        ids.push(...entries.map((e) => e.id));
      }
    };

    // Before the outage: the group consumes what is published.
    let sub = subscribe();
    await accept(500);
    await waitFor('the first events to be handled', () => handled.length >= 500, 120_000, 100);
    // The member cannot survive its coordinator's death for 30 s: it leaves now and a new one joins later.
    await sub.stop();

    const brokers = nodesFor('cluster').map((n) => n.id);
    for (const id of brokers) assert.ok(signalNode('cluster', id, 'SIGKILL'), `node ${id} was running`);
    const downAt = Date.now();
    try {
      // Spread over the whole outage, so that writes go on long after any cached engine state expired.
      const chunks = 30;
      const perChunk = Math.ceil((EVENTS - 500) / 10 / chunks) * 10;
      for (let i = 0; i < chunks && seq < EVENTS; i++) {
        await accept(Math.min(perChunk, EVENTS - seq));
        const next = downAt + ((i + 1) * OUTAGE_MS) / chunks;
        if (next > Date.now()) await sleep(next - Date.now());
      }
      assert.equal(
        (db.prepare('SELECT count(*) AS n FROM accepted').get() as { n: number }).n,
        EVENTS,
        'every transaction committed while the brokers were down',
      );
      const waiting = await outbox.backlog();
      assert.ok(waiting.count > 0, 'events wait in the outbox during the outage');
      const left = OUTAGE_MS - (Date.now() - downAt);
      if (left > 0) await sleep(left);
    } finally {
      await Promise.all(brokers.map((id) => restartNode('cluster', id)));
    }
    process.stderr.write(
      `  brokers down for ${Date.now() - downAt} ms; the relay failed ${relayErrors.length} times\n`,
    );

    sub = subscribe();
    try {
      await waitFor('the outbox to drain', async () => (await outbox.backlog()).count === 0, 300_000, 500);
      await waitFor('every event handled', () => new Set(handled).size >= EVENTS, 300_000, 500);
    } finally {
      await sub.stop();
      await outbox.close();
      await store.close();
      db.close();
    }
    const { missing, duplicated } = tally(handled, ids);
    assert.deepEqual({ missing: missing.length, duplicated }, { missing: 0, duplicated: [] });
    assert.deepEqual(outOfOrder, []);
    assert.ok(relayErrors.length > 0, 'the relay met the outage');
    process.stderr.write(
      `  ${handled.length} events handled, ${skipped.length} duplicates skipped by dedup\n`,
    );
  });
});

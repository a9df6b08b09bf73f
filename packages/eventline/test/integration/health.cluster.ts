/**
 * Health through a full outage of a real 3-node Kafka cluster (started by `npm run test:kafka`):
 * every broker is killed with SIGKILL while a service subscribes, holds a view and relays an outbox.
 * The service turns unready (engine down) but stays live, over real HTTP too; once the brokers are
 * back it turns ready again on its own: the same subscription, view and outbox, nothing restarted.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { after, before, describe, test } from 'node:test';
import { nodesFor, restartNode, signalNode } from '../../../../tools/kafka/kafka.ts';
import { connect, type Eventline } from '../../src/client.ts';
import { type HealthReport, healthHandler } from '../../src/observability/health.ts';
import { silentLogger } from '../../src/observability/logger.ts';
import { createOutbox } from '../../src/patterns/outbox.ts';
import { defineTopic } from '../../src/topic.ts';
import { unique, waitFor } from '../helpers.ts';

const cluster = process.env.KAFKA_CLUSTER;
if (!cluster)
  throw new Error('KAFKA_CLUSTER is not set: run these with `npm run test:kafka`, which starts the cluster');
const url = `kafka://${cluster}`;

type Event = { key: string; seq: number };

function failing(report: HealthReport): string[] {
  return report.checks.filter((c) => !c.ok).map((c) => `${c.name}: ${c.detail}`);
}

describe('health through a Kafka outage', () => {
  let dir: string;
  let bus: Eventline;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'eventline-health-'));
    bus = await connect(url, { logger: silentLogger, clientId: 'health-outage' });
  });
  after(async () => {
    await bus.close().catch(() => {});
    rmSync(dir, { recursive: true, force: true });
  });

  test('every broker killed: unready and down but live; brokers back: ready again without a restart', {
    timeout: 600_000,
  }, async () => {
    const t = defineTopic<Event>(unique('health-outage'), {
      partitions: 3,
      replicationFactor: 3,
      minInsyncReplicas: 2,
      key: (v) => v.key,
    });
    await bus.ensureTopics([t]);
    const handled = new Set<number>();
    const group = unique('health-outage-group');
    const sub = bus.subscribe({
      group,
      topics: [t],
      fromBeginning: true,
      sessionTimeout: '30s',
      onError: () => {},
      handler: (m) => {
        handled.add(m.value.seq);
      },
    });
    const view = bus.view(t, { onError: () => {} });
    const db = new DatabaseSync(join(dir, 'service.db'));
    const outbox = await createOutbox(bus, {
      database: db,
      name: 'service',
      maxRetryDelay: '1s',
      onError: () => {},
    });
    const server = createServer(healthHandler(bus, { timeout: '2s' }));
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/health`;
    const brokers = nodesFor('cluster').map((n) => n.id);
    let restarted = false;
    try {
      await Promise.all([sub.ready(), view.ready()]);
      await outbox.transaction((tx) => tx.publish(t, { key: 'k', seq: 0 }));
      await waitFor('the first event handled', () => handled.has(0), 60_000, 50);
      const before = await bus.health();
      assert.deepEqual(failing(before), []);
      assert.equal((await fetch(`${base}/ready`)).status, 200);

      for (const id of brokers) assert.ok(signalNode('cluster', id, 'SIGKILL'), `node ${id} was running`);
      const downAt = Date.now();
      const down = await waitFor(
        'the service to turn unready with the engine down',
        async () => {
          const r = await bus.health({ cacheFor: 0 });
          return r.checks.find((c) => c.name === 'engine')?.ok === false ? r : undefined;
        },
        60_000,
        200,
      );
      const unreadyAfterMs = Date.now() - downAt;
      assert.equal(down.live, true, 'a broker outage must not make the service look dead');
      assert.equal(down.ready, false);
      assert.equal(down.status, 'down');
      const engine = down.checks.find((c) => c.name === 'engine')!;
      assert.match(engine.detail, /^the kafka engine at kafka:\/\/.* does not answer: /);
      assert.ok(
        engine.error?.code === 'EVENTLINE_ERR_TIMEOUT' ||
          engine.error?.code === 'EVENTLINE_ERR_ENGINE_UNAVAILABLE',
        JSON.stringify(engine.error),
      );
      // Events keep being accepted into the outbox meanwhile.
      await outbox.transaction((tx) => tx.publish(t, { key: 'k', seq: 1 }));
      // What a kubelet sees: liveness answers at once without the engine, readiness says no.
      const live = await fetch(`${base}/live`);
      assert.equal(live.status, 200);
      const ready = await fetch(`${base}/ready`);
      assert.equal(ready.status, 503);
      const readyBody = (await ready.json()) as { status: string; failing: { name: string }[] };
      assert.equal(readyBody.status, 'down');
      assert.ok(readyBody.failing.some((c) => c.name === 'engine'));

      const outage = await bus.health({ cacheFor: 0 });
      await Promise.all(brokers.map((id) => restartNode('cluster', id)));
      restarted = true;
      const backAt = Date.now();
      const outageMs = backAt - downAt;
      // The checks that kept the service unready last, while it recovered.
      let lastFailing: string[] = [];
      const up = await waitFor(
        'the service to turn ready again',
        async () => {
          const r = await bus.health({ cacheFor: 0 });
          if (!r.ready) lastFailing = failing(r);
          return r.ready ? r : undefined;
        },
        240_000,
        250,
      );
      const readyAfterMs = Date.now() - backAt;
      assert.equal(up.status, 'ok');
      assert.equal((await fetch(`${base}/ready`)).status, 200);
      assert.equal(sub.state().status, 'running', 'the same subscription, never restarted');
      assert.equal(view.state().status, 'ready');
      // The service really works again: the event accepted during the outage is relayed and handled.
      await waitFor('the event accepted during the outage handled', () => handled.has(1), 120_000, 100);
      process.stderr.write(
        `  health: unready ${unreadyAfterMs} ms after the brokers were killed; brokers down ${outageMs} ms; ` +
          `ready again ${readyAfterMs} ms after they were back\n` +
          `  failing during the outage:\n    ${failing(outage).join('\n    ')}\n` +
          `  failing last while recovering:\n    ${lastFailing.join('\n    ')}\n`,
      );
    } finally {
      if (!restarted) {
        await Promise.allSettled(brokers.map((id) => restartNode('cluster', id)));
      }
      server.close();
      await sub.stop();
      await view.close();
      await outbox.close();
      db.close();
    }
  });
});

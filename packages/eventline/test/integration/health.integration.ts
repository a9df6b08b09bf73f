/**
 * Health on real Kafka: ready once the group joined and the view caught up; a subscription the
 * broker refuses to let join is failed and keeps the service unready. The outage itself (brokers
 * stopped and started again) is in health.cluster.ts.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { connect, type Eventline } from '../../src/client.ts';
import { silentLogger } from '../../src/observability/logger.ts';
import { defineTopic } from '../../src/topic.ts';
import { unique, waitFor } from '../helpers.ts';
import { kafkaBrokers } from './kafka-env.ts';

const url = `kafka://${kafkaBrokers()}`;

describe('health on real Kafka', () => {
  let bus: Eventline;
  before(async () => {
    bus = await connect(url, { logger: silentLogger, clientId: 'health' });
  });
  after(() => bus.close());

  test('ready once the subscription joined its group and the view caught up', async () => {
    const t = defineTopic<{ id: string }>(unique('health-kafka'), { partitions: 2, key: (v) => v.id });
    await bus.ensureTopics([t]);
    await bus.publish(t, { id: 'a' });
    const group = unique('health-kafka-group');
    const sub = bus.subscribe({ group, topics: [t], handler: () => {} });
    const view = bus.view(t);
    try {
      await Promise.all([sub.ready(), view.ready()]);
      const report = await bus.health();
      assert.deepEqual(
        report.checks.filter((c) => !c.ok),
        [],
      );
      assert.equal(report.status, 'ok');
      const engine = report.checks.find((c) => c.name === 'engine')!;
      assert.match(engine.detail, /^the kafka engine at kafka:\/\/.* answered in \d+ ms$/);
      const member = report.checks.find((c) => c.name === `subscription:${group}`)!;
      assert.match(member.detail, /a member of group .* with 2 partition\(s\)/);
    } finally {
      await sub.stop();
      await view.close();
    }
  });

  test('a subscription the broker refuses to let join (session timeout out of range) is failed: unready', async () => {
    const t = defineTopic<{ id: string }>(unique('health-refused'));
    await bus.ensureTopics([t]);
    const group = unique('health-refused-group');
    const errors: Error[] = [];
    // Below the broker's group.min.session.timeout.ms: JoinGroup answers INVALID_SESSION_TIMEOUT.
    const sub = bus.subscribe({
      group,
      topics: [t],
      sessionTimeout: '500ms',
      handler: () => {},
      onError: (err) => errors.push(err),
    });
    await assert.rejects(sub.ready());
    await sub.stopped;
    assert.equal(sub.state().status, 'failed');
    const report = await waitFor('the failed subscription in the report', async () => {
      const r = await bus.health();
      return r.checks.some((c) => c.name === `subscription:${group}`) ? r : undefined;
    });
    assert.equal(report.ready, false);
    assert.equal(report.live, true);
    assert.equal(report.status, 'degraded', 'the engine answers');
    const c = report.checks.find((x) => x.name === `subscription:${group}`)!;
    assert.equal(c.ok, false);
    assert.match(c.detail, /^failed in group .*INVALID_SESSION_TIMEOUT.*; it will not try again$/);
    assert.ok(errors.length > 0, 'the refusal was reported to onError');
  });
});

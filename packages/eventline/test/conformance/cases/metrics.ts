import assert from 'node:assert/strict';
import { json } from '../../../src/codec.ts';
import { deadLetterTopic } from '../../../src/runtime/dead-letter.ts';
import { waitFor } from '../../helpers.ts';
import { parsePrometheus } from '../../observability/prometheus.ts';
import type { ConformanceCase } from '../suite.ts';

type Order = { id: string; fail?: 'once' | 'always' };

export const metricsCases: ConformanceCase[] = [
  {
    name: 'metrics count known traffic: publishes, handler outcomes, retries, dead letters',
    timeoutMs: 60_000,
    async run(ctx) {
      const orders = await ctx.topic<Order>('metrics-orders', {
        partitions: 2,
        value: json<Order>(),
        key: (o) => o.id,
      });
      const group = ctx.group('metrics');
      const items = Array.from({ length: 10 }, (_, i) => ({
        value: {
          id: `o${i}`,
          ...(i === 3 ? { fail: 'once' as const } : i === 7 ? { fail: 'always' as const } : {}),
        },
      }));
      await ctx.bus.publishBatch(orders, items.slice(0, 6));
      await ctx.bus.publishBatch(orders, items.slice(6));
      // A value its codec refuses: counted as a failed publish, nothing stored.
      const cyclic: Record<string, unknown> = { id: 'bad' };
      cyclic.self = cyclic;
      await assert.rejects(ctx.bus.publish(orders, cyclic as Order), { code: 'EVENTLINE_ERR_ENCODE' });

      const failedOnce = new Set<string>();
      let handled = 0;
      const sub = ctx.bus.subscribe({
        group,
        topics: [orders],
        fromBeginning: true,
        retry: { attempts: 3, initialDelay: '10ms', maxDelay: '20ms' },
        handler: (m) => {
          const o = m.value;
          if (o.fail === 'always') throw new Error(`order ${o.id} is broken`);
          if (o.fail === 'once' && !failedOnce.has(o.id)) {
            failedOnce.add(o.id);
            throw new Error(`order ${o.id} failed once`);
          }
          handled++;
        },
      });
      await waitFor('9 orders handled and one dead-lettered', async () => {
        if (handled < 9) return false;
        const ends = await ctx.bus.reader.offsets(deadLetterTopic(group, orders.name)).catch(() => []);
        return ends.reduce((a, p) => a + p.end, 0) === 1;
      });
      const m = parsePrometheus(await ctx.bus.metrics.text());
      const t = { topic: orders.name };
      assert.equal(m.value('eventline_records_published_total', { ...t, outcome: 'success' }), 10);
      assert.equal(m.value('eventline_records_published_total', { ...t, outcome: 'failure' }), 1);
      assert.equal(m.value('eventline_publish_duration_seconds_count', t), 2);
      const g = { group, topic: orders.name };
      assert.equal(m.value('eventline_records_consumed_total', { ...g, outcome: 'success' }), 9);
      // o3 failed once; o7 failed on all three attempts.
      assert.equal(m.value('eventline_records_consumed_total', { ...g, outcome: 'failure' }), 4);
      assert.equal(m.value('eventline_handler_duration_seconds_count', { ...g, outcome: 'success' }), 9);
      assert.equal(m.value('eventline_handler_duration_seconds_count', { ...g, outcome: 'failure' }), 4);
      assert.equal(
        m.value('eventline_handler_duration_seconds_bucket', { ...g, outcome: 'success', le: '+Inf' }),
        9,
      );
      assert.equal(m.value('eventline_retries_total', g), 3);
      assert.equal(m.value('eventline_dead_letters_total', { ...g, destination: 'dead_letter' }), 1);
      assert.equal(m.value('eventline_rebalances_total', { group, event: 'assigned' }), 1);
      assert.equal(m.types.get('eventline_handler_duration_seconds'), 'histogram');
      assert.equal(m.types.get('eventline_records_consumed_total'), 'counter');
      await sub.stop();
    },
  },
  {
    name: 'consumer lag: up in records and seconds while the consumer is stopped, back to zero when it catches up',
    timeoutMs: 60_000,
    async run(ctx) {
      const events = await ctx.topic<Order>('metrics-lag', {
        partitions: 2,
        value: json<Order>(),
        key: (o) => o.id,
      });
      const group = ctx.group('metrics-lag');
      // The consumer runs in its own client; this one watches the group as an exporter does.
      const consumer = await ctx.connect();
      const unwatch = ctx.bus.watchLag([group]);
      let handled = 0;
      const start = () =>
        consumer.subscribe({
          group,
          topics: [events],
          fromBeginning: true,
          commitInterval: '10ms',
          handler: () => {
            handled++;
          },
        });
      const lagOf = async () => {
        const m = parsePrometheus(await ctx.bus.metrics.text());
        const mine = { group, topic: events.name };
        const seconds = m.samples.filter(
          (s) => s.name === 'eventline_consumer_lag_seconds' && s.labels.group === group,
        );
        return {
          records: m.sum('eventline_consumer_lag_records', mine),
          partitions: m.samples.filter(
            (s) => s.name === 'eventline_consumer_lag_records' && s.labels.group === group,
          ).length,
          seconds: Math.max(0, ...seconds.map((s) => s.value)),
        };
      };
      const first = start();
      await first.ready();
      await ctx.bus.publishBatch(
        events,
        Array.from({ length: 4 }, (_, i) => ({ value: { id: `a${i}` } })),
      );
      await waitFor(
        'the first records handled and committed',
        async () => handled === 4 && (await lagOf()).records === 0,
      );
      const caughtUp = await lagOf();
      assert.equal(caughtUp.partitions, 2);
      assert.equal(caughtUp.seconds, 0);
      await first.stop();

      // Stopped: six records, written five seconds ago, wait.
      await ctx.bus.publishBatch(
        events,
        Array.from({ length: 6 }, (_, i) => ({ value: { id: `b${i}` }, timestamp: Date.now() - 5_000 })),
      );
      const behind = await waitFor('the lag to show', async () => {
        const l = await lagOf();
        return l.records > 0 ? l : undefined;
      });
      // Lag counts offsets, as Kafka's tools do: on Kafka the batch's transaction left one commit
      // marker in each partition it wrote to, which the group will pass too.
      const markers = ctx.target.url.startsWith('kafka') ? 2 : 0;
      assert.ok(
        behind.records >= 6 && behind.records <= 6 + markers,
        `lag ${behind.records} should be the 6 waiting records (plus up to ${markers} transaction markers)`,
      );
      assert.ok(
        behind.seconds >= 5,
        `lag in seconds ${behind.seconds} should be at least the records' age, 5`,
      );

      const second = start();
      await waitFor('all ten handled, lag back to zero', async () => {
        const l = await lagOf();
        return handled === 10 && l.records === 0 && l.seconds === 0;
      });
      await second.stop();
      unwatch();
    },
  },
];

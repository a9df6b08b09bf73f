import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { DatabaseSync } from 'node:sqlite';
import { after, before, describe, test } from 'node:test';
import { Counter, Registry } from 'prom-client';
import { connect, type Eventline } from '../../src/client.ts';
import { json } from '../../src/codec.ts';
import { silentLogger } from '../../src/observability/logger.ts';
import { EventlineMetrics, metricsHandler } from '../../src/observability/metrics.ts';
import { createOutbox } from '../../src/patterns/outbox.ts';
import { deadLetterTopic } from '../../src/runtime/dead-letter.ts';
import { sqliteDedupStore } from '../../src/runtime/dedup-sqlite.ts';
import { replayDeadLetters } from '../../src/runtime/replay.ts';
import { defineTopic } from '../../src/topic.ts';
import { gatedJson } from '../conformance/cases/views.ts';
import { unique, waitFor } from '../helpers.ts';
import { parsePrometheus } from './prometheus.ts';

const CLI = new URL('../../bin/eventline.mjs', import.meta.url).pathname;

describe('metrics', () => {
  let dir: string;
  let url: string;
  let bus: Eventline;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'eventline-metrics-'));
    url = `sqlite:${join(dir, 'events.db')}`;
    bus = await connect(url, { logger: silentLogger });
  });
  after(async () => {
    await bus.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test('every metric family has HELP and TYPE, and names follow Prometheus conventions', async () => {
    const m = parsePrometheus(await bus.metrics.text());
    assert.ok(m.types.size >= 20, `only ${m.types.size} families`);
    for (const [name, type] of m.types) {
      assert.match(name, /^eventline_[a-z_]+$/);
      assert.ok((m.help.get(name) ?? '').length > 20, `${name} needs a real HELP text`);
      if (type === 'counter') assert.match(name, /_total$/, `${name} is a counter`);
      if (type === 'histogram') assert.match(name, /_seconds$/, `${name} is a histogram of durations`);
      if (name.endsWith('_total')) assert.equal(type, 'counter', `${name} ends in _total`);
    }
  });

  test('views: entries, readiness, staleness and fallback uses', async () => {
    const gated = gatedJson<{ sku: string; cents: number }>();
    const prices = defineTopic(unique('metrics-prices'), {
      cleanupPolicy: 'compact',
      value: gated.codec,
      key: (p: { sku: string }) => p.sku,
    });
    await bus.ensureTopics([prices]);
    await bus.publishBatch(prices, [
      { value: { sku: 'a', cents: 1 }, timestamp: Date.now() - 3000 },
      { value: { sku: 'b', cents: 2 }, timestamp: Date.now() - 3000 },
    ]);
    const view = bus.view(prices, { fallback: async (sku) => ({ sku, cents: 0 }) });
    assert.deepEqual(await view.getOrLoad('a'), { sku: 'a', cents: 0 });
    assert.deepEqual(await view.getOrLoad('b'), { sku: 'b', cents: 0 });
    let m = parsePrometheus(await bus.metrics.text());
    assert.equal(m.value('eventline_view_ready', { topic: prices.name }), 0);
    assert.equal(m.value('eventline_view_fallback_total', { topic: prices.name }), 2);
    assert.equal(m.value('eventline_view_staleness_seconds', { topic: prices.name }), undefined);
    gated.open();
    await view.ready();
    m = parsePrometheus(await bus.metrics.text());
    assert.equal(m.value('eventline_view_ready', { topic: prices.name }), 1);
    assert.equal(m.value('eventline_view_entries', { topic: prices.name }), 2);
    assert.ok((m.value('eventline_view_staleness_seconds', { topic: prices.name }) ?? 0) >= 3);
    await view.close();
    m = parsePrometheus(await bus.metrics.text());
    assert.equal(
      m.value('eventline_view_entries', { topic: prices.name }),
      undefined,
      'a closed view is gone',
    );
  });

  test('request/reply: round trips by outcome, timeouts, late replies', async () => {
    const requests = defineTopic(unique('metrics-requests'), { value: json<{ n: number }>() });
    await bus.ensureTopics([requests]);
    let slow = false;
    const responder = bus.respond({
      topic: requests,
      group: unique('metrics-responder'),
      handler: async (req) => {
        if (req.value.n < 0) throw new Error('negative');
        if (slow) await new Promise((r) => setTimeout(r, 300));
        return { doubled: req.value.n * 2 };
      },
    });
    await responder.ready();
    for (const n of [1, 2, 3]) assert.deepEqual(await bus.request(requests, { n }), { doubled: n * 2 });
    await assert.rejects(bus.request(requests, { n: -1 }), { code: 'EVENTLINE_ERR_REMOTE' });
    slow = true;
    await assert.rejects(bus.request(requests, { n: 4 }, { timeout: '50ms' }), {
      code: 'EVENTLINE_ERR_TIMEOUT',
    });
    const t = { topic: requests.name };
    await waitFor('the late reply', async () => {
      const m = parsePrometheus(await bus.metrics.text());
      return m.value('eventline_late_replies_total', { kind: 'late' }) === 1;
    });
    const m = parsePrometheus(await bus.metrics.text());
    assert.equal(m.value('eventline_request_duration_seconds_count', { ...t, outcome: 'success' }), 3);
    assert.equal(m.value('eventline_request_duration_seconds_count', { ...t, outcome: 'failure' }), 1);
    assert.equal(m.value('eventline_request_duration_seconds_count', { ...t, outcome: 'timeout' }), 1);
    assert.equal(m.value('eventline_request_timeouts_total', t), 1);
    // The responder's replies go to this requester's own reply topic: counted under one label.
    assert.ok(
      (m.value('eventline_records_published_total', { topic: 'eventline.replies.*', outcome: 'success' }) ??
        0) >= 4,
    );
    assert.ok(
      !m.samples.some(
        (s) => s.labels.topic?.startsWith('eventline.replies.') && s.labels.topic !== 'eventline.replies.*',
      ),
    );
    await responder.stop();
  });

  test('outbox: backlog and age of what waits, then events relayed', async () => {
    const db = new DatabaseSync(join(dir, `service-${unique('db')}.db`));
    const events = defineTopic(unique('metrics-outbox'), { value: json<{ n: number }>() });
    await bus.ensureTopics([events]);
    const outbox = await createOutbox(bus, { database: db, relay: false, name: 'orders' });
    await outbox.transaction(async (tx) => {
      for (const n of [1, 2, 3]) await tx.publish(events, { n });
    });
    await new Promise((r) => setTimeout(r, 20));
    let m = parsePrometheus(await bus.metrics.text());
    assert.equal(m.value('eventline_outbox_backlog_events', { outbox: 'orders' }), 3);
    assert.ok((m.value('eventline_outbox_oldest_age_seconds', { outbox: 'orders' }) ?? 0) > 0);
    outbox.start();
    await waitFor('the relay to publish', async () => (await outbox.backlog()).count === 0);
    m = parsePrometheus(await bus.metrics.text());
    assert.equal(m.value('eventline_outbox_backlog_events', { outbox: 'orders' }), 0);
    assert.equal(m.value('eventline_outbox_oldest_age_seconds', { outbox: 'orders' }), 0);
    assert.equal(m.value('eventline_outbox_relayed_total', { outbox: 'orders' }), 3);
    await outbox.close();
    db.close();
  });

  test('duplicates suppressed are counted', async () => {
    const topic = defineTopic(unique('metrics-dedup'), { value: json<{ n: number }>() });
    await bus.ensureTopics([topic]);
    const group = unique('metrics-dedup-group');
    const store = sqliteDedupStore({ path: join(dir, `dedup-${group}.db`) });
    const seen: number[] = [];
    const sub = bus.subscribe({
      group,
      topics: [topic],
      fromBeginning: true,
      dedup: { store },
      handler: (m) => {
        seen.push(m.value.n);
      },
    });
    await sub.ready();
    // The same event published three times (a producer retrying), then another one.
    for (const n of [1, 1, 1, 2]) await bus.publish(topic, { n }, { headers: { ce_id: `event-${n}` } });
    await waitFor('both events handled', () => seen.length === 2);
    await waitFor('two duplicates counted', async () => {
      const m = parsePrometheus(await bus.metrics.text());
      return m.value('eventline_duplicates_suppressed_total', { group, topic: topic.name }) === 2;
    });
    assert.deepEqual(seen, [1, 2]);
    await sub.stop();
    await store.close();
  });

  test('replays are counted', async () => {
    const topic = defineTopic(unique('metrics-replay'), { value: json<{ n: number }>() });
    await bus.ensureTopics([topic]);
    const group = unique('metrics-replay-group');
    const seen: number[] = [];
    let broken = true;
    const sub = bus.subscribe({
      group,
      topics: [topic],
      retry: { attempts: 1 },
      handler: (m) => {
        if (broken) throw new Error('down');
        seen.push(m.value.n);
      },
    });
    await sub.ready();
    await bus.publishBatch(topic, [{ value: { n: 1 } }, { value: { n: 2 } }]);
    const dlq = deadLetterTopic(group, topic.name);
    await waitFor('two dead letters', async () => {
      const m = parsePrometheus(await bus.metrics.text());
      return (
        m.value('eventline_dead_letters_total', { group, topic: topic.name, destination: 'dead_letter' }) ===
        2
      );
    });
    broken = false;
    const result = await replayDeadLetters(bus, { dlqTopic: dlq });
    assert.equal(result.replayed, 2);
    await waitFor('the replayed records handled', () => seen.length === 2);
    const m = parsePrometheus(await bus.metrics.text());
    assert.equal(m.value('eventline_dead_letters_replayed_total', { topic: dlq }), 2);
    await sub.stop();
  });

  test('one registry with the service’s own metrics, served over HTTP', async () => {
    const registry = new Registry();
    const own = new Counter({ name: 'shop_checkouts_total', help: 'Checkouts.', registers: [registry] });
    own.inc(5);
    const metrics = new EventlineMetrics({ registry });
    const a = await connect(url, { logger: silentLogger, metrics });
    const b = await connect(url, { logger: silentLogger, metrics });
    const topic = defineTopic(unique('metrics-shared'), { value: json<{ n: number }>() });
    await a.ensureTopics([topic]);
    await a.publish(topic, { n: 1 });
    await b.publishBatch(topic, [{ value: { n: 2 } }, { value: { n: 3 } }]);
    const server = createServer(metricsHandler(a));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const { port } = server.address() as { port: number };
      const res = await fetch(`http://127.0.0.1:${port}/metrics`);
      assert.equal(res.status, 200);
      assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
      const m = parsePrometheus(await res.text());
      assert.equal(m.value('shop_checkouts_total'), 5);
      assert.equal(
        m.value('eventline_records_published_total', { topic: topic.name, outcome: 'success' }),
        3,
      );
    } finally {
      server.close();
      await a.close();
      await b.close();
    }
  });

  test('a source that fails or hangs is left out and counted; the scrape still answers', async () => {
    const metrics = new EventlineMetrics({ readTimeout: '100ms' });
    metrics.addSource({
      lag: async () => {
        throw new Error('engine away');
      },
    });
    metrics.addSource({
      lag: async () => [{ group: 'g', topic: 't', partition: 0, records: 7, seconds: 1.5 }],
      outboxes: () => new Promise(() => {}),
    });
    const started = Date.now();
    const m = parsePrometheus(await metrics.text());
    assert.ok(Date.now() - started < 30_000);
    assert.equal(m.value('eventline_consumer_lag_records', { group: 'g', topic: 't', partition: 0 }), 7);
    // The counter is read while the readings run: a scrape's own failures show from the next one.
    const next = parsePrometheus(await metrics.text());
    assert.equal(next.value('eventline_scrape_errors_total', { source: 'lag' }), 1);
    assert.equal(next.value('eventline_scrape_errors_total', { source: 'outboxes' }), 1);
    assert.equal(next.value('eventline_consumer_lag_records', { group: 'g', topic: 't', partition: 0 }), 7);
  });

  test('clients given one prom-client registry share one set of metrics', async () => {
    const registry = new Registry();
    const a = await connect(url, { logger: silentLogger, metrics: { registry } });
    const b = await connect(url, { logger: silentLogger, metrics: { registry } });
    try {
      assert.equal(a.metrics, b.metrics);
      // Metrics made on a registry first are the ones a client given that registry uses.
      const own = new Registry();
      const made = new EventlineMetrics({ registry: own });
      const c = await connect(url, { logger: silentLogger, metrics: { registry: own } });
      assert.equal(c.metrics, made);
      await c.close();
      const topic = defineTopic(unique('metrics-registry'), { value: json<{ n: number }>() });
      await a.ensureTopics([topic]);
      await a.publish(topic, { n: 1 });
      await b.publish(topic, { n: 2 });
      const m = parsePrometheus(await registry.metrics());
      assert.equal(
        m.value('eventline_records_published_total', { topic: topic.name, outcome: 'success' }),
        2,
      );
    } finally {
      await a.close();
      await b.close();
    }
  });

  test('`eventline metrics --once` prints the lag of every group', async () => {
    const topic = defineTopic(unique('metrics-cli'), { partitions: 1, value: json<{ n: number }>() });
    await bus.ensureTopics([topic]);
    const group = unique('metrics-cli-group');
    let handled = 0;
    const sub = bus.subscribe({
      group,
      topics: [topic],
      fromBeginning: true,
      commitInterval: '1ms',
      handler: () => {
        handled++;
      },
    });
    await bus.publish(topic, { n: 0 });
    await waitFor('the first record handled', () => handled === 1);
    await sub.stop();
    await bus.publishBatch(topic, [{ value: { n: 1 } }, { value: { n: 2 } }, { value: { n: 3 } }]);
    const run = spawnSync(process.execPath, [CLI, 'metrics', '--once', '--url', url], { encoding: 'utf8' });
    assert.equal(run.status, 0, run.stderr);
    const m = parsePrometheus(run.stdout);
    assert.equal(m.value('eventline_consumer_lag_records', { group, topic: topic.name, partition: 0 }), 3);
    const named = spawnSync(
      process.execPath,
      [CLI, 'metrics', '--once', '--group', 'no-such-group', '--url', url],
      {
        encoding: 'utf8',
      },
    );
    assert.equal(named.status, 0, named.stderr);
    assert.equal(parsePrometheus(named.stdout).value('eventline_consumer_lag_records', { group }), undefined);
  });

  test('`eventline metrics --port 0` serves /metrics until SIGINT', async () => {
    const child = spawn(process.execPath, [CLI, 'metrics', '--port', '0', '--json', '--url', url], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    try {
      const [line] = (await once(createInterface({ input: child.stdout! }), 'line')) as [string];
      const { url: metricsUrl } = JSON.parse(line) as { url: string };
      const res = await fetch(metricsUrl);
      assert.equal(res.status, 200);
      assert.ok(parsePrometheus(await res.text()).types.has('eventline_consumer_lag_seconds'));
      assert.equal((await fetch(metricsUrl.replace('/metrics', '/other'))).status, 404);
      child.kill('SIGINT');
      const [code] = (await once(child, 'exit')) as [number];
      assert.equal(code, 0);
    } finally {
      child.kill('SIGKILL');
    }
  });
});

import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { DatabaseSync } from 'node:sqlite';
import { after, before, describe, test } from 'node:test';
import Fastify from 'fastify';
import { connect, type Eventline } from '../../src/client.ts';
import { isEventlineError } from '../../src/errors.ts';
import {
  type HealthCheck,
  type HealthOptions,
  type HealthReport,
  healthHandler,
} from '../../src/observability/health.ts';
import { silentLogger } from '../../src/observability/logger.ts';
import { createOutbox } from '../../src/patterns/outbox.ts';
import { defineTopic, type Topic } from '../../src/topic.ts';
import { gatedJson } from '../conformance/cases/views.ts';
import { unique, waitFor } from '../helpers.ts';

type User = { id: string; name: string };

function check(report: HealthReport, name: string): HealthCheck {
  const found = report.checks.find((c) => c.name === name);
  assert.ok(found, `no check named ${name} in ${report.checks.map((c) => c.name).join(', ')}`);
  return found;
}

function failing(report: HealthReport): string[] {
  return report.checks.filter((c) => !c.ok).map((c) => c.name);
}

async function newTopic<V = User>(bus: Eventline, options: Parameters<typeof defineTopic<V>>[1] = {}) {
  const t = defineTopic<V>(unique('health'), options);
  await bus.ensureTopics([t]);
  return t;
}

describe('bus.health()', () => {
  let bus: Eventline;
  before(async () => {
    bus = await connect('sqlite::memory:', { logger: silentLogger });
  });
  after(() => bus.close());

  test('ready once every subscription joined and every view caught up; one check per part', async () => {
    const own = await connect('sqlite::memory:', { logger: silentLogger });
    try {
      const t = await newTopic(own, { key: (u: User) => u.id });
      await own.publish(t, { id: 'a', name: 'A' });
      const sub = own.subscribe({ group: 'readers', topics: [t], handler: () => {} });
      const responder = own.respond({
        topic: unique('health-requests'),
        group: 'answerers',
        handler: () => 'ok',
      });
      const view = own.view(t);
      await Promise.all([sub.ready(), responder.ready(), view.ready()]);

      const report = await own.health();
      assert.deepEqual(failing(report), []);
      assert.equal(report.status, 'ok');
      assert.equal(report.live, true);
      assert.equal(report.ready, true);
      assert.deepEqual(
        report.checks.map((c) => [c.name, c.kind]),
        [
          ['client', 'client'],
          ['engine', 'engine'],
          ['subscription:readers', 'subscription'],
          ['responder:answerers', 'responder'],
          [`view:${t.name}`, 'view'],
        ],
      );
      assert.match(check(report, 'engine').detail, /the sqlite engine at sqlite::memory: answered/);
      assert.match(
        check(report, 'subscription:readers').detail,
        /a member of group readers with 1 partition/,
      );
      assert.match(check(report, `view:${t.name}`).detail, /caught up: 1 key/);
      assert.equal(sub.state().status, 'running');
      assert.equal(responder.state().status, 'running');
      for (const c of report.checks)
        assert.ok(!Number.isNaN(Date.parse(c.since)), `${c.name}: since ${c.since}`);
      // The JSON form is what probes and dashboards read.
      assert.deepEqual(JSON.parse(JSON.stringify(report)), report);
    } finally {
      await own.close();
    }
  });

  test('unready while a view is not caught up, ready once it is', async () => {
    const gated = gatedJson<User>();
    const t = await newTopic<User>(bus, { key: (u) => u.id, value: gated.codec });
    await bus.publishBatch(
      t,
      ['a', 'b'].map((id) => ({ value: { id, name: id } })),
    );
    const view = bus.view(t);
    // Decoding waits (as for a schema registry out of reach): the view cannot catch up.
    const before = await bus.health();
    assert.equal(before.ready, false);
    assert.equal(before.live, true);
    assert.equal(before.status, 'degraded', 'the engine answers: degraded, not down');
    assert.deepEqual(failing(before), [`view:${t.name}`]);
    assert.match(check(before, `view:${t.name}`).detail, /not caught up yet: 0 key/);
    assert.equal(view.state().status, 'loading');

    gated.open();
    await view.ready();
    const afterwards = await bus.health();
    assert.equal(afterwards.ready, true, JSON.stringify(afterwards.checks));
    assert.match(check(afterwards, `view:${t.name}`).detail, /caught up: 2 key/);
    // A view closed on purpose is no longer part of the service.
    await view.close();
    assert.equal(view.state().status, 'closed');
    assert.equal(
      (await bus.health()).checks.some((c) => c.name === `view:${t.name}`),
      false,
    );
  });

  test('a view that cannot start (its topic does not exist) is failed and keeps the service unready', async () => {
    const own = await connect('sqlite::memory:', { logger: silentLogger });
    try {
      const name = unique('health-missing');
      const view = own.view(name, { onError: () => {} });
      await assert.rejects(view.ready(), (err) => isEventlineError(err, 'EVENTLINE_ERR_UNKNOWN_TOPIC'));
      const report = await own.health();
      assert.equal(report.ready, false);
      const c = check(report, `view:${name}`);
      assert.equal(c.ok, false);
      assert.match(c.detail, /^failed: /);
      assert.equal(c.error?.code, 'EVENTLINE_ERR_UNKNOWN_TOPIC');
      assert.equal(view.state().status, 'failed');
    } finally {
      await own.close();
    }
  });

  test('a subscription stopping keeps the service unready until it stopped; then it leaves the report', async () => {
    const t = await newTopic(bus);
    const release = Promise.withResolvers<void>();
    const started = Promise.withResolvers<void>();
    const group = unique('stopping');
    const sub = bus.subscribe({
      group,
      topics: [t],
      fromBeginning: true,
      handler: async () => {
        started.resolve();
        await release.promise;
      },
    });
    await sub.ready();
    await bus.publish(t, { id: 'a', name: 'A' });
    await started.promise;
    assert.equal((await bus.health()).ready, true);

    // The handler is still running: the subscription finishes it before it leaves.
    const stopping = sub.stop();
    assert.equal(sub.state().status, 'stopping');
    const during = await bus.health();
    assert.equal(during.ready, false);
    assert.deepEqual(failing(during), [`subscription:${group}`]);
    assert.match(check(during, `subscription:${group}`).detail, /^stopping: finishing in-flight work/);

    release.resolve();
    await stopping;
    assert.equal(sub.state().status, 'stopped');
    const stopped = await bus.health();
    assert.equal(stopped.ready, true);
    assert.equal(
      stopped.checks.some((c) => c.kind === 'subscription'),
      false,
    );
  });

  test('a subscription whose reads fail is not ok, and the engine closed under the client makes it down but live', async () => {
    const own = await connect('sqlite::memory:', { logger: silentLogger });
    try {
      const t = await newTopic(own);
      const group = unique('engine-gone');
      const sub = own.subscribe({ group, topics: [t], handler: () => {}, onError: () => {} });
      const view = own.view(t, { onError: () => {} });
      await Promise.all([sub.ready(), view.ready()]);
      assert.equal((await own.health()).ready, true);

      await own.engine.close();
      const report = await waitFor(
        'the subscription and the view to report the engine gone',
        async () => {
          const r = await own.health({ cacheFor: 0 });
          return check(r, `subscription:${group}`).ok || check(r, `view:${t.name}`).ok ? undefined : r;
        },
        10_000,
        20,
      );
      assert.equal(report.live, true, 'an engine outage must not make the service look dead');
      assert.equal(report.ready, false);
      assert.equal(report.status, 'down');
      const engine = check(report, 'engine');
      assert.equal(engine.ok, false);
      assert.equal(engine.error?.code, 'EVENTLINE_ERR_CLOSED');
      assert.match(engine.detail, /does not answer: the engine for sqlite::memory: is closed/);
      const subCheck = check(report, `subscription:${group}`);
      assert.match(subCheck.detail, new RegExp(`^reading records for group ${group} fails since `));
      assert.ok(sub.state().failingSince !== undefined);
      const viewCheck = check(report, `view:${t.name}`);
      assert.match(viewCheck.detail, /^failed: .*closed; it no longer follows the topic$/);
      assert.equal(viewCheck.error?.code, 'EVENTLINE_ERR_CLOSED');
      assert.equal(view.state().status, 'failed');
    } finally {
      await own.close();
    }
    const closed = await own.health();
    assert.equal(closed.live, false);
    assert.equal(closed.ready, false);
    assert.equal(closed.status, 'down');
    assert.equal(check(closed, 'client').detail, 'the Eventline client is closed');
    assert.equal(check(closed, 'engine').detail, 'not asked: the client is closed');
  });

  test('an outbox whose relay cannot publish gets stuck: unready until its events are out', async () => {
    const own = await connect('sqlite::memory:', { logger: silentLogger });
    const db = new DatabaseSync(':memory:');
    try {
      // Declared but not created: the engine refuses every publish to it.
      const t = defineTopic<User>(unique('health-outbox'), { key: (u) => u.id });
      const outbox = await createOutbox(own, {
        database: db,
        name: 'orders',
        retryDelay: '10ms',
        maxRetryDelay: '50ms',
        onError: () => {},
      });
      await outbox.transaction((tx) => tx.publish(t, { id: 'a', name: 'A' }));
      const stuck = await waitFor(
        'the outbox to be reported stuck',
        async () => {
          const r = await own.health({ outboxMaxAge: '100ms', cacheFor: 0 });
          return r.ready ? undefined : r;
        },
        10_000,
        20,
      );
      assert.deepEqual(failing(stuck), ['outbox:orders']);
      assert.equal(stuck.status, 'degraded');
      const c = check(stuck, 'outbox:orders');
      assert.match(
        c.detail,
        /^stuck: 1 unsent event\(s\), the oldest .* old \(limit 100ms\); its relay runs/,
      );
      assert.match(c.detail, /publishing fails since .*: .*/);
      assert.equal(c.error?.code, 'EVENTLINE_ERR_UNKNOWN_TOPIC');
      assert.equal(outbox.relayState().status, 'running');
      assert.ok(outbox.relayState().failingSince !== undefined);

      await own.ensureTopics([t]);
      await waitFor('the outbox to drain', async () => (await outbox.backlog()).count === 0, 10_000, 20);
      const drained = await own.health({ outboxMaxAge: '100ms', cacheFor: 0 });
      assert.equal(drained.ready, true, JSON.stringify(drained.checks));
      assert.match(
        check(drained, 'outbox:orders').detail,
        /^0 unsent event\(s\); its relay runs in this process$/,
      );
      await outbox.close();
      assert.equal(
        (await own.health()).checks.some((x) => x.kind === 'outbox'),
        false,
        'a closed outbox leaves the report',
      );
    } finally {
      await own.close();
      db.close();
    }
  });

  test('an outbox table holding an old unsent row is stuck even with no relay in this process', async () => {
    const db = new DatabaseSync(':memory:');
    const outbox = await createOutbox(bus, { database: db, table: 'writer_outbox', relay: false });
    try {
      const t = await newTopic(bus);
      await outbox.transaction((tx) => tx.publish(t, { id: 'a', name: 'A' }));
      const fresh = await bus.health({ cacheFor: 0 });
      assert.equal(fresh.ready, true, JSON.stringify(fresh.checks));
      assert.match(check(fresh, 'outbox:writer_outbox').detail, /no relay runs in this process/);
      // As if written two minutes ago and never relayed (the relaying process is gone).
      db.prepare('UPDATE writer_outbox SET created_at = ?').run(Date.now() - 120_000);
      const old = await bus.health({ cacheFor: 0 });
      assert.equal(old.ready, false);
      const c = check(old, 'outbox:writer_outbox');
      assert.match(c.detail, /^stuck: 1 unsent event\(s\), the oldest 2m old \(limit 1m\); no relay runs/);
      // Since when it has been stuck: when the oldest event crossed the limit, a minute ago.
      const since = Date.parse(c.since);
      assert.ok(since <= Date.now() - 59_000 && since >= Date.now() - 70_000, c.since);
    } finally {
      await outbox.close();
      db.close();
    }
  });

  test('a relay on standby (another one holds the lease) is fine', async () => {
    const db = new DatabaseSync(':memory:');
    const first = await createOutbox(bus, { database: db, table: 'shared_outbox', name: 'first' });
    const second = await createOutbox(bus, { database: db, table: 'shared_outbox', name: 'second' });
    try {
      await waitFor('one relay to hold the lease and the other to wait', () => {
        const states = [first.relayState().status, second.relayState().status].sort();
        return states[0] === 'running' && states[1] === 'standby';
      });
      const report = await bus.health({ cacheFor: 0 });
      assert.equal(report.ready, true, JSON.stringify(report.checks));
      const waiting = first.relayState().status === 'standby' ? 'first' : 'second';
      assert.match(check(report, `outbox:${waiting}`).detail, /its relay waits on standby/);
    } finally {
      await first.close();
      await second.close();
      db.close();
    }
  });

  test('engine answers are reused for cacheFor: many probes at once make one engine call', async () => {
    const own = await connect('sqlite::memory:', { logger: silentLogger });
    try {
      const engine = own.engine;
      const real = engine.listTopics.bind(engine);
      let calls = 0;
      engine.listTopics = () => {
        calls++;
        return real();
      };
      const reports = await Promise.all(Array.from({ length: 20 }, () => own.health({ cacheFor: '1h' })));
      assert.ok(reports.every((r) => r.ready));
      await own.health({ cacheFor: '1h' });
      assert.equal(calls, 1);
      await own.health({ cacheFor: 0 });
      assert.equal(calls, 2);
    } finally {
      await own.close();
    }
  });

  test('bad options are refused with a clear error', async () => {
    await assert.rejects(bus.health({ timeout: 'soon' } as unknown as HealthOptions), (err) => {
      assert.ok(isEventlineError(err, 'EVENTLINE_ERR_INVALID_ARGUMENT'));
      assert.match(err.message, /health timeout/);
      return true;
    });
    await assert.rejects(bus.health({ timeout: 0 }), /timeout must be longer than 0/);
    assert.throws(
      () => healthHandler(bus, { path: 'health' }),
      (err) =>
        isEventlineError(err, 'EVENTLINE_ERR_INVALID_ARGUMENT') && /must start with "\/"/.test(err.message),
    );
    assert.throws(
      () => healthHandler(bus, { outboxMaxAge: '-1s' }),
      (err) => isEventlineError(err, 'EVENTLINE_ERR_INVALID_ARGUMENT'),
    );
  });
});

async function listen(server: Server): Promise<string> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/** What the endpoints answer: a report, or parts of one. */
type Body = Partial<HealthReport> & { failing?: HealthCheck[]; endpoints?: string[]; hello?: string };

async function get(
  url: string,
  init?: RequestInit,
): Promise<{ status: number; body: Body; headers: Headers }> {
  const res = await fetch(url, init);
  const text = await res.text();
  return { status: res.status, body: text === '' ? undefined : JSON.parse(text), headers: res.headers };
}

describe('healthHandler over HTTP', () => {
  test('live, ready and the full report: 200 when ok, 503 when not', async () => {
    const bus = await connect('sqlite::memory:', { logger: silentLogger });
    const server = createServer(healthHandler(bus));
    const base = await listen(server);
    try {
      const gated = gatedJson<User>();
      const t: Topic<User> = await newTopic<User>(bus, { key: (u) => u.id, value: gated.codec });
      await bus.publish(t, { id: 'a', name: 'A' });

      const live = await get(`${base}/health/live`);
      assert.equal(live.status, 200);
      assert.deepEqual([live.body.status, live.body.live], ['ok', true]);
      assert.match(live.headers.get('content-type') ?? '', /^application\/json/);
      assert.equal(live.headers.get('cache-control'), 'no-store');
      assert.equal((await get(`${base}/health/ready`)).status, 200);

      const view = bus.view(t);
      const notReady = await get(`${base}/health/ready`);
      assert.equal(notReady.status, 503);
      assert.equal(notReady.body.ready, false);
      assert.equal(notReady.body.status, 'degraded');
      assert.deepEqual(
        notReady.body.failing?.map((c: HealthCheck) => c.name),
        [`view:${t.name}`],
      );
      const full = await get(`${base}/health?verbose=1`);
      assert.equal(full.status, 503);
      assert.deepEqual(
        full.body.checks?.map((c: HealthCheck) => c.kind),
        ['client', 'engine', 'view'],
      );
      assert.equal((await get(`${base}/health/live`)).status, 200, 'unready is not dead');

      gated.open();
      await view.ready();
      assert.equal((await get(`${base}/health/ready`)).status, 200);
      const ok = await get(`${base}/health/`);
      assert.equal(ok.status, 200);
      assert.equal(ok.body.status, 'ok');

      const head = await fetch(`${base}/health/ready`, { method: 'HEAD' });
      assert.equal(head.status, 200);
      assert.equal(await head.text(), '');
      const post = await get(`${base}/health/ready`, { method: 'POST' });
      assert.equal(post.status, 405);
      assert.equal(post.headers.get('allow'), 'GET, HEAD');
      const other = await get(`${base}/healthz`);
      assert.equal(other.status, 404);
      assert.deepEqual(other.body.endpoints, ['/health', '/health/live', '/health/ready']);

      await bus.close();
      const dead = await get(`${base}/health/live`);
      assert.equal(dead.status, 503);
      assert.deepEqual([dead.body.status, dead.body.live], ['down', false]);
      assert.equal((await get(`${base}/health/ready`)).status, 503);
    } finally {
      server.close();
      await bus.close();
    }
  });

  test('mounted in Fastify through reply.raw, under another path, next to other routes', async () => {
    const bus = await connect('sqlite::memory:', { logger: silentLogger });
    const app = Fastify();
    const health = healthHandler(bus, { path: '/ops/health' });
    for (const url of ['/ops/health', '/ops/health/live', '/ops/health/ready']) {
      app.get(url, (req, reply) => {
        reply.hijack();
        health(req.raw, reply.raw);
      });
    }
    app.get('/hello', async () => ({ hello: 'world' }));
    const base = await app.listen({ port: 0, host: '127.0.0.1' });
    try {
      const ready = await get(`${base}/ops/health/ready`);
      assert.equal(ready.status, 200);
      assert.deepEqual(ready.body.failing, []);
      const full = await get(`${base}/ops/health`);
      assert.equal(full.status, 200);
      assert.equal(full.body.ready, true);
      assert.deepEqual((await get(`${base}/hello`)).body, { hello: 'world' });
      await bus.close();
      assert.equal((await get(`${base}/ops/health/live`)).status, 503);
    } finally {
      await app.close();
      await bus.close();
    }
  });

  test('with a next function (Express, Connect) other paths go on to the next handler', async () => {
    const bus = await connect('sqlite::memory:', { logger: silentLogger });
    const health = healthHandler(bus);
    const server = createServer((req, res) =>
      health(req, res, () => {
        res.writeHead(418, { 'content-type': 'text/plain' });
        res.end('next');
      }),
    );
    const base = await listen(server);
    try {
      assert.equal((await get(`${base}/health/live`)).status, 200);
      const res = await fetch(`${base}/orders`);
      assert.equal(res.status, 418);
      assert.equal(await res.text(), 'next');
    } finally {
      server.close();
      await bus.close();
    }
  });
});

/**
 * One trace across an HTTP call, a publish and a subscription, with the real OpenTelemetry SDK:
 * shared by the embedded test (tracing.test.ts) and the Kafka one (tracing.integration.ts).
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, request } from 'node:http';
import type { AddressInfo } from 'node:net';
import {
  context,
  propagation,
  ROOT_CONTEXT,
  type SpanContext,
  SpanKind,
  SpanStatusCode,
  trace,
} from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  type ReadableSpan,
  SimpleSpanProcessor,
} from '@opentelemetry/sdk-trace-base';
import type { Eventline } from '../../src/client.ts';
import { json } from '../../src/codec.ts';
import { defineTopic } from '../../src/topic.ts';
import { unique, waitFor } from '../helpers.ts';

/**
 * Registers the SDK globally, as an application's tracing setup would: a tracer provider exporting
 * to memory, the AsyncLocalStorage context manager and the W3C trace-context propagator.
 */
export function registerSdk(): InMemorySpanExporter {
  const exporter = new InMemorySpanExporter();
  const provider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
  assert.ok(context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable()));
  assert.ok(propagation.setGlobalPropagator(new W3CTraceContextPropagator()));
  assert.ok(trace.setGlobalTracerProvider(provider));
  return exporter;
}

const tracer = () => trace.getTracer('eventline-test');

function byName(spans: readonly ReadableSpan[], name: string): ReadableSpan {
  const found = spans.filter((s) => s.name === name);
  assert.equal(
    found.length,
    1,
    `expected one span named ${name}, got ${spans.map((s) => s.name).join(', ')}`,
  );
  return found[0]!;
}

function assertChild(child: ReadableSpan, parent: ReadableSpan, what: string): void {
  assert.equal(child.spanContext().traceId, parent.spanContext().traceId, `${what}: trace id`);
  assert.equal(child.parentSpanContext?.spanId, parent.spanContext().spanId, `${what}: parent span`);
}

type Order = { id: string; total: number };

/**
 * An HTTP client calls a server (CLIENT span, `traceparent` injected); the server extracts it,
 * starts a SERVER span and publishes an order; a subscription handles it (its first attempt fails)
 * in a child span of its own and publishes a receipt. Asserts one trace id and every parent link.
 */
export async function traceAcrossHttpAndSubscription(bus: Eventline, exporter: InMemorySpanExporter) {
  exporter.reset();
  const orders = defineTopic(unique('orders'), { value: json<Order>(), key: (o) => o.id, partitions: 2 });
  const receipts = defineTopic(unique('receipts'), { value: json<Order>() });
  await bus.ensureTopics([orders, receipts]);
  const group = unique('billing');
  let attempts = 0;
  let handled: SpanContext | undefined;
  const sub = bus.subscribe({
    group,
    topics: [orders],
    fromBeginning: true,
    retry: { attempts: 3, initialDelay: '10ms' },
    handler: async (msg) => {
      attempts++;
      if (attempts === 1) throw new Error('card declined');
      await tracer().startActiveSpan('charge card', async (span) => {
        await bus.publish(receipts, msg.value);
        handled = span.spanContext();
        span.end();
      });
    },
  });
  await sub.ready();

  const server = createServer((req, res) => {
    const parent = propagation.extract(ROOT_CONTEXT, req.headers);
    tracer().startActiveSpan('POST /orders', { kind: SpanKind.SERVER }, parent, async (span) => {
      try {
        await bus.publish(orders, { id: 'o-1', total: 42 });
        res.end('accepted');
      } finally {
        span.end();
      }
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  try {
    const { port } = server.address() as AddressInfo;
    await tracer().startActiveSpan('POST', { kind: SpanKind.CLIENT }, async (span) => {
      const headers: Record<string, string> = {};
      propagation.inject(context.active(), headers);
      assert.match(headers.traceparent ?? '', /^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
      const req = request({ host: '127.0.0.1', port, path: '/orders', method: 'POST', headers });
      req.end();
      const [res] = (await once(req, 'response')) as [import('node:http').IncomingMessage];
      res.resume();
      await once(res, 'end');
      assert.equal(res.statusCode, 200);
      span.end();
    });
    await waitFor('the handler to succeed', () => handled);
    // The process span ends when the handler's promise settles, just after `handled` is set.
    await waitFor(
      'the process spans',
      () => exporter.getFinishedSpans().filter((s) => s.name === `${orders.name} process`).length === 2,
    );
  } finally {
    server.close();
    await sub.stop();
  }

  const spans = exporter.getFinishedSpans();
  const client = byName(spans, 'POST');
  const serverSpan = byName(spans, 'POST /orders');
  const publish = byName(spans, `${orders.name} publish`);
  const [failedProcess, retried] = spans
    .filter((s) => s.name === `${orders.name} process`)
    .sort(
      (a, b) => (a.attributes['eventline.attempt'] as number) - (b.attributes['eventline.attempt'] as number),
    );
  const charge = byName(spans, 'charge card');
  const receipt = byName(spans, `${receipts.name} publish`);

  assert.equal(client.parentSpanContext, undefined, 'the client span is the root');
  assertChild(serverSpan, client, 'server span');
  assertChild(publish, serverSpan, 'publish span');
  assertChild(failedProcess!, publish, 'process span of the failed attempt');
  assertChild(retried!, publish, 'process span of the retry');
  assertChild(charge, retried!, "the handler's own span");
  assertChild(receipt, charge, "the handler's publish");
  assert.equal(charge.spanContext().spanId, handled!.spanId);

  const system = bus.engine.kind === 'kafka' ? 'kafka' : 'eventline';
  assert.equal(publish.kind, SpanKind.PRODUCER);
  assert.deepEqual(
    {
      system: publish.attributes['messaging.system'],
      destination: publish.attributes['messaging.destination.name'],
      operation: publish.attributes['messaging.operation.type'],
      count: publish.attributes['messaging.batch.message_count'],
    },
    { system, destination: orders.name, operation: 'send', count: undefined },
  );

  // The record carries the publish span's context, and its id is the process span's message id.
  const [record] = await bus.reader.read(orders, {
    partition: Number(retried!.attributes['messaging.destination.partition.id']),
    from: 'earliest',
  });
  assert.equal(
    record!.headers.traceparent,
    `00-${publish.spanContext().traceId}-${publish.spanContext().spanId}-01`,
  );

  const offsetKey = system === 'kafka' ? 'messaging.kafka.offset' : 'messaging.eventline.offset';
  for (const [span, attempt] of [
    [failedProcess!, 1],
    [retried!, 2],
  ] as const) {
    assert.equal(span.kind, SpanKind.CONSUMER);
    assert.equal(span.attributes['messaging.system'], system);
    assert.equal(span.attributes['messaging.destination.name'], orders.name);
    assert.equal(span.attributes['messaging.consumer.group.name'], group);
    assert.equal(span.attributes['messaging.operation.type'], 'process');
    assert.equal(span.attributes[offsetKey], record!.offset);
    assert.equal(span.attributes['messaging.message.id'], record!.id);
    assert.equal(span.attributes['eventline.attempt'], attempt);
  }
  assert.equal(failedProcess!.status.code, SpanStatusCode.ERROR);
  assert.equal(failedProcess!.status.message, 'card declined');
  assert.deepEqual(
    failedProcess!.events.map((e) => [e.name, e.attributes?.['exception.message']]),
    [['exception', 'card declined']],
  );
  assert.equal(retried!.status.code, SpanStatusCode.UNSET);
  assert.equal(attempts, 2);
}

/**
 * Three records published under three unrelated traces, handled by a batch handler: each batch is
 * one process span with a link to the publish span of each of its records.
 */
export async function batchSpanLinksEveryRecord(bus: Eventline, exporter: InMemorySpanExporter) {
  exporter.reset();
  const topic = defineTopic(unique('batched'), { value: json<Order>() });
  await bus.ensureTopics([topic]);
  for (const id of ['a', 'b', 'c']) {
    await tracer().startActiveSpan(`request ${id}`, async (span) => {
      await bus.publish(topic, { id, total: 1 });
      span.end();
    });
  }
  let seen = 0;
  const sub = bus.subscribe({
    group: unique('batcher'),
    topics: [topic],
    fromBeginning: true,
    batchHandler: (messages) => {
      seen += messages.length;
    },
  });
  try {
    await waitFor('three records', () => seen === 3);
    await waitFor(
      'the batch spans to end',
      () =>
        exporter
          .getFinishedSpans()
          .filter((s) => s.name === `${topic.name} process`)
          .reduce((n, s) => n + (s.attributes['messaging.batch.message_count'] as number), 0) === 3,
    );
  } finally {
    await sub.stop();
  }
  const spans = exporter.getFinishedSpans();
  const publishes = spans.filter((s) => s.name === `${topic.name} publish`);
  assert.equal(publishes.length, 3);
  assert.equal(new Set(publishes.map((s) => s.spanContext().traceId)).size, 3, 'three separate traces');
  const batches = spans.filter((s) => s.name === `${topic.name} process`);
  const linked: string[] = [];
  for (const batch of batches) {
    assert.equal(batch.kind, SpanKind.CONSUMER);
    assert.equal(batch.parentSpanContext, undefined, 'a batch span starts its own trace');
    assert.equal(batch.links.length, batch.attributes['messaging.batch.message_count']);
    for (const link of batch.links) linked.push(`${link.context.traceId}/${link.context.spanId}`);
  }
  assert.deepEqual(
    linked.sort(),
    publishes.map((s) => `${s.spanContext().traceId}/${s.spanContext().spanId}`).sort(),
  );
}

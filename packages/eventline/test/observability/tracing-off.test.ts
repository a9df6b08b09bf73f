/**
 * Without an OpenTelemetry SDK Eventline adds nothing to records; with only a propagator (no
 * tracer provider) it carries the caller's context through without spans of its own.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  context,
  createTraceState,
  propagation,
  ROOT_CONTEXT,
  type SpanContext,
  TraceFlags,
  trace,
} from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { connect, type Eventline } from '../../src/client.ts';
import { json } from '../../src/codec.ts';
import { silentLogger } from '../../src/observability/logger.ts';
import { defineTopic, type Topic } from '../../src/topic.ts';
import { unique, waitFor } from '../helpers.ts';

type Numbered = Topic<{ n: number }, string>;

async function publishAndConsume(bus: Eventline, topic: Numbered, publish: () => Promise<unknown>) {
  let handled: { active: SpanContext | undefined } | undefined;
  const sub = bus.subscribe({
    group: unique('off'),
    topics: [topic],
    fromBeginning: true,
    handler: () => {
      handled = { active: trace.getSpanContext(context.active()) };
    },
  });
  await publish();
  const { active } = await waitFor('the handler', () => handled);
  await sub.stop();
  const [record] = await bus.reader.read(topic, { partition: 0, from: 'earliest' });
  return { headers: record!.headers, active };
}

test('with no SDK registered, no trace header is written and handlers run without a span', async () => {
  const bus = await connect('sqlite::memory:', { logger: silentLogger });
  try {
    const topic = defineTopic(unique('plain'), { value: json<{ n: number }>() });
    await bus.ensureTopics([topic]);
    const { headers, active } = await publishAndConsume(bus, topic, () => bus.publish(topic, { n: 1 }));
    assert.deepEqual(Object.keys(headers).sort(), [
      'ce_id',
      'ce_source',
      'ce_specversion',
      'ce_time',
      'ce_type',
      'content-type',
    ]);
    assert.equal(active, undefined);
  } finally {
    await bus.close();
  }
});

test('with only a propagator, the caller context travels unchanged to the handler', async () => {
  assert.ok(context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable()));
  assert.ok(propagation.setGlobalPropagator(new W3CTraceContextPropagator()));
  const bus = await connect('sqlite::memory:', { logger: silentLogger });
  try {
    const topic = defineTopic(unique('carried'), { value: json<{ n: number }>() });
    await bus.ensureTopics([topic]);
    const caller: SpanContext = {
      traceId: '4bf92f3577b34da6a3ce929d0e0e4736',
      spanId: '00f067aa0ba902b7',
      traceFlags: TraceFlags.SAMPLED,
      traceState: createTraceState('vendor=abc'),
    };
    const { headers, active } = await publishAndConsume(bus, topic, () =>
      context.with(trace.setSpanContext(ROOT_CONTEXT, caller), () => bus.publish(topic, { n: 1 })),
    );
    // No tracer: no producer span of Eventline's own, so the record carries the caller's span.
    assert.equal(headers.traceparent, `00-${caller.traceId}-${caller.spanId}-01`);
    assert.equal(headers.tracestate, 'vendor=abc');
    assert.equal(active?.traceId, caller.traceId);
    assert.equal(active?.spanId, caller.spanId);
    assert.equal(active?.isRemote, true);
  } finally {
    await bus.close();
  }
});

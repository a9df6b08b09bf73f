import {
  type Attributes,
  type Context,
  context,
  type Link,
  ProxyTracerProvider,
  propagation,
  ROOT_CONTEXT,
  type Span,
  SpanKind,
  SpanStatusCode,
  type TextMapGetter,
  type TracerProvider,
  trace,
} from '@opentelemetry/api';
import type { Engine, Header, StoredRecord } from '../engine/types.ts';

/**
 * Tracing through the OpenTelemetry API. Eventline never configures an SDK: it uses whatever
 * tracer provider and propagator the application registered, and does (almost) nothing when none
 * is. Every entry point first asks {@link tracingNow}, a few property reads, once per publish call
 * or fetched batch; per-record work happens only when a tracer or a propagator is registered.
 */

const TRACER_NAME = 'eventline';
const NOOP_PROVIDER = new ProxyTracerProvider().getDelegate();

/** What the application registered: spans are recorded, context travels in headers, or both. */
export interface Tracing {
  readonly spans: boolean;
  readonly propagate: boolean;
}

const STATES: readonly (Tracing | undefined)[] = [
  undefined,
  { spans: true, propagate: false },
  { spans: false, propagate: true },
  { spans: true, propagate: true },
];

/** The tracing state now; undefined when neither a tracer provider nor a propagator is registered. */
export function tracingNow(): Tracing | undefined {
  return STATES[(tracerRegistered() ? 1 : 0) | (propagation.fields().length > 0 ? 2 : 0)];
}

function tracerRegistered(): boolean {
  let provider: TracerProvider = trace.getTracerProvider();
  // The global is a proxy (of this copy of the API or another one) until an SDK sets its delegate.
  const proxy = provider as Partial<ProxyTracerProvider>;
  if (typeof proxy.getDelegate === 'function') provider = proxy.getDelegate();
  return provider !== NOOP_PROVIDER && provider.constructor?.name !== 'NoopTracerProvider';
}

/** `messaging.system`: `kafka` on Kafka, `eventline` on the embedded engine. */
function systemOf(engine: Engine): string {
  return engine.kind === 'kafka' ? 'kafka' : 'eventline';
}

/**
 * Runs a publish inside a PRODUCER span `<topic> publish` (a child of the active context), so the
 * records it encodes carry that span's context. Without a registered tracer it only calls `publish`.
 */
export function tracePublish<T>(
  engine: Engine,
  topic: string,
  count: number,
  publish: () => Promise<T>,
): Promise<T> {
  if (!tracingNow()?.spans) return publish();
  const attributes: Attributes = {
    'messaging.system': systemOf(engine),
    'messaging.destination.name': topic,
    'messaging.operation.type': 'send',
    'messaging.operation.name': 'publish',
  };
  if (count !== 1) attributes['messaging.batch.message_count'] = count;
  const parent = context.active();
  const span = trace
    .getTracer(TRACER_NAME)
    .startSpan(`${topic} publish`, { kind: SpanKind.PRODUCER, attributes }, parent);
  return context.with(trace.setSpan(parent, span), publish).then(
    (result) => {
      span.end();
      return result;
    },
    (err: unknown) => {
      failed(span, err);
      span.end();
      throw err;
    },
  );
}

/**
 * The headers that carry the active context to consumers (`traceparent`, and `tracestate` when
 * present, or whatever the registered propagator writes), ready to add to every record of a
 * batch; undefined when no propagator is registered or there is no context to carry.
 */
export function traceHeaders(): Header[] | undefined {
  if (propagation.fields().length === 0) return undefined;
  const carrier: Record<string, string> = {};
  propagation.inject(context.active(), carrier);
  const names = Object.keys(carrier);
  return names.length === 0 ? undefined : names.map((name) => [name, Buffer.from(carrier[name]!)] as const);
}

const recordGetter: TextMapGetter<StoredRecord> = {
  keys: (record) => record.headers.map(([name]) => name),
  get: (record, key) => {
    if (record.headerText !== undefined) return record.headerText(key);
    for (const [name, value] of record.headers) if (name === key) return value.toString('latin1');
    return undefined;
  },
};

/** The producer's context carried in a record's headers (the root context when there is none). */
function contextOf(record: StoredRecord): Context {
  return propagation.extract(ROOT_CONTEXT, record, recordGetter);
}

/** What a process span says about the delivery, beyond the record itself. */
export interface Delivery {
  engine: Engine;
  group: string;
  attempt: number;
}

/**
 * Runs a handler call for one record inside a CONSUMER span `<topic> process` whose parent is the
 * context the producer wrote in the record's headers, so the handler's own spans and publishes
 * join the producer's trace. A handler that throws or rejects marks the span as failed. Returns
 * what `handle` returns (a promise stays a promise, a plain value stays plain).
 */
export function traceProcess<R>(
  tracing: Tracing,
  delivery: Delivery,
  record: StoredRecord,
  handle: () => R,
): R {
  const parent = tracing.propagate ? contextOf(record) : ROOT_CONTEXT;
  if (!tracing.spans) return context.with(parent, handle);
  const attributes = processAttributes(delivery, record.topic, record.partition);
  attributes[delivery.engine.kind === 'kafka' ? 'messaging.kafka.offset' : 'messaging.eventline.offset'] =
    record.offset;
  const id = recordGetter.get(record, 'ce_id');
  if (id !== undefined) attributes['messaging.message.id'] = id;
  const span = trace
    .getTracer(TRACER_NAME)
    .startSpan(`${record.topic} process`, { kind: SpanKind.CONSUMER, attributes }, parent);
  return within(span, trace.setSpan(parent, span), handle);
}

/**
 * Runs a batch handler call inside one CONSUMER span `<topic> process`, linked to the context each
 * record carries (a batch has many parents, so the span starts its own trace).
 */
export function traceProcessBatch<R>(
  tracing: Tracing,
  delivery: Delivery,
  records: readonly StoredRecord[],
  handle: () => R,
): R {
  if (!tracing.spans) return context.with(ROOT_CONTEXT, handle);
  const first = records[0]!;
  const links: Link[] = [];
  if (tracing.propagate) {
    for (const r of records) {
      const linked = trace.getSpanContext(contextOf(r));
      if (linked !== undefined && trace.isSpanContextValid(linked)) links.push({ context: linked });
    }
  }
  const attributes = processAttributes(delivery, first.topic, first.partition);
  attributes['messaging.batch.message_count'] = records.length;
  const span = trace
    .getTracer(TRACER_NAME)
    .startSpan(`${first.topic} process`, { kind: SpanKind.CONSUMER, attributes, links }, ROOT_CONTEXT);
  return within(span, trace.setSpan(ROOT_CONTEXT, span), handle);
}

function processAttributes(delivery: Delivery, topic: string, partition: number): Attributes {
  return {
    'messaging.system': systemOf(delivery.engine),
    'messaging.destination.name': topic,
    'messaging.destination.partition.id': String(partition),
    'messaging.consumer.group.name': delivery.group,
    'messaging.operation.type': 'process',
    'messaging.operation.name': 'process',
    'eventline.attempt': delivery.attempt,
  };
}

/** Calls `fn` in `ctx` and ends the span when it returns, or when the promise it returns settles. */
function within<R>(span: Span, ctx: Context, fn: () => R): R {
  let result: R;
  try {
    result = context.with(ctx, fn);
  } catch (err) {
    failed(span, err);
    span.end();
    throw err;
  }
  if (
    result !== null &&
    typeof result === 'object' &&
    typeof (result as { then?: unknown }).then === 'function'
  ) {
    return (result as unknown as Promise<unknown>).then(
      (value) => {
        span.end();
        return value;
      },
      (err: unknown) => {
        failed(span, err);
        span.end();
        throw err;
      },
    ) as R;
  }
  span.end();
  return result;
}

function failed(span: Span, err: unknown): void {
  const error = err instanceof Error ? err : new Error(String(err));
  span.recordException(error);
  const code = (error as { code?: unknown }).code;
  span.setAttribute('error.type', typeof code === 'string' ? code : error.name);
  span.setStatus({ code: SpanStatusCode.ERROR, message: error.message });
}

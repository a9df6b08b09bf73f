/**
 * Prometheus metrics. Eventline's own instruments are small classes registered in a prom-client
 * `Registry`, so they are exposed with a service's own prom-client metrics, in one text. The hot
 * paths (a record handled, a batch published) touch plain numbers in a child object the caller
 * keeps; labels are joined and looked up once, when the child is made, never per record.
 * Values that are cheaper to read than to keep current (lag, view size, outbox backlog) are read
 * when Prometheus scrapes.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import type { Registry } from 'prom-client';
import { type Duration, parseDuration } from '../util/units.ts';

/** Seconds: from 0.1 ms (an in-memory handler) to 10 s (a slow database write or a broker failover). */
export const DURATION_BUCKETS = [
  0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
] as const;

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
    timer.unref();
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

type MetricType = 'counter' | 'gauge' | 'histogram';

/** One line of the exposition, as prom-client's registry formats it. */
interface Value {
  metricName?: string;
  labels: Record<string, string | number>;
  value: number;
}

/** What prom-client's registry reads from a metric. */
interface MetricOutput {
  name: string;
  help: string;
  type: MetricType;
  aggregator: 'sum';
  values: Value[];
}

interface Family<C> {
  readonly name: string;
  readonly help: string;
  readonly type: MetricType;
  readonly aggregator: 'sum';
  child(...values: string[]): C;
  get(): Promise<MetricOutput>;
}

abstract class Instrument<C> implements Family<C> {
  readonly aggregator = 'sum' as const;
  abstract readonly type: MetricType;
  readonly #children = new Map<string, { labels: Record<string, string>; child: C }>();

  readonly name: string;
  readonly help: string;
  readonly labelNames: readonly string[];

  constructor(name: string, help: string, labelNames: readonly string[]) {
    this.name = name;
    this.help = help;
    this.labelNames = labelNames;
  }

  protected abstract make(): C;
  protected abstract values(labels: Record<string, string>, child: C): Value[];

  /** The child for these label values (in `labelNames` order); keep it, it is the fast path. */
  child(...values: string[]): C {
    const key = values.join('\u0000');
    let entry = this.#children.get(key);
    if (entry === undefined) {
      const labels: Record<string, string> = {};
      this.labelNames.forEach((n, i) => {
        labels[n] = values[i] ?? '';
      });
      entry = { labels, child: this.make() };
      this.#children.set(key, entry);
    }
    return entry.child;
  }

  async get(): Promise<MetricOutput> {
    const values: Value[] = [];
    for (const { labels, child } of this.#children.values()) values.push(...this.values(labels, child));
    return {
      name: this.name,
      help: this.help,
      type: this.type,
      aggregator: this.aggregator,
      values,
    };
  }
}

export class CounterChild {
  value = 0;
  inc(by = 1): void {
    this.value += by;
  }
}

class CounterFamily extends Instrument<CounterChild> {
  readonly type = 'counter';
  protected make(): CounterChild {
    return new CounterChild();
  }
  protected values(labels: Record<string, string>, c: CounterChild): Value[] {
    return [{ labels, value: c.value }];
  }
}

export class HistogramChild {
  readonly counts: Float64Array;
  sum = 0;
  count = 0;
  readonly bounds: readonly number[];
  constructor(bounds: readonly number[]) {
    this.bounds = bounds;
    this.counts = new Float64Array(bounds.length);
  }
  /** Records one observation, in seconds. */
  observe(seconds: number): void {
    const b = this.bounds;
    let i = 0;
    while (i < b.length && seconds > b[i]!) i++;
    if (i < b.length) this.counts[i]!++;
    this.sum += seconds;
    this.count++;
  }
}

class HistogramFamily extends Instrument<HistogramChild> {
  readonly type = 'histogram';
  readonly bounds: readonly number[];
  constructor(
    name: string,
    help: string,
    labelNames: readonly string[],
    bounds: readonly number[] = DURATION_BUCKETS,
  ) {
    super(name, help, labelNames);
    this.bounds = bounds;
  }
  protected make(): HistogramChild {
    return new HistogramChild(this.bounds);
  }
  protected values(labels: Record<string, string>, h: HistogramChild): Value[] {
    const out: Value[] = [];
    let cumulative = 0;
    for (let i = 0; i < h.bounds.length; i++) {
      cumulative += h.counts[i]!;
      out.push({
        metricName: `${this.name}_bucket`,
        labels: { ...labels, le: h.bounds[i]! },
        value: cumulative,
      });
    }
    out.push({ metricName: `${this.name}_bucket`, labels: { ...labels, le: '+Inf' }, value: h.count });
    out.push({ metricName: `${this.name}_sum`, labels, value: h.sum });
    out.push({ metricName: `${this.name}_count`, labels, value: h.count });
    return out;
  }
}

/** A value read at scrape time from whatever `read` returns. */
export interface Sample {
  labels: Record<string, string | number>;
  value: number;
}

class CollectedFamily implements Family<never> {
  readonly aggregator = 'sum' as const;
  readonly name: string;
  readonly help: string;
  readonly type: 'gauge' | 'counter';
  readonly read: () => Sample[] | Promise<Sample[]>;
  constructor(
    name: string,
    help: string,
    type: 'gauge' | 'counter',
    read: () => Sample[] | Promise<Sample[]>,
  ) {
    this.name = name;
    this.help = help;
    this.type = type;
    this.read = read;
  }
  child(): never {
    throw new Error(`${this.name} is read at scrape time`);
  }
  async get(): Promise<MetricOutput> {
    // One sample per label set: two sources may report the same (two clients in one group).
    const seen = new Set<string>();
    const values: Value[] = [];
    for (const v of await this.read()) {
      const key = JSON.stringify(v.labels);
      if (seen.has(key)) continue;
      seen.add(key);
      values.push(v);
    }
    return {
      name: this.name,
      help: this.help,
      type: this.type,
      aggregator: this.aggregator,
      values,
    };
  }
}

export interface LagSample {
  group: string;
  topic: string;
  partition: number;
  records: number;
  seconds: number;
}

export interface ViewSample {
  topic: string;
  entries: number;
  /** Null before the view applied anything. */
  stalenessSeconds: number | null;
  ready: boolean;
  /** Lookups answered by the fallback loader since the view started. */
  fallbackUses: number;
}

export interface OutboxSample {
  outbox: string;
  backlog: number;
  oldestAgeSeconds: number;
}

/** What a client tells its metrics at scrape time. */
export interface MetricsSource {
  /** Consumer lag of the groups this source consumes in (every group, for an exporter). */
  lag?(): Promise<LagSample[]>;
  views?(): ViewSample[];
  outboxes?(): Promise<OutboxSample[]>;
}

export interface MetricsOptions {
  /** Register into this prom-client registry (with the service's own metrics). Default: a new one. */
  registry?: Registry;
  /** How long a scrape waits for the lag, a view or an outbox backlog before leaving it out. Default `'5s'`. */
  readTimeout?: Duration;
}

/**
 * Eventline's Prometheus metrics: pass one to several clients with `connect(url, { metrics })`, or
 * let each client make its own (`bus.metrics`). Every metric is listed in docs/operations.md.
 */
export class EventlineMetrics {
  #registry: Registry | undefined;
  readonly #families: Family<unknown>[] = [];
  readonly #sources = new Set<MetricsSource>();

  readonly published: CounterFamily;
  readonly publishDuration: HistogramFamily;
  readonly consumed: CounterFamily;
  readonly handlerDuration: HistogramFamily;
  readonly retries: CounterFamily;
  readonly deadLetters: CounterFamily;
  readonly replayed: CounterFamily;
  readonly duplicates: CounterFamily;
  readonly rebalances: CounterFamily;
  readonly requestDuration: HistogramFamily;
  readonly requestTimeouts: CounterFamily;
  readonly lateReplies: CounterFamily;
  readonly outboxRelayed: CounterFamily;
  readonly scrapeErrors: CounterFamily;

  constructor(options: MetricsOptions = {}) {
    this.#registry = options.registry;
    // Clients given this registry later (`{ metrics: { registry } }`) use these metrics.
    if (options.registry !== undefined && !EventlineMetrics.#byRegistry.has(options.registry)) {
      EventlineMetrics.#byRegistry.set(options.registry, this);
    }
    const readTimeoutMs = parseDuration(options.readTimeout ?? '5s', 'metrics.readTimeout');
    const counter = (name: string, help: string, labels: string[]): CounterFamily =>
      this.#add(new CounterFamily(name, help, labels));
    const histogram = (name: string, help: string, labels: string[]): HistogramFamily =>
      this.#add(new HistogramFamily(name, help, labels));
    this.published = counter(
      'eventline_records_published_total',
      'Records published, by topic and outcome (success: stored durably; failure: refused or not stored).',
      ['topic', 'outcome'],
    );
    this.publishDuration = histogram(
      'eventline_publish_duration_seconds',
      'Time from a publish call to its durable acknowledgement (one observation per call or batch).',
      ['topic'],
    );
    this.consumed = counter(
      'eventline_records_consumed_total',
      'Handler deliveries, by group, topic and outcome (success or failure; a retried record counts once per attempt).',
      ['group', 'topic', 'outcome'],
    );
    this.handlerDuration = histogram(
      'eventline_handler_duration_seconds',
      'Time spent in the handler per delivery (per call for batch handlers), by group, topic and outcome.',
      ['group', 'topic', 'outcome'],
    );
    this.retries = counter(
      'eventline_retries_total',
      'Failed deliveries scheduled for another attempt, by group and topic.',
      ['group', 'topic'],
    );
    this.deadLetters = counter(
      'eventline_dead_letters_total',
      'Records given up after their last attempt, by group, topic and where they went (dead_letter, parking_lot, dropped).',
      ['group', 'topic', 'destination'],
    );
    this.replayed = counter(
      'eventline_dead_letters_replayed_total',
      'Dead letters sent back by a replay, by dead-letter topic.',
      ['topic'],
    );
    this.duplicates = counter(
      'eventline_duplicates_suppressed_total',
      'Records skipped because their ce_id was processed already by the group, by group and topic.',
      ['group', 'topic'],
    );
    this.rebalances = counter(
      'eventline_rebalances_total',
      'Partition assignment changes seen by members of this process, by group and event (assigned, revoked, lost).',
      ['group', 'event'],
    );
    this.requestDuration = histogram(
      'eventline_request_duration_seconds',
      'Request/reply round trips, by request topic and outcome (success, failure, timeout).',
      ['topic', 'outcome'],
    );
    this.requestTimeouts = counter(
      'eventline_request_timeouts_total',
      'Requests that got no reply in time, by request topic.',
      ['topic'],
    );
    this.lateReplies = counter(
      'eventline_late_replies_total',
      'Replies that arrived after their request timed out or was answered, by reply kind (late, duplicate).',
      ['kind'],
    );
    this.scrapeErrors = counter(
      'eventline_scrape_errors_total',
      'Readings left out of a scrape because their source failed or took longer than `readTimeout` (lag: the engine; outboxes: the database), by source.',
      ['source'],
    );
    this.outboxRelayed = counter(
      'eventline_outbox_relayed_total',
      'Outbox events published by a relay of this process, by outbox.',
      ['outbox'],
    );
    // One reading serves every gauge made from it in one scrape: the registry asks every family at once.
    // A source that fails or does not answer in time (an engine or database that is away) leaves
    // its samples out and is counted; the rest of the scrape goes on.
    const reading = <T>(
      source: 'lag' | 'views' | 'outboxes',
      read: (s: MetricsSource) => Promise<T[]> | T[] | undefined,
    ): (() => Promise<T[]>) => {
      let pending: Promise<T[]> | undefined;
      const failures = this.scrapeErrors.child(source);
      return () => {
        if (pending === undefined) {
          const value = Promise.all(
            [...this.#sources].map(async (s) => {
              try {
                return (await withTimeout(Promise.resolve(read(s)), readTimeoutMs)) ?? [];
              } catch {
                failures.inc();
                return [];
              }
            }),
          ).then((all) => all.flat());
          pending = value;
          const clear = () => {
            if (pending === value) pending = undefined;
          };
          value.then(clear, clear);
        }
        return pending;
      };
    };
    const collected = <T>(
      type: 'gauge' | 'counter',
      name: string,
      help: string,
      read: () => Promise<T[]>,
      sample: (t: T) => Sample | undefined,
    ): void => {
      this.#add(
        new CollectedFamily(name, help, type, async () =>
          (await read()).map(sample).filter((x): x is Sample => x !== undefined),
        ),
      );
    };
    const gauge = <T>(
      name: string,
      help: string,
      read: () => Promise<T[]>,
      sample: (t: T) => Sample | undefined,
    ) => collected('gauge', name, help, read, sample);
    const lag = reading('lag', (s) => s.lag?.());
    gauge(
      'eventline_consumer_lag_records',
      "Records between a group's committed offset and the end of the partition, by group, topic and partition.",
      lag,
      (l) => ({ labels: { group: l.group, topic: l.topic, partition: l.partition }, value: l.records }),
    );
    gauge(
      'eventline_consumer_lag_seconds',
      'Age of the oldest record a group has not consumed yet (0 when caught up), by group, topic and partition.',
      lag,
      (l) => ({ labels: { group: l.group, topic: l.topic, partition: l.partition }, value: l.seconds }),
    );
    const views = reading('views', (s) => s.views?.());
    gauge('eventline_view_entries', 'Keys held by a view, by topic.', views, (v) => ({
      labels: { topic: v.topic },
      value: v.entries,
    }));
    gauge(
      'eventline_view_staleness_seconds',
      'Age of the newest record a view applied, by topic (absent until it applied one).',
      views,
      (v) =>
        v.stalenessSeconds === null ? undefined : { labels: { topic: v.topic }, value: v.stalenessSeconds },
    );
    gauge(
      'eventline_view_ready',
      '1 once a view caught up with the end offsets seen at its start, else 0, by topic.',
      views,
      (v) => ({ labels: { topic: v.topic }, value: v.ready ? 1 : 0 }),
    );
    collected(
      'counter',
      'eventline_view_fallback_total',
      'Lookups a view answered with its fallback loader because it was not ready yet, by topic.',
      views,
      (v) => ({ labels: { topic: v.topic }, value: v.fallbackUses }),
    );
    const outboxes = reading('outboxes', (s) => s.outboxes?.());
    gauge(
      'eventline_outbox_backlog_events',
      'Events accepted by an outbox and not yet published, by outbox.',
      outboxes,
      (o) => ({ labels: { outbox: o.outbox }, value: o.backlog }),
    );
    gauge(
      'eventline_outbox_oldest_age_seconds',
      'Age of the oldest unpublished outbox event (0 when empty), by outbox.',
      outboxes,
      (o) => ({ labels: { outbox: o.outbox }, value: o.oldestAgeSeconds }),
    );
  }

  #add<F extends Family<unknown>>(family: F): F {
    this.#families.push(family);
    this.#registry?.registerMetric(family as never);
    return family;
  }

  /**
   * The prom-client registry holding these metrics (and whatever else the service registers in
   * it). Without one given in the options it is made on first use: loading prom-client costs
   * 50-80 ms of a service's start, which a process that is never scraped does not pay.
   */
  get registry(): Registry {
    if (this.#registry === undefined) {
      const { Registry: Made } = createRequire(import.meta.url)(
        'prom-client',
      ) as typeof import('prom-client');
      this.#registry = new Made();
      for (const family of this.#families) this.#registry.registerMetric(family as never);
    }
    return this.#registry;
  }

  static readonly #byRegistry = new WeakMap<Registry, EventlineMetrics>();

  /**
   * The metrics registered in `options.registry` (made on first use): prom-client allows one
   * family of a name per registry, so every client given that registry shares one set. Without a
   * registry: a new set in a registry of its own.
   */
  static of(options: MetricsOptions = {}): EventlineMetrics {
    if (options.registry === undefined) return new EventlineMetrics();
    return EventlineMetrics.#byRegistry.get(options.registry) ?? new EventlineMetrics(options);
  }

  /** Adds what a client reads at scrape time; returns a function that removes it. */
  addSource(source: MetricsSource): () => void {
    this.#sources.add(source);
    return () => {
      this.#sources.delete(source);
    };
  }

  /** The Prometheus text exposition of the registry (Eventline's metrics and any others in it). */
  text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}

/**
 * A `(req, res)` handler for any node:http server (Fastify: `reply.hijack()` then call it with
 * `req.raw, reply.raw`) that answers with the Prometheus text of these metrics.
 */
export function metricsHandler(
  source: EventlineMetrics | { readonly metrics: EventlineMetrics },
): (req: IncomingMessage, res: ServerResponse) => void {
  const metrics = source instanceof EventlineMetrics ? source : source.metrics;
  return (_req, res) => {
    metrics.text().then(
      (body) => {
        res.writeHead(200, { 'content-type': metrics.contentType });
        res.end(body);
      },
      (err: unknown) => {
        res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' });
        res.end(`metrics could not be collected: ${err instanceof Error ? err.message : String(err)}\n`);
      },
    );
  };
}

/** The instruments a subscription touches for one topic, made once per group and topic. */
export class ConsumerInstruments {
  readonly success: CounterChild;
  readonly failure: CounterChild;
  readonly successTime: HistogramChild;
  readonly failureTime: HistogramChild;
  readonly retries: CounterChild;
  readonly deadLettered: CounterChild;
  readonly parked: CounterChild;
  readonly dropped: CounterChild;
  readonly duplicates: CounterChild;

  constructor(metrics: EventlineMetrics, group: string, topic: string) {
    this.success = metrics.consumed.child(group, topic, 'success');
    this.failure = metrics.consumed.child(group, topic, 'failure');
    this.successTime = metrics.handlerDuration.child(group, topic, 'success');
    this.failureTime = metrics.handlerDuration.child(group, topic, 'failure');
    this.retries = metrics.retries.child(group, topic);
    this.deadLettered = metrics.deadLetters.child(group, topic, 'dead_letter');
    this.parked = metrics.deadLetters.child(group, topic, 'parking_lot');
    this.dropped = metrics.deadLetters.child(group, topic, 'dropped');
    this.duplicates = metrics.duplicates.child(group, topic);
  }

  /** `count` records were handled by one call that started at `started` (performance.now()). */
  handled(started: number, count = 1): void {
    this.successTime.observe((performance.now() - started) / 1000);
    this.success.value += count;
  }

  /** A handler call that started at `started` threw. */
  threw(started: number, count = 1): void {
    this.failureTime.observe((performance.now() - started) / 1000);
    this.failure.value += count;
  }
}

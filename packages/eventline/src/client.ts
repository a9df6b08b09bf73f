import type { Codec } from './codec.ts';
import type { EmbeddedEngineOptions } from './engine/embedded/engine.ts';
import { openEngine } from './engine/index.ts';
import type { KafkaEngineOptions } from './engine/kafka/engine.ts';
import type {
  AppendRecord,
  AppendResult,
  CommittedOffset,
  Engine,
  GroupDescription,
  Header,
  PartitionOffsets,
  TopicDescription,
} from './engine/types.ts';
import { DEFAULT_URL, redactUrl } from './engine/url.ts';
import { refuse } from './engine/validate.ts';
import { EventlineError, fail, isEventlineError } from './errors.ts';
import { decodeMessage, type Message } from './message.ts';
import {
  type HealthCheck,
  HealthMonitor,
  type HealthOptions,
  type HealthReport,
} from './observability/health.ts';
import { type GroupLag, groupLag, lagSamples } from './observability/lag.ts';
import { createLogger, type Logger } from './observability/logger.ts';
import {
  type CounterChild,
  EventlineMetrics,
  type HistogramChild,
  type LagSample,
  type MetricsOptions,
  type OutboxSample,
  type ViewSample,
} from './observability/metrics.ts';
import { traceHeaders, tracePublish } from './observability/tracing.ts';
import { partitionForKey } from './partitioner.ts';
import type { Outbox } from './patterns/outbox.ts';
import {
  createRequester,
  REPLY_TOPIC_PREFIX,
  type Requester,
  type RequestOptions,
  type Responder,
  type RespondOptions,
  respond,
} from './patterns/request-reply.ts';
import { createView, type View, type ViewOptions } from './patterns/view.ts';
import { CodecBinder, prepareDecode, prepareEncode, type TopicCodecs } from './runtime/codecs.ts';
import { REPLAY_GROUP_PREFIX } from './runtime/replay.ts';
import {
  type AnyTopic,
  type MessageOf,
  type SubscribeOptions,
  type Subscription,
  SubscriptionRunner,
  type TopicInput,
} from './runtime/subscription.ts';
import { httpRegistry } from './schema/http-registry.ts';
import { openRegistry } from './schema/registry.ts';
import type { SchemaRegistry } from './schema/types.ts';
import {
  diffTopicConfig,
  normalizeTopicConfig,
  type Topic,
  type TopicConfig,
  type TopicDifference,
  type TopicSettings,
  validateTopicName,
} from './topic.ts';
import { writeUuids } from './util/uuid.ts';

export interface ConnectOptions {
  /** Names this client in group descriptions and logs. Default `'eventline'`. */
  clientId?: string;
  /** CloudEvents `ce_source` written on every record. Default `'/<clientId>'`. */
  source?: string;
  /** Where Eventline logs. Default: JSON lines on stderr at level `warn` (EVENTLINE_LOG_LEVEL). */
  logger?: Logger;
  /** Settings of the embedded engine. */
  embedded?: EmbeddedEngineOptions;
  /** Settings of the Kafka engine (SASL, TLS, timeouts). */
  kafka?: KafkaEngineOptions;
  /**
   * The schema registry Avro codecs use. Default: EVENTLINE_REGISTRY_URL when set (an external
   * Confluent-compatible registry; credentials may be in the URL), else the built-in registry
   * stored in the `_schemas` topic of the connected engine, opened on first use.
   */
  registry?: SchemaRegistry | RegistryOptions;
  /**
   * Prometheus metrics (docs/operations.md): an `EventlineMetrics` shared with other clients, or
   * options for this client's own (`{ registry }` registers them in a prom-client registry of yours).
   */
  metrics?: EventlineMetrics | MetricsOptions;
}

/** An external Confluent-compatible schema registry (Confluent, Karapace, Apicurio, `eventline registry`). */
export interface RegistryOptions {
  url: string;
  username?: string;
  password?: string;
}

/** Headers as callers give them: an object, or ordered pairs when a name repeats. */
export type HeadersInput =
  | Readonly<Record<string, string | Buffer>>
  | readonly (readonly [name: string, value: string | Buffer])[];

export interface PublishOptions<K = string> {
  /** The record key; default: the topic's `key(value)`, or none. Bytes are taken as they are. */
  key?: K | Buffer | null;
  /** Extra headers. A header named like a CloudEvents default (`ce_id`, `ce_type`, …) replaces it. */
  headers?: HeadersInput;
  /** Record time. Default: now. */
  timestamp?: number | Date;
  /** Explicit partition, overriding the partitioner. */
  partition?: number;
  /** CloudEvents `ce_type` of this record. Default: the topic's type. */
  type?: string;
}

export interface PublishBatchOptions {
  /**
   * Default true: every record of the batch is stored, or none is. `false` lets the Kafka engine
   * store each partition's records on their own, without a transaction (faster; a failure may
   * leave some partitions written). The embedded engine is always atomic.
   */
  atomic?: boolean;
}

export interface BatchItem<V, K = string> extends PublishOptions<K> {
  /** The value; `null` writes a tombstone (compacted topics; needs a key). */
  value: V | null;
}

export interface EncodeOptions {
  /**
   * Leave the partition of records without an explicit one to `appendEncoded` (`partition: -1`),
   * so encoding needs nothing from the engine. For an outbox that accepts events while the engine
   * is unreachable. (Codecs that register a schema still need the registry once per schema.)
   */
  partitionsLater?: boolean;
}

/** A record encoded for a topic, ready to store: see `Eventline.encodeBatch`. */
export interface EncodedRecord extends AppendRecord {
  /** CloudEvents `ce_id` of the record. */
  id: string;
}

/** Where a published record landed. */
export interface PublishResult {
  topic: string;
  partition: number;
  offset: number;
  /** CloudEvents `ce_id` of the record. */
  id: string;
  timestamp: number;
}

export type TopicAction = 'create' | 'unchanged' | 'alter' | 'drift';

/** What `ensureTopics` found, or would do, for one topic. */
export interface TopicPlan {
  topic: string;
  /** `create`: missing; `alter`: settings differ and can be applied; `drift`: differences that will not be touched. */
  action: TopicAction;
  differences: TopicDifference[];
  /**
   * Declared settings this engine keeps but does not use, said plainly: on an engine without
   * replication (the embedded one), `replicationFactor` and `minInsyncReplicas` are not compared.
   */
  notes?: string[];
  /** Set by `ensureTopics` once applied. */
  applied?: boolean;
}

export interface EnsureTopicsOptions {
  /**
   * Apply differences that can be applied: grow partitions, change retention and limits. Without it,
   * differences are reported (and logged) but left alone. Nothing is ever shrunk or deleted.
   */
  alter?: boolean;
}

export type ResetTarget = 'earliest' | 'latest' | { offset: number } | { timestamp: number | Date | string };

export interface ResetOffsetsOptions {
  topic: string;
  /** Default: every partition of the topic. */
  partitions?: number[];
  to: ResetTarget;
  /** Compute and return the new offsets without writing them. */
  dryRun?: boolean;
  /** Called as each partition's new offset is found (`done` of `total`), for progress reports. */
  onProgress?: (done: number, total: number) => void;
}

export type ReadFrom = 'earliest' | 'latest' | { offset: number } | { timestamp: number | Date };

const CE_SPECVERSION = Buffer.from('1.0');

/** A connection to an engine: publish, subscribe, and manage topics and groups. */
export class Eventline {
  readonly #engine: Engine;
  readonly clientId: string;
  readonly #source: Buffer;
  readonly logger: Logger;
  readonly admin: Admin;
  readonly reader: Reader;
  #subscriptions = new Set<Subscription>();
  #roundRobin = new Map<string, number>();
  #headerCache = new Map<string, Header[]>();
  #lastTime = { ms: -1, iso: Buffer.alloc(0) };
  #closing: Promise<void> | undefined;
  readonly #registryOption: SchemaRegistry | RegistryOptions | undefined;
  #registry: Promise<SchemaRegistry> | undefined;
  readonly #codecs: CodecBinder;
  #requester: Requester | undefined;
  readonly #views = new Set<View<unknown, unknown>>();
  readonly #outboxes = new Set<Outbox>();
  readonly #responders = new WeakSet<Subscription>();
  #health: HealthMonitor | undefined;
  /** Prometheus metrics of this client: `metricsHandler(bus)` serves them. */
  readonly metrics: EventlineMetrics;
  readonly #metricSources: (() => void)[] = [];
  readonly #publishMetrics = new Map<string, PublishInstruments>();

  constructor(engine: Engine, options: ConnectOptions = {}) {
    this.#engine = engine;
    this.clientId = options.clientId ?? 'eventline';
    this.#source = Buffer.from(options.source ?? `/${this.clientId}`);
    this.logger = options.logger ?? createLogger();
    this.#registryOption = options.registry;
    this.#codecs = new CodecBinder(() => this.registry());
    this.admin = new Admin(engine);
    this.reader = new Reader(engine, this.#codecs);
    this.metrics =
      options.metrics instanceof EventlineMetrics ? options.metrics : EventlineMetrics.of(options.metrics);
    this.#metricSources.push(
      this.metrics.addSource({
        lag: () => this.#lagSamples(),
        views: () => [...this.#views].filter((v) => v.state().status !== 'closed').map(viewSample),
        // The outboxes health reports on, until they close.
        outboxes: () =>
          Promise.all(
            [...this.#outboxes].map(async (o): Promise<OutboxSample> => {
              const b = await o.backlog();
              return { outbox: o.name, backlog: b.count, oldestAgeSeconds: b.oldestAgeMs / 1000 };
            }),
          ),
      }),
    );
  }

  /** Lag of every group a subscription of this client consumes in. */
  #lagSamples(): Promise<LagSample[]> {
    return lagSamples(this.#engine, new Set([...this.#subscriptions].map((s) => s.group)), (err, group) =>
      this.logger.debug({ err, group }, 'metrics: consumer lag not read'),
    );
  }

  /**
   * Adds the lag of other consumer groups to this client's metrics: those named, or every group
   * of the engine (what `eventline metrics` serves). Returns a function that stops it.
   */
  watchLag(groups?: readonly string[]): () => void {
    this.#check();
    const remove = this.metrics.addSource({
      lag: async () => {
        // Every group leaves out the replay bookkeeping groups: their position stays on the dead
        // letters a filtered replay left in place, which would read as lag for ever.
        const all =
          groups ?? (await this.#engine.listGroups()).filter((g) => !g.startsWith(REPLAY_GROUP_PREFIX));
        return lagSamples(this.#engine, all);
      },
    });
    this.#metricSources.push(remove);
    return remove;
  }

  #publishInstruments(name: string): PublishInstruments {
    // Replies go to one topic per requester instance: one label for all, or the series never end.
    const topic = name.startsWith(REPLY_TOPIC_PREFIX) ? `${REPLY_TOPIC_PREFIX}*` : name;
    let m = this.#publishMetrics.get(topic);
    if (m === undefined) {
      m = {
        success: this.metrics.published.child(topic, 'success'),
        failure: this.metrics.published.child(topic, 'failure'),
        duration: this.metrics.publishDuration.child(topic),
      };
      this.#publishMetrics.set(topic, m);
    }
    return m;
  }

  /**
   * The schema registry of this connection (see ConnectOptions.registry), opened on first use.
   * Throws EVENTLINE_ERR_CLOSED after close.
   */
  registry(): Promise<SchemaRegistry> {
    this.#check();
    if (this.#registry === undefined) {
      const option = this.#registryOption ?? registryFromEnv();
      const opening =
        option === undefined
          ? openRegistry(this.#engine)
          : Promise.resolve('register' in option ? option : httpRegistry(option.url, option));
      // A failed open is not remembered: the next use tries again.
      opening.then(
        (r) => this.logger.info({ registry: r.description }, 'schema registry ready'),
        () => {
          if (this.#registry === opening) this.#registry = undefined;
        },
      );
      this.#registry = opening;
      return opening;
    }
    return this.#registry;
  }

  /**
   * A topic's codecs bound to this connection (its schema registry and writer-schema cache), for
   * Eventline's own patterns and tools that read or write a topic without `publish`/`subscribe`.
   */
  codecsOf(topic: Topic<unknown, unknown> | string): TopicCodecs {
    return this.#codecs.of(topic);
  }

  /** The engine underneath; for tools and tests. */
  get engine(): Engine {
    return this.#engine;
  }

  /** The engine URL (secrets removed). */
  get url(): string {
    return this.#engine.displayUrl;
  }

  #check(): void {
    if (this.#closing) fail('EVENTLINE_ERR_CLOSED', 'this Eventline client is closed');
  }

  /**
   * Creates missing topics and compares existing ones with their declarations. Idempotent. With
   * `{ alter: true }` it also applies what can be applied (partitions grow, limits change).
   * Drift is logged as a warning and returned; nothing is deleted or shrunk.
   */
  async ensureTopics(topics: readonly AnyTopic[], options: EnsureTopicsOptions = {}): Promise<TopicPlan[]> {
    this.#check();
    const plans = await this.admin.plan(topics.map((t) => ({ name: t.name, config: t.config })));
    const missing = plans.filter((p) => p.action === 'create');
    if (missing.length > 0) {
      const specs = missing.map((p) => ({
        name: p.topic,
        ...topics.find((t) => t.name === p.topic)!.config,
      }));
      try {
        await this.#engine.createTopics(specs);
      } catch (err) {
        // Another process created some of them at the same moment: create the rest one by one.
        if (!isEventlineError(err, 'EVENTLINE_ERR_TOPIC_EXISTS')) throw err;
        for (const spec of specs) {
          await this.#engine.createTopics([spec]).catch((e: unknown) => {
            if (!isEventlineError(e, 'EVENTLINE_ERR_TOPIC_EXISTS')) throw e;
          });
        }
      }
      for (const p of missing) p.applied = true;
    }
    for (const plan of plans) {
      if (plan.action !== 'alter' && plan.action !== 'drift') continue;
      const applicable = plan.differences.filter((d) => d.applicable);
      if (options.alter && applicable.length > 0) {
        const changes: Partial<TopicConfig> = {};
        for (const d of applicable) (changes as Record<string, unknown>)[d.setting] = d.declared;
        await this.#engine.alterTopic(plan.topic, changes);
        plan.applied = true;
      } else {
        this.logger.warn(
          { topic: plan.topic, differences: plan.differences },
          'topic settings differ from the declaration; left unchanged',
        );
      }
    }
    return plans;
  }

  /** Publishes one record; resolves once it is durable. See {@link Eventline.publishBatch}. */
  async publish<V, K>(
    topic: Topic<V, K>,
    value: NoInfer<V> | null,
    options: PublishOptions<NoInfer<K>> = {},
  ): Promise<PublishResult> {
    const [result] = await this.publishBatch(topic, [{ ...options, value }]);
    return result!;
  }

  /**
   * Publishes records atomically (unless `{ atomic: false }`): all of them are stored, durably, or
   * none is. On Kafka a batch spanning partitions or record batches is a transaction. Every record gets
   * CloudEvents headers (`ce_id`, `ce_type`, `ce_source`, `ce_time`, `ce_specversion`) and a
   * `content-type` from the value codec, unless the caller sets them. Keys choose partitions with
   * Kafka's murmur2 partitioner; keyless records go round-robin.
   *
   * Throws EVENTLINE_ERR_ENCODE (a value its codec rejects), EVENTLINE_ERR_UNKNOWN_TOPIC,
   * EVENTLINE_ERR_UNKNOWN_PARTITION, EVENTLINE_ERR_MESSAGE_TOO_LARGE, EVENTLINE_ERR_INVALID_RECORD,
   * EVENTLINE_ERR_ENGINE_BUSY; in every case nothing of the batch is stored.
   */
  publishBatch<V, K>(
    topic: Topic<V, K>,
    items: readonly BatchItem<NoInfer<V>, NoInfer<K>>[],
    options: PublishBatchOptions = {},
  ): Promise<PublishResult[]> {
    const count = Array.isArray(items) ? items.length : 0;
    return tracePublish(this.#engine, topic.name, count, () => this.#publishBatch(topic, items, options));
  }

  async #publishBatch<V, K>(
    topic: Topic<V, K>,
    items: readonly BatchItem<V, K>[],
    options: PublishBatchOptions,
  ): Promise<PublishResult[]> {
    let records: EncodedRecord[];
    try {
      records = await this.encodeBatch(topic, items);
    } catch (err) {
      if (Array.isArray(items)) this.#publishInstruments(topic.name).failure.inc(items.length);
      throw err;
    }
    return records.length === 0 ? [] : this.appendEncoded(topic.name, records, options);
  }

  /**
   * Turns items into the records `publishBatch` would store (codecs, key, partition, CloudEvents
   * headers) without storing them, for callers that store them later (the outbox). Throws as
   * `publishBatch` does for a value its codec rejects.
   */
  async encodeBatch<V, K>(
    topic: Topic<V, K>,
    items: readonly BatchItem<NoInfer<V>, NoInfer<K>>[],
    options: EncodeOptions = {},
  ): Promise<EncodedRecord[]> {
    this.#check();
    if (!Array.isArray(items)) fail('EVENTLINE_ERR_INVALID_ARGUMENT', 'publishBatch: items must be an array');
    if (items.length === 0) return [];
    const codecs = this.#codecs.of(topic as Topic<unknown, unknown>);
    const schemas = prepareEncode(codecs);
    if (schemas !== undefined) await schemas;
    // Deferred partitions leave the engine out of encoding: an outbox accepts events while it is down.
    const partitions = options.partitionsLater ? 0 : await this.#engine.partitionCount(topic.name);
    const n = items.length;
    const where = (i: number): string =>
      n === 1 ? `topic ${topic.name}` : `topic ${topic.name}, record ${i}`;
    const records: EncodedRecord[] = new Array(n);
    // One allocation for every ce_id of the batch; each header value is a view into it.
    const idBytes = Buffer.allocUnsafe(36 * n);
    writeUuids(idBytes, 0, n);
    const defaults = this.#constantHeaders(topic, topic.type);
    const traced = traceHeaders();
    for (let i = 0; i < n; i++) {
      const item = items[i]!;
      const timestamp =
        item.timestamp === undefined
          ? Date.now()
          : item.timestamp instanceof Date
            ? item.timestamp.getTime()
            : item.timestamp;
      const key = this.#encodeKey(topic, codecs, item, i, where);
      const value =
        item.value === null || item.value === undefined
          ? null
          : encodeWith(codecs.value, item.value, i, where, 'value');
      const partition =
        item.partition !== undefined
          ? item.partition
          : options.partitionsLater
            ? -1
            : this.#partitionFor(topic.name, key, partitions);
      const id = idBytes.toString('latin1', i * 36, i * 36 + 36);
      const constant = item.type === undefined ? defaults : this.#constantHeaders(topic, item.type);
      if (this.#lastTime.ms !== timestamp) {
        this.#lastTime = { ms: timestamp, iso: Buffer.from(new Date(timestamp).toISOString(), 'latin1') };
      }
      const headers: Header[] = new Array(constant.length + 2);
      headers[0] = ['ce_id', idBytes.subarray(i * 36, i * 36 + 36)];
      for (let h = 0; h < constant.length; h++) headers[h + 1] = constant[h]!;
      headers[constant.length + 1] = ['ce_time', this.#lastTime.iso];
      if (traced !== undefined) headers.push(...traced);
      records[i] = {
        id,
        partition,
        key,
        value,
        timestamp,
        headers: item.headers === undefined ? headers : withUserHeaders(topic.name, headers, item.headers),
      };
    }
    return records;
  }

  /**
   * Stores records made by `encodeBatch` (or read back from where they were kept), atomically
   * unless `{ atomic: false }`. Same guarantees and errors as `publishBatch`.
   */
  async appendEncoded(
    topic: string,
    records: readonly EncodedRecord[],
    options: PublishBatchOptions = {},
  ): Promise<PublishResult[]> {
    this.#check();
    if (records.length === 0) return [];
    const m = this.#publishInstruments(topic);
    const started = performance.now();
    let results: AppendResult[];
    try {
      let ready = records;
      if (records.some((r) => r.partition < 0)) {
        const count = await this.#engine.partitionCount(topic);
        ready = records.map((r) =>
          r.partition >= 0 ? r : { ...r, partition: this.#partitionFor(topic, r.key, count) },
        );
      }
      results = await this.#engine.append(topic, [...ready], options);
    } catch (err) {
      m.failure.inc(records.length);
      throw err;
    }
    m.duration.observe((performance.now() - started) / 1000);
    m.success.inc(records.length);
    const out: PublishResult[] = new Array(records.length);
    for (let i = 0; i < records.length; i++) {
      out[i] = {
        topic,
        partition: results[i]!.partition,
        offset: results[i]!.offset,
        id: records[i]!.id,
        timestamp: records[i]!.timestamp,
      };
    }
    return out;
  }

  /** Kafka's partitioner: murmur2 of the key, round robin without one. */
  #partitionFor(topic: string, key: Buffer | null, partitions: number): number {
    if (key !== null) return partitionForKey(key, partitions);
    const next = this.#roundRobin.get(topic) ?? 0;
    this.#roundRobin.set(topic, next + 1);
    return next % partitions;
  }

  #encodeKey<V, K>(
    topic: Topic<V, K>,
    codecs: TopicCodecs,
    item: BatchItem<V, K>,
    i: number,
    where: (i: number) => string,
  ): Buffer | null {
    let key: K | Buffer | null | undefined = item.key;
    if (key === undefined && topic.keyOf !== undefined && item.value !== null) {
      try {
        key = topic.keyOf(item.value);
      } catch (err) {
        throw new EventlineError(
          'EVENTLINE_ERR_ENCODE',
          `${where(i)}: the key function threw: ${messageOf(err)}`,
          {
            cause: err,
            details: { topic: topic.name, part: 'key' },
          },
        );
      }
    }
    if (key === undefined || key === null) return null;
    if (Buffer.isBuffer(key)) return key;
    return encodeWith(codecs.key, key, i, where, 'key');
  }

  /** The CloudEvents headers that are the same for every record of a topic and event type. */
  #constantHeaders<V, K>(topic: Topic<V, K>, type: string): Header[] {
    const cacheKey = `${topic.value.contentType ?? ''}\u0000${type}`;
    let constant = this.#headerCache.get(cacheKey);
    if (constant === undefined) {
      constant = [
        ['ce_specversion', CE_SPECVERSION],
        ['ce_type', Buffer.from(type)],
        ['ce_source', this.#source],
      ];
      if (topic.value.contentType !== undefined)
        constant.push(['content-type', Buffer.from(topic.value.contentType)]);
      if (this.#headerCache.size < 256) this.#headerCache.set(cacheKey, constant);
    }
    return constant;
  }

  /**
   * Starts consuming as a member of a consumer group. Partitions are spread across the group's
   * members (in any process sharing the engine); records of a partition arrive in order; offsets
   * are committed only after the handler succeeded, so a crash means redelivery, never loss. A
   * handler that throws gets the record again after a backoff.
   */
  subscribe<T extends TopicInput>(options: SubscribeOptions<T>): Subscription {
    this.#check();
    const sub = new SubscriptionRunner<T>(
      {
        engine: this.#engine,
        codecs: this.#codecs,
        clientId: this.clientId,
        logger: this.logger,
        metrics: this.metrics,
        // A failed subscription stays: health reports it until the client closes.
        onStopped: (s) => {
          if (s.state().status !== 'failed') this.#subscriptions.delete(s);
        },
      },
      options,
    );
    this.#subscriptions.add(sub);
    return sub;
  }

  /**
   * Publishes a request and resolves with its reply: see docs/delivery.md#requestreply. Replies
   * come back on a reply topic of this client's own, created on first use and deleted on close.
   * Throws EVENTLINE_ERR_TIMEOUT (no reply in time), EVENTLINE_ERR_REMOTE (a failure reply).
   */
  request<Req, Res = unknown, K = string>(
    topic: Topic<Req, K> | string,
    payload: NoInfer<Req>,
    options?: RequestOptions<Res, NoInfer<K>>,
  ): Promise<Res> {
    this.#check();
    this.#requester ??= createRequester(this);
    return this.#requester.request<Req, Res, K>(topic, payload, options);
  }

  /** Answers requests published with `request`: a consumer group member that replies, then commits. */
  respond<Req, Res, K = string>(options: RespondOptions<Req, Res, K>): Responder {
    this.#check();
    return respond(this, options);
  }

  /**
   * A replicated cache of a (usually compacted) topic: the last value per key, in memory, kept
   * current by following every partition. See docs/delivery.md#views. Closed with this client.
   */
  view<V, K>(topic: Topic<V, K>, options?: ViewOptions<V, K>): View<V, K>;
  view(topic: string, options?: ViewOptions<Buffer, string>): View<Buffer, string>;
  view<V, K>(topic: Topic<V, K> | string, options?: ViewOptions<V, K>): View<V, K> {
    this.#check();
    const view = createView(this, topic as Topic<V, K>, options);
    this.#views.add(view as View<unknown, unknown>);
    return view;
  }

  /**
   * Liveness and readiness of this client's parts, for probes and dashboards: see
   * docs/operations.md#health. Checks the client (open), the engine (answers a cheap call within
   * `timeout`, the answer reused for `cacheFor`), every subscription and responder (a member of its
   * group, reads not failing), every view from `view()` (caught up) and every outbox (its relay
   * alive, its oldest unsent event younger than `outboxMaxAge`). `live` is false only once the
   * client is closed: an engine outage makes it unready, never dead. Never rejects for an unhealthy
   * part; throws EVENTLINE_ERR_INVALID_ARGUMENT for a bad option.
   */
  health(options?: HealthOptions): Promise<HealthReport> {
    return this.#monitor().report(options);
  }

  /** The liveness check alone (is the client open), without I/O: what `/health/live` answers. */
  liveness(): HealthCheck {
    return this.#monitor().liveness();
  }

  #monitor(): HealthMonitor {
    this.#health ??= new HealthMonitor({
      engine: this.#engine,
      closed: () => this.#closing !== undefined,
      subscriptions: () => this.#subscriptions,
      isResponder: (sub) => this.#responders.has(sub),
      views: () => this.#views,
      outboxes: () => this.#outboxes,
    });
    return this.#health;
  }

  /**
   * For Eventline's own patterns: makes `health()` report on an outbox until the returned function
   * is called (on its close), or names a subscription as a request/reply responder.
   */
  track(part: { outbox: Outbox } | { responder: Subscription }): () => void {
    if ('outbox' in part) {
      this.#outboxes.add(part.outbox);
      return () => this.#outboxes.delete(part.outbox);
    }
    this.#responders.add(part.responder);
    return () => this.#responders.delete(part.responder);
  }

  /** Stops every subscription of this client (each finishes its in-flight work), then closes the engine. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      await Promise.allSettled([...this.#subscriptions].map((s) => s.stop()));
      await this.#requester?.close().catch(() => {});
      await Promise.allSettled([...this.#views].map((v) => v.close()));
      const registry = this.#registry;
      this.#registry = undefined;
      if (registry !== undefined) await registry.then((r) => r.close()).catch(() => {});
      await this.#engine.close();
      for (const remove of this.#metricSources.splice(0)) remove();
      this.logger.info({ engine: this.#engine.displayUrl }, 'connection closed');
    })();
    return this.#closing;
  }

  /** Same as close(): lets `await using bus = await connect()` close on scope exit. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function encodeWith<T>(
  codec: Codec<T>,
  value: T,
  i: number,
  where: (i: number) => string,
  part: 'key' | 'value',
): Buffer {
  try {
    return codec.encode(value);
  } catch (err) {
    if (err instanceof EventlineError) throw err;
    const extra = (err as { details?: Record<string, unknown> } | undefined)?.details;
    throw new EventlineError(
      'EVENTLINE_ERR_ENCODE',
      `${where(i)}: the ${part} cannot be encoded as ${codec.name}: ${messageOf(err)}`,
      { cause: err, details: { ...extra, part, index: i } },
    );
  }
}

/** Adds caller headers; one named like a default (`ce_type`, …) replaces the default. */
function withUserHeaders(topic: string, defaults: Header[], input: HeadersInput): Header[] {
  const user: Header[] = (Array.isArray(input) ? input : Object.entries(input)).map(
    ([name, v]: readonly [string, string | Buffer]) => {
      if (typeof name !== 'string' || name.length === 0) {
        fail('EVENTLINE_ERR_INVALID_ARGUMENT', `topic ${topic}: header names must be non-empty strings`);
      }
      if (typeof v !== 'string' && !Buffer.isBuffer(v)) {
        fail('EVENTLINE_ERR_INVALID_ARGUMENT', `topic ${topic}: header ${name} must be a string or a Buffer`);
      }
      return [name, typeof v === 'string' ? Buffer.from(v) : v] as const;
    },
  );
  const overridden = new Set(user.map(([name]) => name));
  return [...defaults.filter(([name]) => !overridden.has(name)), ...user];
}

const REPLICATION_SETTINGS = new Set<keyof TopicConfig>(['replicationFactor', 'minInsyncReplicas']);

/** What a plan says about replication settings declared for an engine that keeps one copy. */
function unreplicatedNotes(config: TopicConfig): string[] {
  const notes: string[] = [];
  for (const setting of REPLICATION_SETTINGS) {
    const value = config[setting];
    if (value === null) continue;
    notes.push(
      `${setting} ${String(value)} is not meaningful on this engine (it keeps one copy); kept, not compared`,
    );
  }
  return notes;
}

interface PublishInstruments {
  success: CounterChild;
  failure: CounterChild;
  duration: HistogramChild;
}

function viewSample(v: View<unknown, unknown>): ViewSample {
  const stats = v.stats();
  return {
    topic: v.topic,
    entries: stats.size,
    stalenessSeconds: stats.stalenessMs === undefined ? null : stats.stalenessMs / 1000,
    ready: stats.ready,
    fallbackUses: stats.fallbackUses,
  };
}

/** Topic and group management. */
export class Admin {
  readonly #engine: Engine;

  constructor(engine: Engine) {
    this.#engine = engine;
  }

  /** Creates a topic unless it exists; says which happened. */
  async createTopic(name: string, settings: TopicSettings = {}): Promise<'created' | 'exists'> {
    validateTopicName(name);
    const config = normalizeTopicConfig(name, settings);
    try {
      await this.#engine.createTopics([{ name, ...config }]);
      return 'created';
    } catch (err) {
      if (isEventlineError(err, 'EVENTLINE_ERR_TOPIC_EXISTS')) return 'exists';
      throw err;
    }
  }

  listTopics(): Promise<string[]> {
    return this.#engine.listTopics();
  }

  async describeTopic(name: string): Promise<TopicDescription> {
    validateTopicName(name);
    const [d] = await this.#engine.describeTopics([name]);
    return d!;
  }

  async deleteTopic(name: string): Promise<void> {
    validateTopicName(name);
    await this.#engine.deleteTopics([name]);
  }

  /**
   * Compares declared topics with the engine, without changing anything. On an engine without
   * replication, replication settings are not compared and the plan's `notes` say so.
   */
  async plan(topics: readonly { name: string; config: TopicConfig }[]): Promise<TopicPlan[]> {
    const plans: TopicPlan[] = [];
    const replicated = this.#engine.capabilities.replication;
    for (const t of topics) {
      const notes = replicated ? [] : unreplicatedNotes(t.config);
      const withNotes = notes.length > 0 ? { notes } : {};
      let actual: TopicDescription;
      try {
        [actual] = (await this.#engine.describeTopics([t.name])) as [TopicDescription];
      } catch (err) {
        if (!isEventlineError(err, 'EVENTLINE_ERR_UNKNOWN_TOPIC')) throw err;
        plans.push({ topic: t.name, action: 'create', differences: [], ...withNotes });
        continue;
      }
      const differences = diffTopicConfig(t.config, {
        ...actual.config,
        partitions: actual.partitions.length,
      }).filter((d) => replicated || !REPLICATION_SETTINGS.has(d.setting));
      const action: TopicAction =
        differences.length === 0 ? 'unchanged' : differences.every((d) => d.applicable) ? 'alter' : 'drift';
      plans.push({ topic: t.name, action, differences, ...withNotes });
    }
    return plans;
  }

  listGroups(): Promise<string[]> {
    return this.#engine.listGroups();
  }

  describeGroup(group: string): Promise<GroupDescription> {
    return this.#engine.describeGroup(group);
  }

  /** `describeGroup` plus how far behind the group is on each partition, in time (`lagMs`). */
  groupLag(group: string): Promise<GroupLag> {
    return groupLag(this.#engine, group);
  }

  /**
   * Moves a group's committed offsets. Refused with EVENTLINE_ERR_GROUP_NOT_EMPTY while the group
   * has live members. Offsets are clamped to what the partitions hold. Returns the new offsets.
   */
  async resetOffsets(group: string, options: ResetOffsetsOptions): Promise<CommittedOffset[]> {
    const d = await this.describeTopic(options.topic);
    const chosen = options.partitions ?? d.partitions.map((p) => p.partition);
    const offsets: CommittedOffset[] = [];
    for (const partition of chosen) {
      const bounds = d.partitions.find((p) => p.partition === partition);
      if (bounds === undefined) {
        throw refuse.unknownPartition(options.topic, partition, d.partitions.length);
      }
      offsets.push({
        topic: options.topic,
        partition,
        offset: await this.#resolve(options.topic, bounds, options.to),
      });
      options.onProgress?.(offsets.length, chosen.length);
    }
    if (!options.dryRun) await this.#engine.setGroupOffsets(group, offsets);
    return offsets;
  }

  async #resolve(topic: string, bounds: PartitionOffsets, to: ResetTarget): Promise<number> {
    if (to === 'earliest') return bounds.start;
    if (to === 'latest') return bounds.end;
    if ('offset' in to) {
      if (!Number.isInteger(to.offset) || to.offset < 0) {
        fail('EVENTLINE_ERR_INVALID_ARGUMENT', `offset must be a non-negative integer, got ${to.offset}`);
      }
      return Math.min(Math.max(to.offset, bounds.start), bounds.end);
    }
    const ms =
      to.timestamp instanceof Date
        ? to.timestamp.getTime()
        : typeof to.timestamp === 'string'
          ? Date.parse(to.timestamp)
          : to.timestamp;
    if (!Number.isFinite(ms))
      fail('EVENTLINE_ERR_INVALID_ARGUMENT', `cannot read ${String(to.timestamp)} as a time`);
    return this.#engine.offsetForTimestamp(topic, bounds.partition, ms);
  }
}

export interface ReadOptions {
  partition: number;
  from: ReadFrom;
  /** Default 100. */
  max?: number;
}

export interface FollowOptions {
  from?: 'earliest' | 'latest' | { timestamp: number | Date };
  /** Default: every partition. */
  partitions?: number[];
  signal?: AbortSignal;
}

/** Reading without a consumer group: for tools, tests and replays. */
export class Reader {
  readonly #engine: Engine;
  readonly #codecs: CodecBinder;

  constructor(engine: Engine, codecs: CodecBinder) {
    this.#engine = engine;
    this.#codecs = codecs;
  }

  /** Records of one partition from an offset, a time, the start or the end. */
  async read<T extends TopicInput>(topic: T, options: ReadOptions): Promise<MessageOf<T>[]> {
    const codecs = this.#codecs.of(topic as Topic<unknown, unknown> | string);
    const { name, value, key } = codecs;
    const offset = await this.#position(name, options.partition, options.from);
    const records = await this.#engine.fetch(name, options.partition, offset, {
      maxRecords: options.max ?? 100,
    });
    await prepareDecode(codecs, records);
    return records.map((r) => decodeMessage(r, value, key) as MessageOf<T>);
  }

  /** Start and end offsets of a topic's partitions (all, or those given). */
  offsets(topic: string, partitions?: number[]): Promise<PartitionOffsets[]> {
    validateTopicName(topic);
    return this.#engine.listOffsets(topic, partitions);
  }

  groupOffsets(group: string): Promise<CommittedOffset[]> {
    return this.#engine.groupOffsets(group);
  }

  async #position(topic: string, partition: number, from: ReadFrom): Promise<number> {
    if (typeof from === 'object' && 'offset' in from) return from.offset;
    if (typeof from === 'object') {
      return this.#engine.offsetForTimestamp(
        topic,
        partition,
        from.timestamp instanceof Date ? from.timestamp.getTime() : from.timestamp,
      );
    }
    const [bounds] = await this.offsets(topic, [partition]);
    return from === 'earliest' ? bounds!.start : bounds!.end;
  }

  /**
   * Follows a topic live across its partitions (in order within each), until the signal aborts.
   * Records that fail to decode are yielded as errors by the iterator (it can be resumed).
   */
  async *follow<T extends TopicInput>(topic: T, options: FollowOptions = {}): AsyncGenerator<MessageOf<T>> {
    const codecs = this.#codecs.of(topic as Topic<unknown, unknown> | string);
    const { name, value, key } = codecs;
    const watch = this.#engine.watch();
    const from = options.from ?? 'latest';
    const positions = new Map<number, number>();
    const signal = options.signal;
    const chosen = options.partitions;
    let lookedAt = 0;
    while (!signal?.aborted) {
      // Partitions may grow while we follow: look again now and then. New ones start at their start.
      if (Date.now() - lookedAt > 5000) {
        const first = lookedAt === 0;
        lookedAt = Date.now();
        for (const p of await this.offsets(name)) {
          if (positions.has(p.partition) || (chosen !== undefined && !chosen.includes(p.partition))) continue;
          positions.set(p.partition, first ? await this.#position(name, p.partition, from) : p.start);
        }
      }
      let got = 0;
      for (const [partition, offset] of positions) {
        const records = await this.#engine.fetch(name, partition, offset, { maxRecords: 500 });
        if (records.length === 0) continue;
        got += records.length;
        positions.set(partition, records[records.length - 1]!.offset + 1);
        await prepareDecode(codecs, records);
        for (const r of records) yield decodeMessage(r, value, key) as MessageOf<T>;
      }
      if (got === 0) await watch.wait(1000, signal);
    }
  }
}

function registryFromEnv(): RegistryOptions | undefined {
  const url = process.env.EVENTLINE_REGISTRY_URL;
  return url === undefined || url === '' ? undefined : { url };
}

/**
 * Connects to an engine: `url`, else EVENTLINE_URL, else `sqlite:.eventline/events.db`.
 *
 * @example
 * const bus = await connect();                      // embedded, durable, no broker
 * const bus = await connect('sqlite::memory:');     // for tests
 * const bus = await connect('kafka://127.0.0.1:9092');
 *
 * Throws EVENTLINE_ERR_INVALID_URL, EVENTLINE_ERR_DATABASE_CORRUPT, EVENTLINE_ERR_ENGINE_UNAVAILABLE.
 */
export async function connect(url?: string, options: ConnectOptions = {}): Promise<Eventline> {
  const logger = options.logger ?? createLogger();
  const target = url ?? process.env.EVENTLINE_URL ?? DEFAULT_URL;
  logger.debug({ url: redactUrl(target) }, 'connecting');
  const engine = await openEngine(target, {
    ...(options.embedded ? { embedded: options.embedded } : {}),
    kafka: { clientId: options.clientId ?? 'eventline', ...options.kafka },
  }).catch((err: unknown) => {
    logger.debug({ url: redactUrl(target), err }, 'connect failed');
    throw err;
  });
  let bus: Eventline;
  try {
    bus = new Eventline(engine, { ...options, logger });
  } catch (err) {
    await engine.close().catch(() => {});
    throw err;
  }
  logger.info({ engine: engine.displayUrl, kind: engine.kind, clientId: bus.clientId }, 'connected');
  return bus;
}

export type { Message };

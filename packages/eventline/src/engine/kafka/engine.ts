import { setTimeout as sleep } from 'node:timers/promises';
import type { ConnectionOptions as TlsOptions } from 'node:tls';
import {
  Admin,
  type BaseOptions,
  type CompressionAlgorithmValue,
  ConfigResourceTypes,
  Consumer,
  FetchIsolationLevels,
  IncrementalAlterConfigOperationTypes,
} from '@platformatic/kafka';
import { EventlineError, fail } from '../../errors.ts';
import { DEFAULT_TOPIC_CONFIG, type TopicConfig, type TopicSpec } from '../../topic.ts';
import { Wakeup } from '../../util/wakeup.ts';
import { partitionKey } from '../assignor.ts';
import type {
  AppendOptions,
  AppendRecord,
  AppendResult,
  CommittedOffset,
  DataWatch,
  Engine,
  EngineCapabilities,
  FetchOptions,
  GroupDescription,
  GroupMember,
  GroupMemberOptions,
  GroupPartitionInfo,
  GroupState,
  PartitionOffsets,
  StoredRecord,
  TopicDescription,
  TopicPartition,
} from '../types.ts';
import type { EngineUrl } from '../url.ts';
import { refuse } from '../validate.ts';
import { KafkaAppender, type TopicLimits } from './appender.ts';
import { DESCRIBED_CONFIGS, fromKafkaConfigs, toKafkaConfigs } from './config.ts';
import { kafkaErrorIds, wrapKafkaError } from './errors.ts';
import { KafkaGroupMember, listBounds, listEnds } from './member.ts';
import { recordsFromBatches } from './records.ts';

export interface KafkaEngineOptions {
  /** Kafka client id. Default: the Eventline client id. */
  clientId?: string;
  /** SASL authentication. A URL with `user:password@` uses PLAIN unless a mechanism is given here. */
  sasl?: { mechanism: 'PLAIN' | 'SCRAM-SHA-256' | 'SCRAM-SHA-512'; username: string; password: string };
  /** TLS (also turned on by a `kafkas://` URL): `true`, or Node's TLS options (CA, certificates). */
  tls?: boolean | TlsOptions;
  /** Default 5 s. */
  connectTimeoutMs?: number;
  /** Default 30 s. */
  requestTimeoutMs?: number;
  /** How long an atomic batch's transaction may stay open; a crashed producer's is aborted after it. Default 10 s. */
  transactionTimeoutMs?: number;
  /** How long a rebalance waits for members to finish their in-flight work. Default 60 s. */
  rebalanceTimeoutMs?: number;
}

const LIMITS_TTL_MS = 10_000;

const STATES: Record<string, GroupState> = {
  Stable: 'Stable',
  STABLE: 'Stable',
  Empty: 'Empty',
  EMPTY: 'Empty',
  Dead: 'Dead',
  DEAD: 'Dead',
};

/**
 * Waits between a client's retries: 250 ms, except after CONCURRENT_TRANSACTIONS, which a broker
 * answers while it still writes the markers of the transaction before, for a few milliseconds:
 * waiting 250 ms (or the client's default of a second) there would make every transaction slow.
 */
function retryDelay(
  _client: unknown,
  _operation: string,
  attempt: number,
  _retries: number,
  error: Error,
): number {
  if (kafkaErrorIds(error).includes('CONCURRENT_TRANSACTIONS')) return Math.min(5 * 2 ** (attempt - 1), 250);
  return 250;
}

/**
 * The Kafka engine: the engine contract on Apache Kafka (3.5 to 4.2) through @platformatic/kafka.
 * Topics map to topic configs, appends go through an idempotent producer with acks=all (and a
 * transactional one for atomic batches), consumers read committed data only.
 */
export class KafkaEngine implements Engine {
  readonly kind = 'kafka' as const;
  readonly displayUrl: string;
  readonly capabilities: EngineCapabilities = { sharedAcrossProcesses: true, replication: true };
  readonly #client: BaseOptions;
  readonly #options: Required<Pick<KafkaEngineOptions, 'transactionTimeoutMs' | 'rebalanceTimeoutMs'>>;
  readonly #admin: Admin;
  readonly #appender: KafkaAppender;
  #reader: Consumer<Buffer, Buffer, Buffer, Buffer> | undefined;
  #limits = new Map<string, { limits: Promise<TopicLimits>; at: number }>();
  #closed = false;

  private constructor(brokers: string[], client: BaseOptions, options: KafkaEngineOptions) {
    this.displayUrl = `kafka://${brokers.join(',')}`;
    this.#client = client;
    this.#options = {
      transactionTimeoutMs: options.transactionTimeoutMs ?? 10_000,
      rebalanceTimeoutMs: options.rebalanceTimeoutMs ?? 60_000,
    };
    this.#admin = new Admin(client);
    this.#appender = new KafkaAppender({
      clientOptions: client,
      transactionTimeoutMs: this.#options.transactionTimeoutMs,
      limits: (topic) => this.#topicLimits(topic),
      visible: (written) => this.#awaitVisible(written),
    });
  }

  /** Connects to the brokers of a `kafka://` URL; fails with EVENTLINE_ERR_ENGINE_UNAVAILABLE when none answers. */
  static async open(
    url: Extract<EngineUrl, { kind: 'kafka' }>,
    options: KafkaEngineOptions = {},
  ): Promise<KafkaEngine> {
    const sasl =
      options.sasl ??
      (url.username === undefined
        ? undefined
        : { mechanism: 'PLAIN' as const, username: url.username, password: url.password ?? '' });
    const tls = options.tls ?? url.tls;
    const client: BaseOptions = {
      clientId: options.clientId ?? 'eventline',
      bootstrapBrokers: url.brokers,
      connectTimeout: options.connectTimeoutMs ?? 5000,
      requestTimeout: options.requestTimeoutMs ?? 30_000,
      timeout: options.requestTimeoutMs ?? 30_000,
      retries: 3,
      retryDelay,
      ...(sasl ? { sasl } : {}),
      ...(tls ? { tls: tls === true ? {} : tls } : {}),
    };
    const engine = new KafkaEngine(url.brokers, client, options);
    try {
      await engine.#admin.metadata({ topics: [] });
    } catch (err) {
      await engine.#admin.close().catch(() => {});
      throw wrapKafkaError(err, `connecting to ${engine.displayUrl}`);
    }
    return engine;
  }

  /** Waits (at most 2 s) until the end offsets of committed data are past these records. */
  async #awaitVisible(written: (TopicPartition & { offset: number })[]): Promise<void> {
    const deadline = Date.now() + 2000;
    let pending = written;
    for (let wait = 1; pending.length > 0; wait = Math.min(wait * 2, 50)) {
      const ends = await listEnds(this.#admin, pending);
      pending = pending.filter((w) => (ends.get(partitionKey(w.topic, w.partition)) ?? 0) <= w.offset);
      if (pending.length === 0 || Date.now() > deadline) return;
      await sleep(wait);
    }
  }

  #check(): void {
    if (this.#closed) fail('EVENTLINE_ERR_CLOSED', `the engine for ${this.displayUrl} is closed`);
  }

  async #call<T>(
    what: string,
    fn: () => Promise<T>,
    overrides?: Record<string, EventlineError['code']>,
  ): Promise<T> {
    this.#check();
    try {
      return await fn();
    } catch (err) {
      throw wrapKafkaError(err, what, overrides);
    }
  }

  // ---- topics ----------------------------------------------------------------------------

  async #exists(name: string): Promise<boolean> {
    return (await this.#admin.listTopics({ includeInternals: true })).includes(name);
  }

  async createTopics(specs: TopicSpec[]): Promise<void> {
    for (const spec of specs) {
      if (await this.#call('listing topics', () => this.#exists(spec.name))) {
        throw refuse.topicExists(spec.name);
      }
    }
    for (const spec of specs) {
      const { name, ...config } = spec;
      await this.#call(`creating topic ${name}`, () =>
        this.#admin.createTopics({
          topics: [{ topic: name, partitions: config.partitions, replicas: config.replicationFactor ?? -1 }],
          configs: toKafkaConfigs(config),
        }),
      );
      await this.#waitForLeaders(name, config.partitions);
    }
  }

  /** Kafka creates partitions asynchronously: wait until every one has a leader. */
  async #waitForLeaders(topic: string, partitions: number): Promise<void> {
    const deadline = Date.now() + 30_000;
    for (;;) {
      try {
        const metadata = await this.#admin.metadata({ topics: [topic], forceUpdate: true });
        const t = metadata.topics.get(topic);
        if (
          t &&
          t.partitionsCount >= partitions &&
          t.partitions.every((p) => p !== undefined && p.leader >= 0)
        )
          return;
      } catch {
        // not visible yet
      }
      if (Date.now() > deadline) {
        fail(
          'EVENTLINE_ERR_TIMEOUT',
          `topic ${topic} was created but its partitions got no leader within 30 s`,
        );
      }
      await sleep(50);
    }
  }

  async alterTopic(name: string, changes: Partial<TopicConfig>): Promise<void> {
    const has = (await this.#settings(name)).partitions;
    if (changes.partitions !== undefined && changes.partitions !== has) {
      if (changes.partitions < has) throw refuse.partitionsCannotShrink(name, has, changes.partitions);
      await this.#call(`adding partitions to ${name}`, () =>
        this.#admin.createPartitions({ topics: [{ name, count: changes.partitions!, assignments: null }] }),
      );
      await this.#waitForLeaders(name, changes.partitions);
    }
    const { partitions: _p, replicationFactor: _r, ...rest } = changes;
    const configs = toKafkaConfigs(rest);
    if (configs.length > 0) {
      await this.#call(`changing the settings of ${name}`, () =>
        this.#admin.incrementalAlterConfigs({
          resources: [
            {
              resourceType: ConfigResourceTypes.TOPIC,
              resourceName: name,
              configs: configs.map((c) => ({
                name: c.name,
                value: c.value,
                configOperation: IncrementalAlterConfigOperationTypes.SET,
              })),
            },
          ],
        }),
      );
    }
    this.#limits.delete(name);
  }

  async listTopics(): Promise<string[]> {
    const topics = await this.#call('listing topics', () =>
      this.#admin.listTopics({ includeInternals: false }),
    );
    return topics.filter((t) => !t.startsWith('__')).sort();
  }

  async describeTopics(names: string[]): Promise<TopicDescription[]> {
    const out: TopicDescription[] = [];
    for (const name of names) {
      const config = await this.#settings(name);
      const partitions = Array.from({ length: config.partitions }, (_, partition) => ({
        topic: name,
        partition,
      }));
      const bounds = await this.#call(`describing topic ${name}`, () => listBounds(this.#admin, partitions));
      out.push({
        name,
        config,
        partitions: partitions.map(({ partition }) => {
          const b = bounds.get(partitionKey(name, partition)) ?? { start: 0, end: 0 };
          return { partition, start: b.start, end: b.end };
        }),
      });
    }
    return out;
  }

  /** A topic's settings as the brokers report them, partition count and replication included. */
  async #settings(name: string): Promise<Partial<TopicConfig> & { partitions: number }> {
    // Asking metadata for a missing topic yields an error that no longer carries Kafka's code:
    // check existence first, so a missing topic is reported as EVENTLINE_ERR_UNKNOWN_TOPIC.
    if (!(await this.#call('listing topics', () => this.#exists(name)))) throw refuse.unknownTopic(name);
    const what = `describing topic ${name}`;
    const metadata = await this.#call(what, () =>
      this.#admin.metadata({ topics: [name], forceUpdate: true }),
    );
    const t = metadata.topics.get(name);
    if (t === undefined) throw refuse.unknownTopic(name);
    const [described] = await this.#call(what, () =>
      this.#admin.describeConfigs({
        resources: [
          {
            resourceType: ConfigResourceTypes.TOPIC,
            resourceName: name,
            configurationKeys: DESCRIBED_CONFIGS,
          },
        ],
      }),
    );
    return {
      ...fromKafkaConfigs(described?.configs ?? []),
      partitions: t.partitionsCount,
      replicationFactor: t.partitions[0]?.replicas.length ?? null,
    };
  }

  async partitionCount(topic: string): Promise<number> {
    return (await this.#topicLimits(topic)).partitions;
  }

  /** Partition count and record limits of a topic, cached for a few seconds. */
  #topicLimits(topic: string): Promise<TopicLimits> {
    const cached = this.#limits.get(topic);
    if (cached && Date.now() - cached.at < LIMITS_TTL_MS) return cached.limits;
    const limits = (async (): Promise<TopicLimits> => {
      const config = { ...DEFAULT_TOPIC_CONFIG, ...(await this.#settings(topic)) };
      return {
        partitions: config.partitions,
        maxMessageBytes: config.maxMessageBytes,
        compacted: config.cleanupPolicy === 'compact',
        compression: (['gzip', 'snappy', 'lz4', 'zstd'].includes(config.compression)
          ? config.compression
          : 'none') as CompressionAlgorithmValue,
      };
    })();
    this.#limits.set(topic, { limits, at: Date.now() });
    limits.catch(() => this.#limits.delete(topic));
    return limits;
  }

  async deleteTopics(names: string[]): Promise<void> {
    for (const name of names) {
      if (!(await this.#call('listing topics', () => this.#exists(name)))) {
        throw refuse.unknownTopic(name);
      }
    }
    await this.#call(`deleting ${names.join(', ')}`, () => this.#admin.deleteTopics({ topics: names }));
    for (const n of names) this.#limits.delete(n);
  }

  async listOffsets(topic: string, partitions?: number[]): Promise<PartitionOffsets[]> {
    const count = await this.partitionCount(topic);
    const chosen = partitions ?? Array.from({ length: count }, (_, p) => p);
    const missing = chosen.find((p) => p < 0 || p >= count);
    if (missing !== undefined) throw refuse.unknownPartition(topic, missing, count);
    const bounds = await this.#call(`reading offsets of ${topic}`, () =>
      listBounds(
        this.#admin,
        chosen.map((partition) => ({ topic, partition })),
      ),
    );
    return chosen.map((partition) => ({
      partition,
      ...(bounds.get(partitionKey(topic, partition)) ?? { start: 0, end: 0 }),
    }));
  }

  // ---- records -------------------------------------------------------------------------------

  append(topic: string, records: AppendRecord[], options: AppendOptions = {}): Promise<AppendResult[]> {
    if (this.#closed)
      return Promise.reject(new EventlineError('EVENTLINE_ERR_CLOSED', 'the engine is closed'));
    if (records.length === 0) return Promise.resolve([]);
    return this.#appender.append(topic, records, options.atomic !== false);
  }

  #readerConsumer(): Consumer<Buffer, Buffer, Buffer, Buffer> {
    this.#reader ??= new Consumer<Buffer, Buffer, Buffer, Buffer>({
      ...this.#client,
      groupId: `eventline-reader-${process.pid}`,
      autocommit: false,
      isolationLevel: FetchIsolationLevels.READ_COMMITTED,
    });
    return this.#reader;
  }

  async fetch(
    topic: string,
    partition: number,
    offset: number,
    options: FetchOptions,
  ): Promise<StoredRecord[]> {
    const count = await this.partitionCount(topic);
    if (partition < 0 || partition >= count) throw refuse.unknownPartition(topic, partition, count);
    const reader = this.#readerConsumer();
    reader.topics.track(topic);
    const what = `reading ${topic}/${partition}`;
    const out: StoredRecord[] = [];
    let position = offset;
    // Fetch until enough records, or until the partition has nothing more (markers and gaps are skipped).
    for (let round = 0; round < 50 && out.length < options.maxRecords; round++) {
      const metadata = await this.#call(what, () => reader.metadata({ topics: [topic] }));
      const t = metadata.topics.get(topic)!;
      let response: Awaited<ReturnType<Consumer['fetch']>>;
      try {
        response = await reader.fetch({
          node: t.partitions[partition]!.leader,
          topics: [
            {
              topicId: t.id,
              partitions: [
                {
                  partition,
                  fetchOffset: BigInt(position),
                  partitionMaxBytes: options.maxBytes ?? 8 * 1024 * 1024,
                  currentLeaderEpoch: -1,
                  lastFetchedEpoch: -1,
                },
              ],
            },
          ],
          maxWaitTime: 0,
          minBytes: 0,
        });
      } catch (err) {
        if (kafkaErrorIds(err).includes('OFFSET_OUT_OF_RANGE')) {
          const [b] = await this.listOffsets(topic, [partition]);
          if (position >= b!.end) return out;
          position = b!.start;
          continue;
        }
        throw wrapKafkaError(err, what);
      }
      const p = response.responses[0]?.partitions[0];
      if (p === undefined) break;
      const next = recordsFromBatches(topic, partition, p.records, position, out);
      if (next === position) break; // nothing more to read now
      position = next;
    }
    return out.length > options.maxRecords ? out.slice(0, options.maxRecords) : out;
  }

  async offsetForTimestamp(topic: string, partition: number, timestamp: number): Promise<number> {
    // The end is read first: a record at or after the time appended between the two requests is
    // found by the lookup, while an end read after the lookup could step past it.
    const [b] = await this.listOffsets(topic, [partition]);
    const result = await this.#call(`finding the offset of a time in ${topic}/${partition}`, () =>
      this.#admin.listOffsets({
        topics: [{ name: topic, partitions: [{ partitionIndex: partition, timestamp: BigInt(timestamp) }] }],
        isolationLevel: FetchIsolationLevels.READ_COMMITTED,
      }),
    );
    const offset = Number(result[0]?.partitions[0]?.offset ?? -1);
    return offset >= 0 ? offset : b!.end;
  }

  watch(): DataWatch {
    // Kafka pushes nothing to a reader outside a group: readers poll, at most every 100 ms.
    const never = new Wakeup();
    return { wait: (maxWaitMs, signal) => never.wait(never.seq, Math.min(maxWaitMs, 100), signal) };
  }

  // ---- groups ---------------------------------------------------------------------------------

  createGroupMember(options: GroupMemberOptions): GroupMember {
    this.#check();
    return new KafkaGroupMember(options, {
      clientOptions: this.#client,
      admin: this.#admin,
      rebalanceTimeoutMs: this.#options.rebalanceTimeoutMs,
    });
  }

  async listGroups(): Promise<string[]> {
    const groups = await this.#call('listing groups', () => this.#admin.listGroups());
    return [...groups.keys()].filter((g) => !g.startsWith('eventline-reader-')).sort();
  }

  async groupOffsets(group: string): Promise<CommittedOffset[]> {
    const [g] = await this.#call(`reading offsets of group ${group}`, () =>
      this.#admin.listConsumerGroupOffsets({ groups: [group] }),
    );
    const out: CommittedOffset[] = [];
    for (const t of g?.topics ?? []) {
      for (const p of t.partitions) {
        if (p.committedOffset >= 0n)
          out.push({
            topic: t.name,
            partition: p.partitionIndex,
            offset: Number(p.committedOffset),
            ...(p.metadata ? { metadata: p.metadata } : {}),
          });
      }
    }
    return out.sort((a, b) => (a.topic < b.topic ? -1 : a.topic > b.topic ? 1 : a.partition - b.partition));
  }

  async describeGroup(group: string): Promise<GroupDescription> {
    const what = `describing group ${group}`;
    const groups = await this.#call(what, () => this.#admin.describeGroups({ groups: [group] }));
    const g = groups.get(group);
    const offsets = await this.groupOffsets(group);
    const state: GroupState = g === undefined ? 'Dead' : (STATES[g.state] ?? 'Rebalancing');
    if (state === 'Dead' && offsets.length === 0) {
      throw refuse.unknownGroup(group);
    }
    const members = [...(g?.members.values() ?? [])].map((m) => ({
      memberId: m.id,
      clientId: m.clientId,
      host: m.clientHost.replace(/^\//, ''),
      assignment: [...(m.assignments?.values() ?? [])].flatMap((a) =>
        a.partitions.map((partition) => ({ topic: a.topic, partition })),
      ),
    }));
    const owners = new Map(
      members.flatMap((m) =>
        m.assignment.map((tp) => [partitionKey(tp.topic, tp.partition), m.memberId] as const),
      ),
    );
    const committed = new Map(offsets.map((o) => [partitionKey(o.topic, o.partition), o.offset]));
    const topics = [
      ...new Set([
        ...offsets.map((o) => o.topic),
        ...members.flatMap((m) => m.assignment.map((tp) => tp.topic)),
      ]),
    ].sort();
    const partitions: GroupPartitionInfo[] = [];
    for (const topic of topics) {
      let bounds: PartitionOffsets[];
      try {
        bounds = await this.listOffsets(topic);
      } catch {
        continue; // the topic was deleted
      }
      for (const b of bounds) {
        const key = partitionKey(topic, b.partition);
        const c = committed.get(key) ?? null;
        partitions.push({
          topic,
          partition: b.partition,
          committed: c,
          end: b.end,
          lag: Math.max(0, b.end - (c ?? b.start)),
          owner: owners.get(key) ?? null,
        });
      }
    }
    return { group, state: state === 'Dead' ? 'Empty' : state, members, partitions };
  }

  async setGroupOffsets(group: string, offsets: CommittedOffset[]): Promise<void> {
    const groups = await this.#call(`describing group ${group}`, () =>
      this.#admin.describeGroups({ groups: [group] }),
    );
    const live = groups.get(group)?.members.size ?? 0;
    if (live > 0) throw refuse.groupNotEmpty(group, live);
    await this.#call(
      `resetting offsets of group ${group}`,
      () =>
        this.#admin.alterConsumerGroupOffsets({
          groupId: group,
          topics: [...Map.groupBy(offsets, (o) => o.topic)].map(([name, list]) => ({
            name,
            partitionOffsets: list.map((o) => ({ partition: o.partition, offset: BigInt(o.offset) })),
          })),
        }),
      {
        UNKNOWN_MEMBER_ID: 'EVENTLINE_ERR_GROUP_NOT_EMPTY',
        REBALANCE_IN_PROGRESS: 'EVENTLINE_ERR_GROUP_NOT_EMPTY',
      },
    );
  }

  /** Kafka runs retention and compaction itself, on the brokers' schedule. */
  async runMaintenance(): Promise<void> {
    this.#check();
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#appender.close();
    await Promise.allSettled([this.#reader?.close(true), this.#admin.close()]);
  }
}

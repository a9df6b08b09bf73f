import {
  type Admin,
  type BaseOptions,
  type ClusterMetadata,
  ConnectionPool,
  Consumer,
  type ExtendedGroupProtocolSubscription,
  FetchIsolationLevels,
  type GroupAssignment,
  type GroupPartitionsAssignments,
  offsetCommitV8,
} from '@platformatic/kafka';
import { EventlineError, fail } from '../../errors.ts';
import { Wakeup } from '../../util/wakeup.ts';
import { assignPartitions, partitionKey } from '../assignor.ts';
import { OwnedPartitions } from '../owned.ts';
import type {
  CommittedOffset,
  FetchedBatch,
  GroupMember,
  GroupMemberOptions,
  StoredRecord,
  TopicPartition,
} from '../types.ts';
import { kafkaErrorIds, wrapKafkaError } from './errors.ts';
import { recordsFromBatches } from './records.ts';

/** The group protocol Eventline members speak: eager, with the same sticky assignor as the embedded engine. */
export const GROUP_PROTOCOL = 'eventline-sticky';
/** Records buffered per partition ahead of delivery. */
const PREFETCH_RECORDS = 1000;
/** Longest a fetch waits at the broker for data. */
const FETCH_WAIT_MS = 500;
/** How often the member looks for new topics and partitions of its subscription. */
const METADATA_CHECK_MS = 3000;

interface Owned extends TopicPartition {
  key: string;
  /** Next offset to fetch. */
  fetchOffset: number;
  /** Next offset to deliver: records below it were handed out (or were markers). */
  delivered: number;
  /** Moves on every seek, so a fetch that was in flight cannot put stale records back. */
  epoch: number;
  /** Records fetched and not yet delivered. */
  buffered: StoredRecord[];
}

export interface KafkaMemberDeps {
  clientOptions: BaseOptions;
  admin: Admin;
  rebalanceTimeoutMs: number;
}

/**
 * A consumer-group member on Kafka's classic group protocol, driven through @platformatic/kafka's
 * low-level calls so that it keeps the engine contract exactly:
 *
 * - Before every (re)join, the member gives up all its partitions: in-flight work finishes and is
 *   committed (the runtime's onRevoked) before JoinGroup is sent, as an eager Kafka consumer does
 *   in onPartitionsRevoked. So no record is handled by two live members at once.
 * - Commits are plain OffsetCommit requests with the member's generation: a member that was
 *   evicted gets ILLEGAL_GENERATION or UNKNOWN_MEMBER_ID, reported as EVENTLINE_ERR_FENCED, and
 *   is never re-sent under a newer generation.
 * - The group leader assigns partitions with the embedded engine's sticky assignor; each member
 *   tells it what it owned through the protocol's user data.
 */
export class KafkaGroupMember implements GroupMember {
  readonly #o: GroupMemberOptions;
  readonly #deps: KafkaMemberDeps;
  readonly #consumer: Consumer<Buffer, Buffer, Buffer, Buffer>;
  /** Commits go on connections of their own, so they never queue behind a fetch waiting at a broker. */
  readonly #commitPool: ConnectionPool;
  /** So do fetches: a broker answers one request per connection at a time, and group calls must not wait. */
  readonly #fetchPool: ConnectionPool;
  readonly #owned = new OwnedPartitions<Owned>();
  #inflight = new Map<number, Promise<void>>();
  readonly #wakeup = new Wakeup();
  #previous: TopicPartition[] = [];
  #claiming: Promise<void> = Promise.resolve();
  #subscription = '';
  #metadataTimer: NodeJS.Timeout | undefined;
  #coordinator: { host: string; port: number } | undefined;
  #epoch = 0;
  #closed = false;
  #fetchErrorUntil = 0;

  constructor(options: GroupMemberOptions, deps: KafkaMemberDeps) {
    this.#o = options;
    this.#deps = deps;
    this.#consumer = new Consumer<Buffer, Buffer, Buffer, Buffer>({
      ...deps.clientOptions,
      groupId: options.group,
      autocommit: false,
      isolationLevel: FetchIsolationLevels.READ_COMMITTED,
      sessionTimeout: options.sessionTimeoutMs,
      heartbeatInterval: options.heartbeatIntervalMs,
      rebalanceTimeout: Math.max(deps.rebalanceTimeoutMs, options.sessionTimeoutMs),
      retries: 2,
      retryDelay: 200,
    });
    this.#commitPool = new ConnectionPool(
      `${deps.clientOptions.clientId}-commits`,
      connectionOptions(deps.clientOptions),
    );
    this.#fetchPool = new ConnectionPool(
      `${deps.clientOptions.clientId}-fetches`,
      connectionOptions(deps.clientOptions),
    );
    this.#consumer.on('consumer:group:join', (payload) => {
      this.#claiming = this.#claim(payload.assignments ?? []);
    });
  }

  get memberId(): string {
    return this.#consumer.memberId ?? '';
  }

  // ---- membership ---------------------------------------------------------------------------

  async join(): Promise<void> {
    if (this.#closed) fail('EVENTLINE_ERR_CLOSED', 'this group member has left its group');
    await this.#trackExistingTopics();
    try {
      await this.#consumer.joinGroup(this.#groupOptions());
    } catch (err) {
      throw wrapKafkaError(err, `joining group ${this.#o.group}`);
    }
    await this.#claiming;
    this.#metadataTimer = setInterval(() => void this.#watchMetadata(), METADATA_CHECK_MS);
    this.#metadataTimer.unref();
  }

  #groupOptions(): Parameters<Consumer['joinGroup']>[0] {
    return {
      sessionTimeout: this.#o.sessionTimeoutMs,
      heartbeatInterval: this.#o.heartbeatIntervalMs,
      rebalanceTimeout: Math.max(this.#deps.rebalanceTimeoutMs, this.#o.sessionTimeoutMs),
      protocols: [{ name: GROUP_PROTOCOL, version: 1 }],
      protocolsMetadata: () => this.#beforeJoin(),
      partitionAssigner: (
        _current: string,
        members: Map<string, ExtendedGroupProtocolSubscription>,
        topics: Set<string>,
        metadata: ClusterMetadata,
      ) => this.#assign(members, topics, metadata),
    };
  }

  /** Subscribes to the topics that exist now; returns a fingerprint of topics and partition counts. */
  async #trackExistingTopics(): Promise<string> {
    const existing = new Set(await this.#deps.admin.listTopics({ includeInternals: false }));
    const topics = this.#o.topics.filter((t) => existing.has(t));
    let fingerprint = '';
    if (topics.length > 0) {
      const metadata = await this.#deps.admin.metadata({ topics, forceUpdate: true });
      fingerprint = topics.map((t) => `${t}:${metadata.topics.get(t)?.partitionsCount ?? 0}`).join(',');
    }
    this.#consumer.topics.trackAll(...topics);
    this.#subscription = fingerprint;
    return fingerprint;
  }

  /** Topics created or grown since the last join start a rebalance, as Kafka's consumers do. */
  async #watchMetadata(): Promise<void> {
    if (this.#closed) return;
    try {
      const before = this.#subscription;
      if ((await this.#trackExistingTopics()) !== before) {
        await this.#consumer.joinGroup(this.#groupOptions());
      }
    } catch {
      // the next check tries again
    }
  }

  /**
   * Runs before every JoinGroup (the client's protocolsMetadata hook): gives up every owned
   * partition after its in-flight work finished and was committed, and tells the leader what this
   * member owned so the assignment stays sticky.
   */
  async #beforeJoin(): Promise<Buffer> {
    await this.#claiming;
    const revoke = this.#owned.list();
    if (revoke.length > 0) {
      for (const o of this.#owned.values()) o.epoch = ++this.#epoch;
      try {
        await this.#o.onRevoked(revoke);
      } finally {
        this.#owned.clear();
      }
      this.#previous = revoke;
    }
    // The subscription fingerprint makes a rejoin after a metadata change look different to the broker.
    return Buffer.from(
      JSON.stringify({
        owned: this.#previous.map((tp) => [tp.topic, tp.partition]),
        subscription: this.#subscription,
      }),
    );
  }

  /** On the group leader: the embedded engine's sticky assignor over every member's subscription. */
  #assign(
    members: Map<string, ExtendedGroupProtocolSubscription>,
    topics: Set<string>,
    metadata: ClusterMetadata,
  ): GroupPartitionsAssignments[] {
    const previous = new Map<string, string>();
    for (const [memberId, sub] of members) {
      try {
        const data =
          sub.metadata === undefined ? undefined : JSON.parse(Buffer.from(sub.metadata).toString('utf8'));
        for (const [t, p] of (data?.owned ?? []) as [string, number][])
          previous.set(partitionKey(t, p), memberId);
      } catch {
        // a member without Eventline's user data owned nothing we know of
      }
    }
    const partitions: { topic: string; partition: number; current: string | null }[] = [];
    for (const topic of topics) {
      const count = metadata.topics.get(topic)?.partitionsCount ?? 0;
      for (let p = 0; p < count; p++)
        partitions.push({ topic, partition: p, current: previous.get(partitionKey(topic, p)) ?? null });
    }
    const targets = assignPartitions(
      [...members].map(([memberId, sub]) => ({ memberId, topics: sub.topics ?? [] })),
      partitions,
    );
    const out = new Map<string, Map<string, GroupAssignment>>([...members.keys()].map((m) => [m, new Map()]));
    for (const p of partitions) {
      const member = targets.get(partitionKey(p.topic, p.partition));
      if (member === null || member === undefined) continue;
      const byTopic = out.get(member)!;
      const a = byTopic.get(p.topic) ?? { topic: p.topic, partitions: [] };
      a.partitions.push(p.partition);
      byTopic.set(p.topic, a);
    }
    return [...out].map(([memberId, assignments]) => ({ memberId, assignments }));
  }

  /** After a join: start each assigned partition at its committed offset (or the start or end). */
  async #claim(assignments: GroupAssignment[]): Promise<void> {
    const tps = assignments.flatMap((a) => a.partitions.map((partition) => ({ topic: a.topic, partition })));
    if (tps.length === 0 || this.#closed) return;
    try {
      const positions = await this.#startPositions(tps);
      for (const tp of tps) {
        const key = partitionKey(tp.topic, tp.partition);
        const position = positions.get(key)!;
        this.#owned.add({
          ...tp,
          key,
          fetchOffset: position,
          delivered: position,
          epoch: ++this.#epoch,
          buffered: [],
        });
      }
      this.#o.onAssigned(tps);
      this.#wakeup.wake();
    } catch (err) {
      // Without positions the member cannot work these partitions: leave them to a rejoin.
      this.#o.onLost(tps);
      void err;
    }
  }

  async #startPositions(tps: TopicPartition[]): Promise<Map<string, number>> {
    const byTopic = Map.groupBy(tps, (tp) => tp.topic);
    const [committed] = await this.#deps.admin.listConsumerGroupOffsets({
      groups: [
        {
          groupId: this.#o.group,
          topics: [...byTopic].map(([name, list]) => ({
            name,
            partitionIndexes: list.map((tp) => tp.partition),
          })),
        },
      ],
    });
    const commits = new Map<string, number>();
    for (const t of committed?.topics ?? []) {
      for (const p of t.partitions) {
        if (p.committedOffset >= 0n)
          commits.set(partitionKey(t.name, p.partitionIndex), Number(p.committedOffset));
      }
    }
    const bounds = await listBounds(this.#deps.admin, tps);
    const out = new Map<string, number>();
    for (const tp of tps) {
      const key = partitionKey(tp.topic, tp.partition);
      const b = bounds.get(key) ?? { start: 0, end: 0 };
      let position = commits.get(key) ?? (this.#o.fromBeginning ? b.start : b.end);
      if (position < b.start) position = b.start;
      if (position > b.end) position = b.end;
      out.set(key, position);
    }
    return out;
  }

  // ---- fetching -----------------------------------------------------------------------------

  async poll(options: {
    maxRecords: number;
    maxBytes?: number;
    maxWaitMs: number;
    signal?: AbortSignal;
  }): Promise<FetchedBatch[]> {
    const deadline = Date.now() + options.maxWaitMs;
    for (;;) {
      const seq = this.#wakeup.seq;
      const out = this.#take(options.maxRecords);
      if (out.length > 0 || this.#closed || options.signal?.aborted) return out;
      const remaining = deadline - Date.now();
      if (remaining <= 0) return out;
      this.#startFetches();
      await this.#wakeup.wait(seq, remaining, options.signal);
    }
  }

  #take(maxRecords: number): FetchedBatch[] {
    // Ready: records buffered, or the position moved past markers that were never delivered.
    const out: FetchedBatch[] = [];
    let budget = maxRecords;
    for (const o of this.#owned.inTurn((o) => o.buffered.length > 0 || o.fetchOffset > o.delivered)) {
      if (budget <= 0) break;
      const records = o.buffered.splice(0, budget);
      budget -= records.length;
      o.delivered = o.buffered.length === 0 ? o.fetchOffset : records[records.length - 1]!.offset + 1;
      out.push({ topic: o.topic, partition: o.partition, records, nextOffset: o.delivered });
    }
    if (out.length > 0) this.#startFetches();
    return out;
  }

  /** Starts a fetch to every leader that has owned partitions wanting more records and none in flight. */
  #startFetches(): void {
    if (this.#closed || Date.now() < this.#fetchErrorUntil) return;
    const wanting = [...this.#owned.values()].filter((o) => o.buffered.length < PREFETCH_RECORDS);
    if (wanting.length === 0) return;
    void this.#fetchAll(wanting);
  }

  async #fetchAll(wanting: Owned[]): Promise<void> {
    let metadata: ClusterMetadata;
    try {
      metadata = await this.#consumer.metadata({ topics: [...new Set(wanting.map((o) => o.topic))] });
    } catch {
      this.#backOff();
      return;
    }
    const byNode = new Map<number, Owned[]>();
    for (const o of wanting) {
      const leader = metadata.topics.get(o.topic)?.partitions[o.partition]?.leader;
      if (leader === undefined || leader < 0 || this.#inflight.has(leader)) continue;
      const list = byNode.get(leader) ?? [];
      list.push(o);
      byNode.set(leader, list);
    }
    for (const [node, owned] of byNode) {
      const p = this.#fetchNode(node, owned, metadata).finally(() => {
        this.#inflight.delete(node);
        this.#wakeup.wake();
      });
      this.#inflight.set(node, p);
    }
  }

  async #fetchNode(node: number, owned: Owned[], metadata: ClusterMetadata): Promise<void> {
    const asked = owned.map((o) => ({ o, offset: o.fetchOffset, epoch: o.epoch }));
    const topics = [...Map.groupBy(asked, (a) => a.o.topic)].map(([topic, list]) => ({
      topicId: metadata.topics.get(topic)!.id,
      partitions: list.map((a) => ({
        partition: a.o.partition,
        fetchOffset: BigInt(a.offset),
        partitionMaxBytes: 1024 * 1024,
        currentLeaderEpoch: -1,
        lastFetchedEpoch: -1,
      })),
    }));
    let response: Awaited<ReturnType<Consumer['fetch']>>;
    try {
      response = await this.#consumer.fetch({
        node,
        topics,
        maxWaitTime: FETCH_WAIT_MS,
        minBytes: 1,
        maxBytes: 8 * 1024 * 1024,
        connectionPool: this.#fetchPool,
      });
    } catch (err) {
      if (kafkaErrorIds(err).includes('OFFSET_OUT_OF_RANGE')) await this.#resetOutOfRange(asked);
      else this.#backOff();
      return;
    }
    const names = new Map([...metadata.topics].map(([name, t]) => [t.id, name]));
    for (const t of response.responses) {
      const topic = names.get(t.topicId);
      if (topic === undefined) continue;
      for (const p of t.partitions) {
        const a = asked.find((x) => x.o.topic === topic && x.o.partition === p.partitionIndex);
        const current = this.#owned.get(topic, p.partitionIndex);
        // Revoked, seeked or refetched meanwhile: these records are stale.
        if (a === undefined || current === undefined || current.epoch !== a.epoch) continue;
        current.fetchOffset = recordsFromBatches(
          topic,
          p.partitionIndex,
          p.records,
          a.offset,
          current.buffered,
        );
      }
    }
  }

  /** Retention deleted what a partition was going to read: move to what is left (or the end). */
  async #resetOutOfRange(asked: { o: Owned; offset: number; epoch: number }[]): Promise<void> {
    try {
      const bounds = await listBounds(
        this.#deps.admin,
        asked.map((a) => a.o),
      );
      for (const a of asked) {
        const b = bounds.get(a.o.key);
        if (b === undefined || a.o.epoch !== a.epoch) continue;
        a.o.fetchOffset = Math.min(Math.max(a.offset, b.start), b.end);
        a.o.delivered = a.o.fetchOffset;
      }
    } catch {
      this.#backOff();
    }
  }

  #backOff(): void {
    this.#fetchErrorUntil = Date.now() + 200;
    setTimeout(() => this.#wakeup.wake(), 210).unref();
  }

  // ---- commits and controls ----------------------------------------------------------------

  async commit(offsets: CommittedOffset[]): Promise<void> {
    if (offsets.length === 0) return;
    const { group } = this.#o;
    for (const o of offsets) {
      if (this.#owned.get(o.topic, o.partition) === undefined) {
        fail(
          'EVENTLINE_ERR_FENCED',
          `member ${this.memberId} no longer owns ${o.topic}/${o.partition} in group ${group}; its commit was refused`,
          {
            details: { group, topic: o.topic, partition: o.partition },
          },
        );
      }
    }
    const topics = [...Map.groupBy(offsets, (o) => o.topic)].map(([name, list]) => ({
      name,
      partitions: list.map((o) => ({
        partitionIndex: o.partition,
        committedOffset: BigInt(o.offset),
        committedLeaderEpoch: -1,
        committedMetadata: o.metadata ?? null,
      })),
    }));
    try {
      this.#coordinator ??= await this.#findCoordinator();
      const connection = await this.#commitPool.get(this.#coordinator);
      await offsetCommitV8.api.async(
        connection,
        group,
        this.#consumer.generationId,
        this.#consumer.memberId ?? '',
        null,
        topics,
      );
    } catch (err) {
      const ids = kafkaErrorIds(err);
      if (ids.includes('NOT_COORDINATOR') || ids.includes('COORDINATOR_NOT_AVAILABLE') || !ids.length)
        this.#coordinator = undefined;
      // A commit during a rebalance is retried by the runtime; the revoke before the rejoin commits anyway.
      throw wrapKafkaError(err, `committing offsets of group ${group}`, {
        REBALANCE_IN_PROGRESS: 'EVENTLINE_ERR_ENGINE_UNAVAILABLE',
      });
    }
  }

  async #findCoordinator(): Promise<{ host: string; port: number }> {
    const [c] = await this.#deps.admin.findCoordinator({ keyType: 0, keys: [this.#o.group] });
    if (c === undefined)
      throw new EventlineError(
        'EVENTLINE_ERR_ENGINE_UNAVAILABLE',
        `no coordinator for group ${this.#o.group}`,
      );
    return { host: c.host, port: c.port };
  }

  seek(tp: TopicPartition, offset: number): void {
    const o = this.#owned.require(tp, 'seek');
    o.fetchOffset = offset;
    o.delivered = offset;
    o.epoch = ++this.#epoch;
    o.buffered = [];
    this.#wakeup.wake();
  }

  pause(tps: TopicPartition[]): void {
    this.#owned.pause(tps);
  }

  resume(tps: TopicPartition[]): void {
    this.#owned.resume(tps);
    this.#wakeup.wake();
  }

  assignment(): TopicPartition[] {
    return this.#owned.list();
  }

  async leave(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#metadataTimer);
    this.#wakeup.wake();
    // A fetch still waiting at the broker is not waited for: with nothing owned, its records are dropped.
    this.#owned.clear();
    try {
      await this.#consumer.leaveGroup();
    } catch {
      // the broker evicts the member after its session timeout anyway
    }
    await Promise.allSettled([this.#consumer.close(true), this.#commitPool.close(), this.#fetchPool.close()]);
  }
}

/** First offsets (timestamp -2) or end offsets of committed data (-1) of partitions, from the brokers. */
async function listOffsetsAt(
  admin: Admin,
  tps: TopicPartition[],
  timestamp: bigint,
): Promise<Map<string, number>> {
  const topics = await admin.listOffsets({
    topics: [...Map.groupBy(tps, (tp) => tp.topic)].map(([name, list]) => ({
      name,
      partitions: list.map((tp) => ({ partitionIndex: tp.partition, timestamp })),
    })),
    isolationLevel: FetchIsolationLevels.READ_COMMITTED,
  });
  const out = new Map<string, number>();
  for (const t of topics)
    for (const p of t.partitions) out.set(partitionKey(t.name, p.partitionIndex), Number(p.offset));
  return out;
}

/** End offsets of committed data (the last stable offsets) of partitions. */
export function listEnds(admin: Admin, tps: TopicPartition[]): Promise<Map<string, number>> {
  return listOffsetsAt(admin, tps, -1n);
}

/** Start and end (committed data) offsets of partitions, from the brokers. */
export async function listBounds(
  admin: Admin,
  tps: TopicPartition[],
): Promise<Map<string, { start: number; end: number }>> {
  const [starts, ends] = await Promise.all([listOffsetsAt(admin, tps, -2n), listEnds(admin, tps)]);
  const out = new Map<string, { start: number; end: number }>();
  for (const [key, start] of starts) out.set(key, { start, end: ends.get(key) ?? start });
  return out;
}

/** The connection settings of a client's options, for a connection pool of our own. */
export function connectionOptions(o: BaseOptions): ConstructorParameters<typeof ConnectionPool>[1] {
  const { connectTimeout, requestTimeout, tls, sasl, tlsServerName } = o;
  return {
    ...(connectTimeout === undefined ? {} : { connectTimeout }),
    ...(requestTimeout === undefined ? {} : { requestTimeout }),
    ...(tls === undefined ? {} : { tls }),
    ...(sasl === undefined ? {} : { sasl }),
    ...(tlsServerName === undefined ? {} : { tlsServerName }),
  };
}

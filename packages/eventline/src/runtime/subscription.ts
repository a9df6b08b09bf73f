import { setTimeout as sleep } from 'node:timers/promises';
import { partitionKey } from '../engine/assignor.ts';
import type {
  CommittedOffset,
  Engine,
  FetchedBatch,
  GroupMember,
  StoredRecord,
  TopicPartition,
} from '../engine/types.ts';
import { EventlineError, fail, isEventlineError } from '../errors.ts';
import { decodeMessage, type Message } from '../message.ts';
import {
  logDeliveryError,
  logJoined,
  logLeft,
  logPartitions,
  logRecovered,
} from '../observability/log-lines.ts';
import type { Logger } from '../observability/logger.ts';
import { ConsumerInstruments, type EventlineMetrics } from '../observability/metrics.ts';
import { type Tracing, traceProcess, traceProcessBatch, tracingNow } from '../observability/tracing.ts';
import { normalizeTopicConfig, type Topic } from '../topic.ts';
import { type Duration, parseDuration } from '../util/units.ts';
import { type CodecBinder, prepareDecode, type TopicCodecs } from './codecs.ts';
import { deadLetterTopic, parkingLotTopic, replaysOf, toDeadLetter } from './dead-letter.ts';
import type { DedupOptions } from './dedup.ts';
import { BatchIds, DedupGate, TakenIds } from './dedup-gate.ts';
import { decodeProgress, encodeProgress, type RetryInfo } from './progress.ts';
import { type RetryOptions, type RetryPolicy, retryPolicy } from './retry.ts';

// biome-ignore lint/suspicious/noExplicitAny: a subscription accepts topics of any value and key type
export type AnyTopic = Topic<any, any>;

/** A topic to subscribe to: a declared topic (typed, decoded) or a name (raw bytes values). */
export type TopicInput = AnyTopic | string;

/** The message type a handler receives for a topic input. */
export type MessageOf<T> = T extends Topic<infer V, infer K> ? Message<V, K> : Message<Buffer, string>;

export interface HandlerContext {
  /** Aborted when the partition is taken away or the stop grace period runs out. */
  readonly signal: AbortSignal;
  /**
   * 1 on the first delivery of a record, then 2, 3, … on retries. The count survives a restart
   * and a move to another member (it is kept with the group's committed offset).
   */
  readonly attempt: number;
  readonly group: string;
  readonly memberId: string;
}

export interface ErrorInfo {
  group: string;
  topic?: string;
  partition?: number;
  offset?: number;
  /** Delivery attempt that failed, when a record failed. */
  attempt?: number;
  /** Milliseconds until the record is delivered again. */
  retryInMs?: number;
  /** The topic the record was written to after its last attempt (dead letters or parking lot). */
  deadLetter?: string;
  /** True when the record was given up after its last attempt with dead letters turned off. */
  dropped?: boolean;
  /**
   * True when the record cannot be decoded (not in its codec's format, an unknown schema id, a
   * truncated payload): delivering it again will fail the same way. The error says why.
   */
  poison?: boolean;
}

export interface SubscribeOptions<T extends TopicInput> {
  /** Consumer group: members of one group share the partitions; each group gets every record. */
  group: string;
  topics: readonly T[];
  /**
   * Called once per record, in offset order per key (per partition with `ordering: 'partition'`).
   * Throwing means: try again later (see `retry`), then the dead-letter topic.
   */
  handler?: (message: MessageOf<T>, context: HandlerContext) => unknown;
  /** Called with up to `maxBatchSize` records of one partition. Throwing delivers the batch again. */
  batchHandler?: (messages: MessageOf<T>[], context: HandlerContext) => unknown;
  /**
   * Failed deliveries are tried again with exponential backoff and jitter, without holding up
   * other keys: while a record waits, later records with the same key wait behind it and records
   * with other keys keep flowing. Nothing waits only in memory: the commit never passes a waiting
   * record, and its attempt count travels with the committed offset.
   */
  retry?: RetryOptions;
  /**
   * After the last attempt a record goes to the dead-letter topic `dlq.<group>.<topic>` with its
   * key, value and headers unchanged plus headers saying where it came from and why it failed. A
   * record replayed `maxReplays` times (default 3) that fails again goes to `parking.<group>.<topic>`
   * instead. `false` drops records after their last attempt (each one is reported).
   */
  deadLetter?: false | { maxReplays?: number };
  /**
   * `'key'` (default): records of one key are handled in order, records of different keys may pass
   * one another (a waiting retry holds up only its own key). `'partition'`: the whole partition
   * waits for a failing record. Records without a key each count as their own key.
   */
  ordering?: 'key' | 'partition';
  /** Where a group with no committed offset starts: the oldest record (true) or new records only. Default false. */
  fromBeginning?: boolean;
  /**
   * How many partitions are handled at once (a number, default 1), and how many records of one
   * partition: `{ partitions, perPartition }`. With `perPartition` above 1, records of different
   * keys in a partition are handled in parallel and each key keeps its order; commits advance only
   * to the lowest unfinished offset.
   */
  concurrency?: number | { partitions?: number; perPartition?: number };
  /** Records fetched at once, and the most a batch handler gets. Default 500. */
  maxBatchSize?: number;
  /** A member silent for this long loses its partitions. Default `'10s'`. */
  sessionTimeout?: Duration;
  /** Default a tenth of the session timeout. */
  heartbeatInterval?: Duration;
  /** Same as `retry.initialDelay` (kept for older callers). */
  redeliveryDelay?: Duration;
  /** Same as `retry.maxDelay` (kept for older callers). */
  maxRedeliveryDelay?: Duration;
  /**
   * Handled records are committed at most this often (and always when partitions are revoked or
   * the subscription stops). A crash redelivers at most this window. Default `'100ms'`.
   */
  commitInterval?: Duration;
  /** How long `stop()` waits for running handlers before abandoning them (uncommitted). Default `'30s'`. */
  shutdownGrace?: Duration;
  /** Called when partitions are given to this member (after a join or a rebalance). */
  onPartitionsAssigned?: (partitions: TopicPartition[]) => void;
  /** Called when partitions are taken away, after their in-flight work finished and was committed. */
  onPartitionsRevoked?: (partitions: TopicPartition[]) => void;
  /** Told about every failed delivery and engine error. Default: the client's logger. */
  onError?: (error: Error, info: ErrorInfo) => void;
  /** Stops the subscription when aborted. */
  signal?: AbortSignal;
  /**
   * Skip records whose `ce_id` this group already processed, remembered in a durable store
   * (`sqliteDedupStore`, `redisDedupStore`, `postgresDedupStore`). See docs/delivery.md.
   */
  dedup?: DedupOptions;
}

export interface SeekTarget {
  topic: AnyTopic | string;
  /** Omit to move every partition of the topic this member owns now or later. */
  partition?: number;
  offset?: number | 'earliest' | 'latest';
  /** The first record at or after this time. */
  timestamp?: number | Date;
}

/** A running subscription. */
export interface Subscription {
  readonly group: string;
  /** Resolves once the member joined its group and took its first assignment. */
  ready(): Promise<void>;
  /** Partitions this member owns now. */
  assignment(): TopicPartition[];
  /**
   * Pauses delivery: everything (no argument), whole topics (names), or single partitions. A paused
   * partition keeps its position; records handled so far are committed.
   */
  pause(targets?: readonly (string | TopicPartition)[]): void;
  /** Resumes what `pause` paused; with no argument, everything. */
  resume(targets?: readonly (string | TopicPartition)[]): void;
  /** Moves the read position; the next delivery starts there. */
  seek(target: SeekTarget): Promise<void>;
  /** Finishes in-flight work (within the grace period), commits and leaves the group. */
  stop(): Promise<void>;
  /** Settles when the subscription has stopped. */
  readonly stopped: Promise<void>;
  /** What the subscription is doing now, for health checks (`bus.health()`). */
  state(): SubscriptionState;
}

/**
 * `starting`: joining its group (join failures are retried); `running`: a member of its group (it
 * may own no partition when the group has more members than partitions); `stopping`: finishing
 * in-flight work; `stopped`; `failed`: stopped by an error that retrying cannot fix (the broker
 * refused to let it join).
 */
export type SubscriptionStatus = 'starting' | 'running' | 'stopping' | 'stopped' | 'failed';

export interface SubscriptionState {
  status: SubscriptionStatus;
  /** When it entered this status (ms since the epoch). */
  since: number;
  /** Partitions owned now. */
  partitions: number;
  /** The error that failed it, or the last error of the join or reads that fail now. */
  error?: Error;
  /** Set while joining or reading fails on every attempt: when the first of those failures happened. */
  failingSince?: number;
}

/** Records of one key in one partition, handled in offset order. */
interface Lane {
  readonly id: string;
  readonly queue: StoredRecord[];
  running: boolean;
  /** Set while the head record waits for its next attempt. */
  timer: NodeJS.Timeout | undefined;
}

interface PartitionState extends TopicPartition {
  key: string;
  codecs: TopicCodecs;
  /** Metrics of this group and topic. */
  m: ConsumerInstruments;
  /** Offsets taken from the log and not yet passed by the commit position, in order. */
  window: number[];
  head: number;
  /** Finished offsets at or after `window[head]`. */
  done: Set<number>;
  /** The commit position once everything taken is finished (the last batch's next offset). */
  progress: number | null;
  committed: number | null;
  committedMeta: string | undefined;
  lanes: Map<string, Lane>;
  runnable: Lane[];
  /** Batches waiting to be handled in order, one record at a time (the fast path). */
  sequential: { records: StoredRecord[]; nextOffset: number }[];
  /** Handler calls running now (a sequential batch counts as one). */
  running: number;
  /** Records taken and not finished. */
  buffered: number;
  /** Records that failed and wait for their next attempt. */
  retries: Map<number, RetryInfo>;
  /** The event ids of taken records (the batch each came from), by offset, while dedup needs them. */
  ids: TakenIds;
  /** Finished offsets restored from the commit metadata, skipped when fetched again. */
  restoredDone: Set<number>;
  restoring: boolean;
  gone: boolean;
  pendingSeek: number | undefined;
  abort: AbortController;
  /** Resolved once nothing runs in the partition. */
  idle: (() => void)[];
}

export interface SubscriptionDeps {
  engine: Engine;
  codecs: CodecBinder;
  clientId: string;
  logger: Logger;
  metrics: EventlineMetrics;
  onStopped(sub: Subscription): void;
}

const DEAD_LETTER_SETTINGS = { retention: 'forever' } as const;

export class SubscriptionRunner<T extends TopicInput> implements Subscription {
  readonly group: string;
  readonly #engine: Engine;
  readonly #deps: SubscriptionDeps;
  readonly #codecs = new Map<string, TopicCodecs>();
  readonly #instruments = new Map<string, ConsumerInstruments>();
  readonly #handler: SubscribeOptions<T>['handler'];
  readonly #batchHandler: SubscribeOptions<T>['batchHandler'];
  readonly #onError: (error: Error, info: ErrorInfo) => void;
  readonly #dedup: DedupGate | undefined;
  readonly #partitionsAtOnce: number;
  readonly #perPartition: number;
  readonly #maxBatch: number;
  readonly #retry: RetryPolicy;
  readonly #deadLetters: { maxReplays: number } | false;
  readonly #byKey: boolean;
  readonly #graceMs: number;
  readonly #commitIntervalMs: number;
  /** Whether handler calls run in process spans: looked up once per poll (observability/tracing.ts). */
  #tracing: Tracing | undefined;
  #lastCommit = 0;
  #commitTimer: NodeJS.Timeout | undefined;
  readonly #member: GroupMember;
  #parts = new Map<string, PartitionState>();
  /** Handler calls running in all partitions. */
  #inflight = 0;
  #slotWaiters: (() => void)[] = [];
  #pausedAll = false;
  #pausedTopics = new Set<string>();
  #pausedParts = new Set<string>();
  #pendingSeeks = new Map<string, number | 'earliest' | 'latest' | { timestamp: number }>();
  #ensuredTopics = new Set<string>();
  #stopping = false;
  #stopPromise: Promise<void> | undefined;
  #loopAbort = new AbortController();
  #commitChain: Promise<void> = Promise.resolve();
  #commitQueued = false;
  #commitRetry: NodeJS.Timeout | undefined;
  #readyPromise: Promise<void>;
  #resolveStopped!: () => void;
  readonly stopped: Promise<void>;
  #status: SubscriptionStatus = 'starting';
  #statusSince = Date.now();
  #failure: Error | undefined;
  #lastError: Error | undefined;
  #failingSince: number | undefined;

  constructor(deps: SubscriptionDeps, options: SubscribeOptions<T>) {
    if (typeof options.group !== 'string' || options.group.length === 0 || options.group.length > 249) {
      fail(
        'EVENTLINE_ERR_INVALID_ARGUMENT',
        'subscribe: group must be a non-empty string of at most 249 characters',
      );
    }
    if (!Array.isArray(options.topics) || options.topics.length === 0) {
      fail('EVENTLINE_ERR_INVALID_ARGUMENT', 'subscribe: topics must list at least one topic');
    }
    if ((options.handler === undefined) === (options.batchHandler === undefined)) {
      fail('EVENTLINE_ERR_INVALID_ARGUMENT', 'subscribe: give exactly one of handler or batchHandler');
    }
    this.group = options.group;
    this.#engine = deps.engine;
    this.#deps = deps;
    this.#handler = options.handler;
    this.#batchHandler = options.batchHandler;
    this.#dedup = options.dedup === undefined ? undefined : new DedupGate(options.dedup, options.group);
    for (const t of options.topics) {
      const codecs = deps.codecs.of(t as Topic<unknown, unknown> | string);
      this.#codecs.set(codecs.name, codecs);
    }
    const concurrency = options.concurrency ?? 1;
    if (typeof concurrency === 'number') {
      this.#partitionsAtOnce = positive(concurrency, 'concurrency');
      this.#perPartition = 1;
    } else {
      this.#partitionsAtOnce = positive(concurrency.partitions ?? 1, 'concurrency.partitions');
      this.#perPartition = positive(concurrency.perPartition ?? 1, 'concurrency.perPartition');
      if (this.#perPartition > 1 && this.#batchHandler !== undefined) {
        fail(
          'EVENTLINE_ERR_INVALID_ARGUMENT',
          'subscribe: concurrency.perPartition needs a handler, not a batchHandler',
        );
      }
    }
    this.#byKey = (options.ordering ?? 'key') === 'key';
    this.#maxBatch = positive(options.maxBatchSize ?? 500, 'maxBatchSize');
    this.#retry = retryPolicy(options.retry, {
      ...(options.redeliveryDelay === undefined ? {} : { initial: options.redeliveryDelay }),
      ...(options.maxRedeliveryDelay === undefined ? {} : { max: options.maxRedeliveryDelay }),
    });
    this.#deadLetters =
      options.deadLetter === false ? false : { maxReplays: options.deadLetter?.maxReplays ?? 3 };
    const sessionTimeoutMs = parseDuration(options.sessionTimeout ?? '10s', 'sessionTimeout');
    const heartbeatIntervalMs = parseDuration(
      options.heartbeatInterval ?? Math.max(100, Math.floor(sessionTimeoutMs / 10)),
      'heartbeatInterval',
    );
    if (heartbeatIntervalMs >= sessionTimeoutMs) {
      fail(
        'EVENTLINE_ERR_INVALID_ARGUMENT',
        'subscribe: heartbeatInterval must be shorter than sessionTimeout',
      );
    }
    this.#graceMs = parseDuration(options.shutdownGrace ?? '30s', 'shutdownGrace');
    this.#commitIntervalMs = parseDuration(options.commitInterval ?? '100ms', 'commitInterval');
    this.#onError = options.onError ?? ((error, info) => logDeliveryError(deps.logger, error, info));
    this.stopped = new Promise((resolve) => {
      this.#resolveStopped = resolve;
    });
    this.#member = this.#engine.createGroupMember({
      group: options.group,
      topics: [...this.#codecs.keys()],
      clientId: deps.clientId,
      fromBeginning: options.fromBeginning ?? false,
      sessionTimeoutMs,
      heartbeatIntervalMs,
      onAssigned: (tps) => {
        logPartitions(deps.logger, 'assigned', this.group, this.#member.memberId, tps);
        this.#assigned(tps);
        this.#notify(options.onPartitionsAssigned, tps);
      },
      onRevoked: async (tps) => {
        logPartitions(deps.logger, 'revoked', this.group, this.#member.memberId, tps);
        await this.#revoked(tps);
        this.#notify(options.onPartitionsRevoked, tps);
      },
      onLost: (tps) => {
        logPartitions(deps.logger, 'lost', this.group, this.#member.memberId, tps);
        this.#lost(tps);
      },
    });
    options.signal?.addEventListener('abort', () => void this.stop(), { once: true });
    this.#readyPromise = this.#start();
    this.#readyPromise.catch(() => {});
  }

  get memberId(): string {
    return this.#member.memberId;
  }

  ready(): Promise<void> {
    return this.#readyPromise;
  }

  assignment(): TopicPartition[] {
    return this.#member.assignment();
  }

  state(): SubscriptionState {
    const error = this.#failure ?? (this.#failingSince === undefined ? undefined : this.#lastError);
    return {
      status: this.#status,
      since: this.#statusSince,
      partitions: this.#member.assignment().length,
      ...(error === undefined ? {} : { error }),
      ...(this.#failingSince === undefined ? {} : { failingSince: this.#failingSince }),
    };
  }

  #enter(status: SubscriptionStatus): void {
    // A failure is final: the stop that follows it does not hide it.
    if (this.#status === status || this.#status === 'failed') return;
    this.#status = status;
    this.#statusSince = Date.now();
  }

  /** An attempt to join or read failed (`err`), or succeeded (undefined). */
  #attempted(err?: unknown): void {
    if (err === undefined) this.#failingSince = undefined;
    else {
      this.#lastError = err instanceof Error ? err : new Error(String(err));
      this.#failingSince ??= Date.now();
    }
  }

  async #start(): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      if (this.#stopping) fail('EVENTLINE_ERR_CLOSED', `subscription of group ${this.group} was stopped`);
      try {
        await this.#member.join();
        logJoined(this.#deps.logger, this.group, this.#member.memberId, [...this.#codecs.keys()]);
        break;
      } catch (err) {
        this.#report(err, {});
        this.#attempted(err);
        if (isEventlineError(err) && !err.retryable) {
          if (!this.#stopping) {
            this.#failure = err;
            this.#enter('failed');
          }
          void this.stop();
          throw err;
        }
        await sleep(Math.min(100 * 2 ** attempt, 5000));
      }
    }
    this.#attempted();
    if (!this.#stopping) this.#enter('running');
    void this.#loop();
  }

  async #loop(): Promise<void> {
    let failures = 0;
    while (!this.#stopping) {
      if (!this.#accepting()) {
        await new Promise<void>((resolve) => this.#slotWaiters.push(resolve));
        continue;
      }
      try {
        const batches = await this.#member.poll({
          maxRecords: this.#maxBatch,
          maxWaitMs: 1000,
          signal: this.#loopAbort.signal,
        });
        this.#tracing = tracingNow();
        if (failures > 0) logRecovered(this.#deps.logger, this.group, this.#member.memberId, failures);
        failures = 0;
        this.#attempted();
        for (const b of batches) {
          const st = this.#parts.get(partitionKey(b.topic, b.partition));
          if (st === undefined || st.gone || st.pendingSeek !== undefined) continue;
          const schemas = prepareDecode(st.codecs, b.records);
          if (schemas !== undefined) await schemas;
          const duplicates = this.#dedup === undefined ? undefined : await this.#duplicates(st, b.records);
          if (!st.gone && st.pendingSeek === undefined) this.#take(st, b, duplicates);
        }
      } catch (err) {
        if (this.#stopping) break;
        this.#report(err, {});
        this.#attempted(err);
        await sleep(Math.min(100 * 2 ** failures++, 5000));
      }
    }
  }

  /** Ids of these records the group processed already; asks the store again until it answers. */
  async #duplicates(st: PartitionState, records: readonly StoredRecord[]): Promise<Set<string>> {
    // Read once per batch: the handler path finds a record's id by its offset.
    const ids = new BatchIds(records);
    if (ids.count === 0) return new Set();
    st.ids.add(ids);
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.#dedup!.seen(ids);
      } catch (err) {
        if (this.#stopping || st.gone) return new Set();
        this.#report(err, { topic: st.topic, partition: st.partition });
        await sleep(Math.min(100 * 2 ** attempt, 5000));
      }
    }
  }

  /** A record whose id was processed already: it is finished without its handler. */
  #skip(st: PartitionState, r: StoredRecord): void {
    st.ids.delete(r.offset);
    st.m.duplicates.value++;
    const onDuplicate = this.#dedup?.onDuplicate;
    if (onDuplicate === undefined) return;
    try {
      onDuplicate(decodeMessage(r, st.codecs.value, st.codecs.key));
    } catch (err) {
      this.#report(err, { topic: st.topic, partition: st.partition, offset: r.offset });
    }
  }

  /** True when this record's id was handled a moment ago (a repeat within what was fetched). */
  #repeat(st: PartitionState, r: StoredRecord): boolean {
    if (this.#dedup === undefined) return false;
    const ids = st.ids.get(r.offset);
    return ids !== undefined && this.#dedup.repeat(ids, r.offset);
  }

  #handled(st: PartitionState, r: StoredRecord): void {
    if (this.#dedup === undefined) return;
    const ids = st.ids.finish(r.offset);
    if (ids !== undefined) this.#dedup.handled(ids, r.offset);
  }

  /** True when some owned partition can take more records. */
  #accepting(): boolean {
    for (const st of this.#parts.values()) if (!this.#isPaused(st)) return true;
    return this.#parts.size === 0;
  }

  #wakeLoop(): void {
    const waiters = this.#slotWaiters;
    this.#slotWaiters = [];
    for (const w of waiters) w();
  }

  // ---- taking records and scheduling them ---------------------------------------------------

  /** Takes a fetched batch into a partition's state and starts what can start. */
  #take(st: PartitionState, batch: FetchedBatch, duplicates?: Set<string>): void {
    let records =
      st.restoredDone.size === 0
        ? batch.records
        : batch.records.filter((r) => {
            if (!st.restoredDone.delete(r.offset)) return true;
            st.ids.delete(r.offset);
            return false;
          });
    if (duplicates !== undefined && duplicates.size > 0) {
      records = records.filter((r) => {
        const id = st.ids.get(r.offset)?.idAt(r.offset);
        if (id === undefined || !duplicates.has(id)) return true;
        this.#skip(st, r);
        return false;
      });
    }
    st.buffered += records.length;
    if (
      this.#batchHandler === undefined &&
      this.#perPartition === 1 &&
      st.head === st.window.length &&
      st.retries.size === 0
    ) {
      // Nothing waits in this partition: handle the batch in order without per-record bookkeeping.
      // A failure hands the rest of the batch to the per-key lanes.
      st.sequential.push({ records, nextOffset: batch.nextOffset });
    } else {
      for (const r of records) {
        st.window.push(r.offset);
        this.#enqueue(st, r);
      }
      st.progress = batch.nextOffset;
      if (records.length === 0) this.#scheduleCommit();
    }
    this.#refreshPause(st);
    this.#dispatchAll();
  }

  #laneId(r: StoredRecord): string {
    if (this.#batchHandler !== undefined || !this.#byKey) return '';
    return r.key === null ? `\u0000${r.offset}` : r.key.toString('latin1');
  }

  #enqueue(st: PartitionState, r: StoredRecord): void {
    const id = this.#laneId(r);
    let lane = st.lanes.get(id);
    if (lane === undefined) {
      lane = { id, queue: [], running: false, timer: undefined };
      st.lanes.set(id, lane);
    }
    lane.queue.push(r);
    if (lane.queue.length === 1 && !lane.running) this.#ready(st, lane);
  }

  /** A lane's head may run now, or when its retry is due. */
  #ready(st: PartitionState, lane: Lane): void {
    const head = lane.queue[0]!;
    const wait = (st.retries.get(head.offset)?.due ?? 0) - Date.now();
    if (wait > 0) {
      lane.timer = setTimeout(() => {
        lane.timer = undefined;
        if (st.gone) return;
        st.runnable.push(lane);
        this.#dispatchAll();
      }, wait);
      return;
    }
    st.runnable.push(lane);
  }

  #slots(): number {
    return this.#partitionsAtOnce * this.#perPartition - this.#inflight;
  }

  #dispatchAll(): void {
    for (const st of this.#parts.values()) {
      if (this.#slots() <= 0) return;
      this.#dispatch(st);
    }
  }

  #dispatch(st: PartitionState): void {
    if (st.sequential.length > 0) {
      if (st.running === 0 && this.#slots() > 0 && this.#canRun(st)) {
        const { records, nextOffset } = st.sequential.shift()!;
        void this.#runSequential(st, records, nextOffset);
      }
      return;
    }
    while (
      st.runnable.length > 0 &&
      st.running < this.#perPartition &&
      this.#slots() > 0 &&
      this.#canRun(st)
    ) {
      const lane = st.runnable.shift()!;
      if (lane.running || lane.queue.length === 0) continue;
      lane.running = true;
      st.running++;
      this.#inflight++;
      const run = this.#batchHandler === undefined ? this.#runOne(st, lane) : this.#runBatch(st, lane);
      void run.finally(() => {
        lane.running = false;
        this.#finished(st);
        if (lane.queue.length === 0) {
          if (st.lanes.get(lane.id) === lane) st.lanes.delete(lane.id);
        } else if (lane.timer === undefined && !st.gone) this.#ready(st, lane);
        this.#dispatchAll();
      });
    }
  }

  #canRun(st: PartitionState): boolean {
    return !st.gone && st.pendingSeek === undefined && !this.#userPaused(st) && !this.#stopping;
  }

  /** A handler call ended: free its slot, wake revokers and the loop, commit soon. */
  #finished(st: PartitionState): void {
    st.running--;
    this.#inflight--;
    if (st.running === 0) {
      if (!st.gone && st.pendingSeek !== undefined) this.#applySeek(st);
      const idle = st.idle;
      st.idle = [];
      for (const fn of idle) fn();
    }
    if (!st.gone) this.#refreshPause(st);
    this.#scheduleCommit();
    this.#wakeLoop();
  }

  #markDone(st: PartitionState, offset: number): void {
    st.ids.delete(offset);
    st.buffered--;
    st.retries.delete(offset);
    if (st.window[st.head] === offset) {
      st.head++;
      while (st.head < st.window.length && st.done.delete(st.window[st.head]!)) st.head++;
      if (st.head > 4096 && st.head * 2 > st.window.length) {
        st.window.splice(0, st.head);
        st.head = 0;
      }
    } else st.done.add(offset);
  }

  /** The offset to commit: the first record not finished, or past everything taken. */
  #position(st: PartitionState): number | null {
    return st.head < st.window.length ? st.window[st.head]! : st.progress;
  }

  #context(st: PartitionState, attempt: number): HandlerContext {
    return { signal: st.abort.signal, attempt, group: this.group, memberId: this.#member.memberId };
  }

  /** Calls the handler; inside a process span when tracing is on. */
  #call(st: PartitionState, r: StoredRecord, message: Message<unknown, unknown>, attempt: number): unknown {
    const ctx = this.#context(st, attempt);
    if (this.#tracing === undefined) return this.#handler!(message as MessageOf<T>, ctx);
    const delivery = { engine: this.#engine, group: this.group, attempt };
    return traceProcess(this.#tracing, delivery, r, () => this.#handler!(message as MessageOf<T>, ctx));
  }

  /** Calls the batch handler; inside one process span linked to every record's context when tracing is on. */
  #callBatch(
    st: PartitionState,
    records: StoredRecord[],
    messages: Message<unknown, unknown>[],
    attempt: number,
  ): unknown {
    const ctx = this.#context(st, attempt);
    if (this.#tracing === undefined) return this.#batchHandler!(messages as MessageOf<T>[], ctx);
    const delivery = { engine: this.#engine, group: this.group, attempt };
    return traceProcessBatch(this.#tracing, delivery, records, () =>
      this.#batchHandler!(messages as MessageOf<T>[], ctx),
    );
  }

  /** The fast path: a batch in offset order, one record at a time, while nothing waits. */
  async #runSequential(st: PartitionState, records: StoredRecord[], nextOffset: number): Promise<void> {
    st.running++;
    this.#inflight++;
    const { value, key } = st.codecs;
    let i = 0;
    try {
      for (; i < records.length; i++) {
        // A pause lets the batch finish (its records are taken); a move, a stop or a revoke ends it.
        if (st.gone || this.#stopping || st.pendingSeek !== undefined) break;
        const r = records[i]!;
        let message: Message<unknown, unknown> | undefined;
        let started = 0;
        try {
          if (this.#repeat(st, r)) this.#skip(st, r);
          else {
            message = decodeMessage(r, value, key);
            started = performance.now();
            const result = this.#call(st, r, message, 1);
            if (
              result !== null &&
              typeof result === 'object' &&
              typeof (result as Promise<unknown>).then === 'function'
            ) {
              await result;
            }
            st.m.handled(started);
            this.#handled(st, r);
          }
        } catch (err) {
          if (started !== 0) st.m.threw(started);
          if (st.gone) break;
          await this.#toLanes(st, records.slice(i), nextOffset, message, err);
          return;
        }
        st.progress = r.offset + 1;
        st.buffered--;
        this.#scheduleCommit();
      }
      if (i === records.length) st.progress = nextOffset;
    } finally {
      this.#finished(st);
      this.#dispatchAll();
    }
  }

  /**
   * The fast path met a failure at `rest[0]`: it and everything after it (queued batches too) go to
   * the per-key lanes, where the failed record waits for its retry and other keys go on.
   */
  async #toLanes(
    st: PartitionState,
    rest: StoredRecord[],
    nextOffset: number,
    message: Message<unknown, unknown> | undefined,
    err: unknown,
  ): Promise<void> {
    const failed = rest[0]!;
    const queued = st.sequential.splice(0);
    const all = [...rest, ...queued.flatMap((b) => b.records)];
    for (const r of all) st.window.push(r.offset);
    st.progress = queued.length > 0 ? queued[queued.length - 1]!.nextOffset : nextOffset;
    const finished = await this.#failed(st, failed, message, err, 1);
    if (finished) this.#markDone(st, failed.offset);
    for (const r of finished ? all.slice(1) : all) this.#enqueue(st, r);
  }

  /** Runs the head of a lane once. */
  async #runOne(st: PartitionState, lane: Lane): Promise<void> {
    const r = lane.queue[0]!;
    const attempt = (st.retries.get(r.offset)?.attempt ?? 0) + 1;
    let message: Message<unknown, unknown> | undefined;
    let started = 0;
    try {
      if (this.#repeat(st, r)) this.#skip(st, r);
      else {
        message = decodeMessage(r, st.codecs.value, st.codecs.key);
        started = performance.now();
        await this.#call(st, r, message, attempt);
        st.m.handled(started);
        this.#handled(st, r);
      }
    } catch (err) {
      if (started !== 0) st.m.threw(started);
      if (st.gone && st.pendingSeek === undefined) return;
      if (await this.#failed(st, r, message, err, attempt)) {
        lane.queue.shift();
        this.#markDone(st, r.offset);
      }
      return;
    }
    lane.queue.shift();
    this.#markDone(st, r.offset);
  }

  /** Batch handlers: the partition is one lane; a failing batch is delivered again whole. */
  async #runBatch(st: PartitionState, lane: Lane): Promise<void> {
    const records = lane.queue.slice(0, this.#maxBatch);
    const first = records[0]!;
    const attempt = (st.retries.get(first.offset)?.attempt ?? 0) + 1;
    const messages: Message<unknown, unknown>[] = [];
    for (const r of records) {
      try {
        messages.push(decodeMessage(r, st.codecs.value, st.codecs.key));
      } catch (err) {
        if (messages.length > 0) break;
        // The batch starts with a record that cannot be decoded: it goes aside on its own.
        if (await this.#failed(st, r, undefined, err, attempt)) {
          lane.queue.shift();
          this.#markDone(st, r.offset);
        }
        return;
      }
    }
    let started = 0;
    let fresh: Message<unknown, unknown>[] = [];
    try {
      fresh = messages.filter((m, i) => {
        if (!this.#repeat(st, records[i]!)) return true;
        // A batch delivered again skips the same records again: count them once.
        if (attempt === 1) st.m.duplicates.value++;
        this.#dedup?.onDuplicate?.(m);
        return false;
      });
      if (fresh.length > 0) {
        started = performance.now();
        await this.#callBatch(st, records, fresh, attempt);
        st.m.handled(started, fresh.length);
      }
      for (let i = 0; i < messages.length; i++) this.#handled(st, records[i]!);
    } catch (err) {
      if (started !== 0) st.m.threw(started, fresh.length);
      if (st.gone && st.pendingSeek === undefined) return;
      if (await this.#failed(st, first, undefined, err, attempt, messages.length)) {
        for (const m of messages) {
          lane.queue.shift();
          this.#markDone(st, m.offset);
        }
      }
      return;
    }
    for (const m of messages) {
      lane.queue.shift();
      this.#markDone(st, m.offset);
    }
  }

  /**
   * A delivery failed. Either the record waits for another attempt (false), or it is finished:
   * dead-lettered, or dropped when dead letters are off (true). `count` records starting at
   * `record` failed together (a batch).
   */
  async #failed(
    st: PartitionState,
    record: StoredRecord,
    message: Message<unknown, unknown> | undefined,
    err: unknown,
    attempt: number,
    count = 1,
  ): Promise<boolean> {
    const now = Date.now();
    const previous = st.retries.get(record.offset);
    const first = previous?.first ?? now;
    const info = { topic: st.topic, partition: st.partition, offset: record.offset, attempt };
    const poison =
      isEventlineError(err, 'EVENTLINE_ERR_DECODE') && err.details.poison === true && !err.retryable;
    if (attempt < this.#retry.attempts && this.#retry.retryable(err, message)) {
      const wait = this.#retry.delay(attempt);
      st.retries.set(record.offset, { attempt, first, due: now + wait });
      st.m.retries.value++;
      this.#report(err, { ...info, retryInMs: wait, ...(poison ? { poison } : {}) });
      return false;
    }
    if (this.#deadLetters === false) {
      st.m.dropped.value += count;
      this.#report(err, { ...info, dropped: true, ...(poison ? { poison } : {}) });
      return true;
    }
    const batch = count === 1 ? [record] : this.#batchRecords(st, record, count);
    const parked = replaysOf(record.headers) >= this.#deadLetters.maxReplays;
    const target = parked ? parkingLotTopic(this.group, st.topic) : deadLetterTopic(this.group, st.topic);
    try {
      await this.#ensureTopic(target);
      await this.#engine.append(
        target,
        batch.map((r) =>
          toDeadLetter(r, {
            group: this.group,
            attempts: attempt,
            firstFailure: first,
            lastFailure: now,
            error: err,
          }),
        ),
      );
    } catch (publishErr) {
      // The dead-letter topic cannot be written now: keep the record and try again later.
      const wait = this.#retry.delay(attempt);
      st.retries.set(record.offset, { attempt: attempt - 1, first, due: now + wait });
      this.#report(publishErr, { ...info, retryInMs: wait });
      return false;
    }
    (parked ? st.m.parked : st.m.deadLettered).value += batch.length;
    this.#report(err, { ...info, deadLetter: target, ...(poison ? { poison } : {}) });
    return true;
  }

  #batchRecords(st: PartitionState, from: StoredRecord, count: number): StoredRecord[] {
    const lane = st.lanes.get('')!;
    const at = lane.queue.indexOf(from);
    return lane.queue.slice(at, at + count);
  }

  async #ensureTopic(name: string): Promise<void> {
    if (this.#ensuredTopics.has(name)) return;
    try {
      await this.#engine.createTopics([{ name, ...normalizeTopicConfig(name, DEAD_LETTER_SETTINGS) }]);
    } catch (err) {
      if (!isEventlineError(err, 'EVENTLINE_ERR_TOPIC_EXISTS')) throw err;
    }
    this.#ensuredTopics.add(name);
  }

  #notify(listener: ((tps: TopicPartition[]) => void) | undefined, tps: TopicPartition[]): void {
    try {
      listener?.(tps);
    } catch (err) {
      this.#report(err, {});
    }
  }

  #report(err: unknown, info: Omit<ErrorInfo, 'group'>): void {
    const error = err instanceof Error ? err : new Error(String(err));
    try {
      this.#onError(error, { group: this.group, ...info });
    } catch {
      // an error reporter that throws must not stop the consumer
    }
  }

  #userPaused(st: PartitionState): boolean {
    return this.#pausedAll || this.#pausedTopics.has(st.topic) || this.#pausedParts.has(st.key);
  }

  #isPaused(st: PartitionState): boolean {
    return (
      st.gone ||
      st.restoring ||
      st.pendingSeek !== undefined ||
      st.sequential.length > 0 ||
      (st.running > 0 && st.head === st.window.length) ||
      st.buffered >= this.#maxBatch ||
      this.#userPaused(st)
    );
  }

  #refreshPause(st: PartitionState): void {
    if (this.#isPaused(st)) this.#member.pause([st]);
    else this.#member.resume([st]);
  }

  // ---- group callbacks --------------------------------------------------------------------

  #instrumentsOf(topic: string): ConsumerInstruments {
    let m = this.#instruments.get(topic);
    if (m === undefined) {
      m = new ConsumerInstruments(this.#deps.metrics, this.group, topic);
      this.#instruments.set(topic, m);
    }
    return m;
  }

  #assigned(tps: TopicPartition[]): void {
    this.#deps.metrics.rebalances.child(this.group, 'assigned').inc();
    const states: PartitionState[] = [];
    for (const tp of tps) {
      const key = partitionKey(tp.topic, tp.partition);
      const st: PartitionState = {
        ...tp,
        key,
        codecs: this.#codecs.get(tp.topic)!,
        m: this.#instrumentsOf(tp.topic),
        window: [],
        head: 0,
        done: new Set(),
        progress: null,
        committed: null,
        committedMeta: undefined,
        lanes: new Map(),
        runnable: [],
        sequential: [],
        running: 0,
        buffered: 0,
        retries: new Map(),
        ids: new TakenIds(),
        restoredDone: new Set(),
        restoring: true,
        gone: false,
        pendingSeek: undefined,
        abort: new AbortController(),
        idle: [],
      };
      this.#parts.set(key, st);
      states.push(st);
      this.#refreshPause(st);
      const seek = this.#pendingSeeks.get(key) ?? this.#pendingSeeks.get(partitionKey(tp.topic, -1));
      this.#pendingSeeks.delete(key);
      if (seek !== undefined) {
        void this.#resolveOffset(tp, seek).then(
          (offset) => this.#seekWhenIdle(st, offset),
          (err) => this.#report(err, tp),
        );
      }
    }
    void this.#restore(states);
  }

  /** Reads what the previous owner left in the commit metadata: finished records and retries. */
  async #restore(states: PartitionState[]): Promise<void> {
    try {
      const committed = await this.#engine.groupOffsets(this.group);
      for (const st of states) {
        const c = committed.find((o) => o.topic === st.topic && o.partition === st.partition);
        if (c === undefined) continue;
        st.committed = c.offset;
        st.committedMeta = c.metadata;
        const progress = decodeProgress(c.offset, c.metadata);
        st.restoredDone = progress.done;
        st.retries = progress.retries;
      }
    } catch (err) {
      // Without the metadata nothing is lost: finished records are handled again, attempts restart.
      this.#report(err, {});
    }
    for (const st of states) {
      st.restoring = false;
      if (!st.gone) this.#refreshPause(st);
    }
    this.#wakeLoop();
  }

  async #revoked(tps: TopicPartition[]): Promise<void> {
    this.#deps.metrics.rebalances.child(this.group, 'revoked').inc();
    const states = tps
      .map((tp) => this.#parts.get(partitionKey(tp.topic, tp.partition)))
      .filter((s) => s !== undefined);
    for (const st of states) this.#retire(st);
    await Promise.all(states.map((st) => this.#whenIdle(st)));
    await this.#commitNow(new Set(states.map((s) => s.key)));
    for (const st of states) this.#parts.delete(st.key);
    this.#wakeLoop();
  }

  /** The partition takes no more work; waiting records stay uncommitted (their state is in the metadata). */
  #retire(st: PartitionState): void {
    st.gone = true;
    st.runnable = [];
    st.sequential = [];
    for (const lane of st.lanes.values()) clearTimeout(lane.timer);
  }

  #whenIdle(st: PartitionState): Promise<void> {
    return st.running === 0 ? Promise.resolve() : new Promise<void>((r) => st.idle.push(r));
  }

  #lost(tps: TopicPartition[]): void {
    this.#deps.metrics.rebalances.child(this.group, 'lost').inc();
    for (const tp of tps) {
      const st = this.#parts.get(partitionKey(tp.topic, tp.partition));
      if (st === undefined) continue;
      this.#retire(st);
      st.abort.abort(
        new EventlineError('EVENTLINE_ERR_FENCED', `${tp.topic}/${tp.partition} was taken away`),
      );
      this.#parts.delete(st.key);
    }
    this.#report(
      new EventlineError(
        'EVENTLINE_ERR_FENCED',
        `lost ${tps.length} partition(s): this member missed its session timeout`,
      ),
      {},
    );
    this.#wakeLoop();
  }

  // ---- commits ----------------------------------------------------------------------------

  /** Commits handled offsets soon: at once if the last commit is older than the interval. */
  #scheduleCommit(): void {
    if (this.#commitQueued || this.#commitTimer !== undefined) return;
    const wait = this.#lastCommit + this.#commitIntervalMs - Date.now();
    if (wait > 0 && !this.#stopping) {
      this.#commitTimer = setTimeout(() => {
        this.#commitTimer = undefined;
        this.#scheduleCommit();
      }, wait);
      return;
    }
    this.#commitQueued = true;
    this.#commitChain = this.#commitChain.then(() => {
      this.#commitQueued = false;
      this.#lastCommit = Date.now();
      return this.#commitPending(undefined);
    });
  }

  #commitNow(only: Set<string> | undefined): Promise<void> {
    this.#commitChain = this.#commitChain.then(() => this.#commitPending(only));
    return this.#commitChain;
  }

  async #commitPending(only: Set<string> | undefined): Promise<void> {
    const due: [PartitionState, CommittedOffset][] = [];
    for (const st of this.#parts.values()) {
      if (only !== undefined && !only.has(st.key)) continue;
      const offset = this.#position(st);
      if (offset === null) continue;
      // Retries restored for records the log no longer has (retention) are behind the position.
      for (const o of st.retries.keys()) if (o < offset) st.retries.delete(o);
      const metadata = encodeProgress(offset, st.done, st.retries);
      if (offset === st.committed && metadata === st.committedMeta) continue;
      due.push([st, { topic: st.topic, partition: st.partition, offset, ...(metadata ? { metadata } : {}) }]);
    }
    if (due.length === 0) return;
    try {
      // Handled ids are marked before the offsets that cover them are committed.
      await this.#dedup?.flush();
      await this.#member.commit(due.map(([, o]) => o));
      for (const [st, o] of due) {
        st.committed = o.offset;
        st.committedMeta = o.metadata;
      }
    } catch (err) {
      this.#report(err, {});
      const retryable = (isEventlineError(err) && err.retryable) || this.#dedup?.failure !== undefined;
      if (retryable && !this.#stopping) {
        clearTimeout(this.#commitRetry);
        this.#commitRetry = setTimeout(() => this.#scheduleCommit(), 1000);
      }
    }
  }

  // ---- user controls ----------------------------------------------------------------------

  #targets(targets: readonly (string | TopicPartition)[] | undefined, paused: boolean): void {
    if (targets === undefined) {
      this.#pausedAll = paused;
      if (!paused) {
        this.#pausedTopics.clear();
        this.#pausedParts.clear();
      }
    } else {
      for (const t of targets) {
        if (typeof t === 'string') {
          if (paused) this.#pausedTopics.add(t);
          else this.#pausedTopics.delete(t);
        } else {
          const key = partitionKey(t.topic, t.partition);
          if (paused) this.#pausedParts.add(key);
          else this.#pausedParts.delete(key);
        }
      }
    }
    for (const st of this.#parts.values()) if (!st.gone) this.#refreshPause(st);
    if (!paused) {
      this.#dispatchAll();
      this.#wakeLoop();
    }
  }

  pause(targets?: readonly (string | TopicPartition)[]): void {
    this.#targets(targets, true);
  }

  resume(targets?: readonly (string | TopicPartition)[]): void {
    this.#targets(targets, false);
  }

  async #resolveOffset(
    tp: TopicPartition,
    where: number | 'earliest' | 'latest' | { timestamp: number },
  ): Promise<number> {
    if (typeof where === 'number') return where;
    if (typeof where === 'object')
      return this.#engine.offsetForTimestamp(tp.topic, tp.partition, where.timestamp);
    const [bounds] = await this.#engine.listOffsets(tp.topic, [tp.partition]);
    return where === 'earliest' ? bounds!.start : bounds!.end;
  }

  /** Moves a partition's position now, or once its running handlers are done. */
  #seekWhenIdle(st: PartitionState, offset: number): void {
    if (st.gone) return;
    st.pendingSeek = offset;
    this.#refreshPause(st);
    if (st.running === 0) this.#applySeek(st);
  }

  /** Forgets everything taken from the partition and reads again from the seek position. */
  #applySeek(st: PartitionState): void {
    const offset = st.pendingSeek!;
    st.pendingSeek = undefined;
    for (const lane of st.lanes.values()) clearTimeout(lane.timer);
    st.lanes.clear();
    st.runnable = [];
    st.sequential = [];
    st.window = [];
    st.head = 0;
    st.done.clear();
    st.retries.clear();
    st.ids.clear();
    st.restoredDone.clear();
    st.buffered = 0;
    st.progress = offset;
    this.#member.seek(st, offset);
    this.#refreshPause(st);
    this.#scheduleCommit();
    this.#wakeLoop();
  }

  async seek(target: SeekTarget): Promise<void> {
    const topic = typeof target.topic === 'string' ? target.topic : target.topic.name;
    if (!this.#codecs.has(topic)) {
      fail('EVENTLINE_ERR_INVALID_ARGUMENT', `seek: this subscription does not read topic ${topic}`);
    }
    if ((target.offset === undefined) === (target.timestamp === undefined)) {
      fail('EVENTLINE_ERR_INVALID_ARGUMENT', 'seek: give exactly one of offset or timestamp');
    }
    const where =
      target.timestamp !== undefined
        ? { timestamp: target.timestamp instanceof Date ? target.timestamp.getTime() : target.timestamp }
        : target.offset!;
    if (typeof where === 'number' && (!Number.isInteger(where) || where < 0)) {
      fail('EVENTLINE_ERR_INVALID_ARGUMENT', `seek: offset must be a non-negative integer, got ${where}`);
    }
    const owned = [...this.#parts.values()].filter(
      (st) => st.topic === topic && (target.partition === undefined || st.partition === target.partition),
    );
    if (target.partition === undefined) this.#pendingSeeks.set(partitionKey(topic, -1), where);
    else if (owned.length === 0) this.#pendingSeeks.set(partitionKey(topic, target.partition), where);
    for (const st of owned) {
      const offset = await this.#resolveOffset(st, where);
      this.#seekWhenIdle(st, offset);
    }
  }

  stop(): Promise<void> {
    if (this.#stopPromise) return this.#stopPromise;
    this.#stopping = true;
    this.#enter('stopping');
    this.#loopAbort.abort();
    this.#wakeLoop();
    this.#stopPromise = (async () => {
      try {
        await this.#readyPromise.catch(() => {});
        // Records taken but not started stay uncommitted, so the next owner gets them.
        for (const st of this.#parts.values()) {
          st.runnable = [];
          st.sequential = [];
          for (const lane of st.lanes.values()) clearTimeout(lane.timer);
        }
        const busy = [...this.#parts.values()].filter((st) => st.running > 0);
        const drained = Promise.all(busy.map((st) => this.#whenIdle(st)));
        let timer: NodeJS.Timeout | undefined;
        const graceOver = new Promise<'timeout'>((r) => {
          timer = setTimeout(() => r('timeout'), this.#graceMs);
        });
        if ((await Promise.race([drained, graceOver])) === 'timeout') {
          for (const st of busy) {
            st.gone = true;
            st.abort.abort(new EventlineError('EVENTLINE_ERR_CLOSED', 'the shutdown grace period ran out'));
          }
        }
        clearTimeout(timer);
        clearTimeout(this.#commitRetry);
        clearTimeout(this.#commitTimer);
        await this.#commitNow(undefined);
        // With no offset to commit the commit writes no marks: marks still pending are written here.
        await this.#dedup?.flush().catch(() => {});
        this.#dedup?.close();
        await this.#member.leave();
        logLeft(this.#deps.logger, this.group, this.#member.memberId);
      } catch (err) {
        this.#report(err, {});
      } finally {
        this.#enter('stopped');
        this.#deps.onStopped(this);
        this.#resolveStopped();
      }
    })();
    return this.#stopPromise;
  }
}

function positive(n: number, field: string): number {
  if (!Number.isInteger(n) || n < 1)
    fail('EVENTLINE_ERR_INVALID_ARGUMENT', `subscribe: ${field} must be a positive integer`);
  return n;
}

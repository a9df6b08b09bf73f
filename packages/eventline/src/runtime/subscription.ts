import { setTimeout as sleep } from 'node:timers/promises';
import { partitionKey } from '../engine/assignor.ts';
import type { Engine, FetchedBatch, GroupMember, StoredRecord, TopicPartition } from '../engine/types.ts';
import { EventlineError, fail, isEventlineError } from '../errors.ts';
import { decodeMessage, type Message } from '../message.ts';
import type { Logger } from '../observability/logger.ts';
import type { Topic } from '../topic.ts';
import { type Duration, parseDuration } from '../util/units.ts';
import { type CodecBinder, prepareDecode, type TopicCodecs } from './codecs.ts';
import { type DedupOptions, withBatchDedup, withDedup } from './dedup.ts';

// biome-ignore lint/suspicious/noExplicitAny: a subscription accepts topics of any value and key type
export type AnyTopic = Topic<any, any>;

/** A topic to subscribe to: a declared topic (typed, decoded) or a name (raw bytes values). */
export type TopicInput = AnyTopic | string;

/** The message type a handler receives for a topic input. */
export type MessageOf<T> = T extends Topic<infer V, infer K> ? Message<V, K> : Message<Buffer, string>;

export interface HandlerContext {
  /** Aborted when the partition is taken away or the stop grace period runs out. */
  readonly signal: AbortSignal;
  /** 1 on the first delivery of a record to this member, then 2, 3, … on redeliveries. */
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
  /** Called once per record, in offset order per partition. Throwing means: deliver it again. */
  handler?: (message: MessageOf<T>, context: HandlerContext) => unknown;
  /** Called with up to `maxBatchSize` records of one partition. Throwing redelivers the batch. */
  batchHandler?: (messages: MessageOf<T>[], context: HandlerContext) => unknown;
  /** Where a group with no committed offset starts: the oldest record (true) or new records only. Default false. */
  fromBeginning?: boolean;
  /** How many partitions are processed at once. Order within a partition is always kept. Default 1. */
  concurrency?: number;
  /** Records fetched at once, and the most a batch handler gets. Default 500. */
  maxBatchSize?: number;
  /** A member silent for this long loses its partitions. Default `'10s'`. */
  sessionTimeout?: Duration;
  /** Default a tenth of the session timeout. */
  heartbeatInterval?: Duration;
  /** Wait before delivering a failed record again; doubles per attempt. Default `'200ms'`. */
  redeliveryDelay?: Duration;
  /** Upper bound of the redelivery wait. Default `'30s'`. */
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
}

interface PartitionState extends TopicPartition {
  key: string;
  /** Next offset to commit: one past the last record handled successfully. */
  processed: number | null;
  committed: number | null;
  busy: boolean;
  gone: boolean;
  backoffUntil: number;
  backoffTimer: NodeJS.Timeout | undefined;
  failedOffset: number;
  attempt: number;
  pendingSeek: number | undefined;
  abort: AbortController;
  idle: (() => void)[];
}

export interface SubscriptionDeps {
  engine: Engine;
  codecs: CodecBinder;
  clientId: string;
  logger: Logger;
  onStopped(sub: Subscription): void;
}

export class SubscriptionRunner<T extends TopicInput> implements Subscription {
  readonly group: string;
  readonly #engine: Engine;
  readonly #deps: SubscriptionDeps;
  readonly #codecs = new Map<string, TopicCodecs>();
  readonly #handler: SubscribeOptions<T>['handler'];
  readonly #batchHandler: SubscribeOptions<T>['batchHandler'];
  readonly #onError: (error: Error, info: ErrorInfo) => void;
  readonly #concurrency: number;
  readonly #maxBatch: number;
  readonly #redeliveryMs: number;
  readonly #maxRedeliveryMs: number;
  readonly #graceMs: number;
  readonly #commitIntervalMs: number;
  #lastCommit = 0;
  #commitTimer: NodeJS.Timeout | undefined;
  readonly #member: GroupMember;
  #parts = new Map<string, PartitionState>();
  #ready: [PartitionState, FetchedBatch][] = [];
  #inflight = 0;
  #slotWaiters: (() => void)[] = [];
  #pausedAll = false;
  #pausedTopics = new Set<string>();
  #pausedParts = new Set<string>();
  #pendingSeeks = new Map<string, number | 'earliest' | 'latest' | { timestamp: number }>();
  #stopping = false;
  #stopPromise: Promise<void> | undefined;
  #loopAbort = new AbortController();
  #commitChain: Promise<void> = Promise.resolve();
  #commitQueued = false;
  #commitRetry: NodeJS.Timeout | undefined;
  #readyPromise: Promise<void>;
  #resolveStopped!: () => void;
  readonly stopped: Promise<void>;

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
    const dedup = options.dedup;
    this.#handler =
      dedup && options.handler ? withDedup(options.handler, dedup, options.group) : options.handler;
    this.#batchHandler =
      dedup && options.batchHandler
        ? withBatchDedup(options.batchHandler, dedup, options.group)
        : options.batchHandler;
    for (const t of options.topics) {
      const codecs = deps.codecs.of(t as Topic<unknown, unknown> | string);
      this.#codecs.set(codecs.name, codecs);
    }
    this.#concurrency = positive(options.concurrency ?? 1, 'concurrency');
    this.#maxBatch = positive(options.maxBatchSize ?? 500, 'maxBatchSize');
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
    this.#redeliveryMs = parseDuration(options.redeliveryDelay ?? '200ms', 'redeliveryDelay');
    this.#maxRedeliveryMs = parseDuration(options.maxRedeliveryDelay ?? '30s', 'maxRedeliveryDelay');
    this.#graceMs = parseDuration(options.shutdownGrace ?? '30s', 'shutdownGrace');
    this.#commitIntervalMs = parseDuration(options.commitInterval ?? '100ms', 'commitInterval');
    this.#onError =
      options.onError ??
      ((error, info) =>
        deps.logger.error(
          { err: error, ...info },
          info.offset === undefined ? 'subscription error' : 'delivery failed',
        ));
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
        this.#assigned(tps);
        this.#notify(options.onPartitionsAssigned, tps);
      },
      onRevoked: async (tps) => {
        await this.#revoked(tps);
        this.#notify(options.onPartitionsRevoked, tps);
      },
      onLost: (tps) => this.#lost(tps),
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

  async #start(): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      if (this.#stopping) fail('EVENTLINE_ERR_CLOSED', `subscription of group ${this.group} was stopped`);
      try {
        await this.#member.join();
        break;
      } catch (err) {
        this.#report(err, {});
        if (isEventlineError(err) && !err.retryable) {
          void this.stop();
          throw err;
        }
        await sleep(Math.min(100 * 2 ** attempt, 5000));
      }
    }
    void this.#loop();
  }

  async #loop(): Promise<void> {
    let failures = 0;
    while (!this.#stopping) {
      if (this.#inflight >= this.#concurrency || this.#ready.length > 0) {
        await new Promise<void>((resolve) => this.#slotWaiters.push(resolve));
        continue;
      }
      try {
        const batches = await this.#member.poll({
          maxRecords: this.#maxBatch,
          maxWaitMs: 1000,
          signal: this.#loopAbort.signal,
        });
        failures = 0;
        for (const b of batches) {
          const st = this.#parts.get(partitionKey(b.topic, b.partition));
          if (st === undefined || st.gone) continue;
          st.busy = true;
          this.#member.pause([st]);
          this.#ready.push([st, b]);
        }
        this.#pump();
      } catch (err) {
        if (this.#stopping) break;
        this.#report(err, {});
        await sleep(Math.min(100 * 2 ** failures++, 5000));
      }
    }
  }

  #pump(): void {
    while (this.#inflight < this.#concurrency && this.#ready.length > 0) {
      const [st, batch] = this.#ready.shift()!;
      if (st.gone) {
        this.#settle(st);
        continue;
      }
      this.#inflight++;
      void this.#process(st, batch).finally(() => {
        this.#inflight--;
        this.#settle(st);
        this.#pump();
        this.#wakeLoop();
      });
    }
  }

  #wakeLoop(): void {
    const waiters = this.#slotWaiters;
    this.#slotWaiters = [];
    for (const w of waiters) w();
  }

  /** A partition's batch is done (or dropped): apply a pending seek, unpause, wake revokers. */
  #settle(st: PartitionState): void {
    st.busy = false;
    if (!st.gone && st.pendingSeek !== undefined) {
      this.#member.seek(st, st.pendingSeek);
      st.pendingSeek = undefined;
    }
    if (!st.gone) this.#refreshPause(st);
    const idle = st.idle;
    st.idle = [];
    for (const fn of idle) fn();
  }

  /** Moves a partition's position now, or once the batch it is handling is done. */
  #seekWhenIdle(st: PartitionState, offset: number): void {
    if (st.gone) return;
    if (st.busy) st.pendingSeek = offset;
    else this.#member.seek(st, offset);
  }

  #context(st: PartitionState, attempt: number): HandlerContext {
    return { signal: st.abort.signal, attempt, group: this.group, memberId: this.#member.memberId };
  }

  async #process(st: PartitionState, batch: FetchedBatch): Promise<void> {
    const { records } = batch;
    const codecs = this.#codecs.get(st.topic)!;
    if (records.length === 0) {
      // Only markers were passed: move the committed position past them.
      st.processed = batch.nextOffset;
      this.#scheduleCommit();
      return;
    }
    const schemas = prepareDecode(codecs, records);
    if (schemas !== undefined) await schemas;
    if (this.#batchHandler) {
      const messages: Message<unknown, unknown>[] = [];
      let poison: [StoredRecord, unknown] | undefined;
      for (const r of records) {
        try {
          messages.push(decodeMessage(r, codecs.value, codecs.key));
        } catch (err) {
          poison = [r, err];
          break;
        }
      }
      if (messages.length > 0) {
        const first = messages[0]!.offset;
        const attempt = st.failedOffset === first ? st.attempt + 1 : 1;
        try {
          await this.#batchHandler(messages as MessageOf<T>[], this.#context(st, attempt));
        } catch (err) {
          this.#failed(st, first, err, attempt);
          return;
        }
        // Record progress even when the partition is being revoked: the revoke commits it.
        st.processed = poison === undefined ? batch.nextOffset : messages[messages.length - 1]!.offset + 1;
        st.failedOffset = -1;
        if (st.gone) return;
      }
      if (poison)
        this.#failed(
          st,
          poison[0].offset,
          poison[1],
          st.failedOffset === poison[0].offset ? st.attempt + 1 : 1,
        );
      this.#scheduleCommit();
      return;
    }
    const handler = this.#handler!;
    let failed = false;
    for (const r of records) {
      if (st.gone || this.#stopping) break;
      const attempt = st.failedOffset === r.offset ? st.attempt + 1 : 1;
      let message: Message<unknown, unknown>;
      try {
        message = decodeMessage(r, codecs.value, codecs.key);
        const result = handler(message as MessageOf<T>, this.#context(st, attempt));
        if (
          result !== null &&
          typeof result === 'object' &&
          typeof (result as Promise<unknown>).then === 'function'
        ) {
          await result;
        }
      } catch (err) {
        this.#failed(st, r.offset, err, attempt);
        failed = true;
        break;
      }
      // Record progress even when the partition is being revoked: the revoke commits it.
      st.processed = r.offset + 1;
      st.failedOffset = -1;
    }
    // Handled to the end: commit the batch's position, past any markers that followed its records.
    if (!failed && st.processed === records[records.length - 1]!.offset + 1) st.processed = batch.nextOffset;
    this.#scheduleCommit();
  }

  /** A delivery failed: report it, rewind to the record, and deliver it again after a backoff. */
  #failed(st: PartitionState, offset: number, err: unknown, attempt: number): void {
    if (st.gone) return;
    const wait = Math.min(this.#redeliveryMs * 2 ** (attempt - 1), this.#maxRedeliveryMs);
    st.failedOffset = offset;
    st.attempt = attempt;
    st.pendingSeek = offset;
    st.backoffUntil = Date.now() + wait;
    clearTimeout(st.backoffTimer);
    st.backoffTimer = setTimeout(() => {
      st.backoffUntil = 0;
      if (!st.gone && !st.busy) this.#refreshPause(st);
    }, wait);
    const poison =
      isEventlineError(err, 'EVENTLINE_ERR_DECODE') && err.details.poison === true ? { poison: true } : {};
    this.#report(err, {
      topic: st.topic,
      partition: st.partition,
      offset,
      attempt,
      retryInMs: wait,
      ...poison,
    });
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

  #isPaused(st: PartitionState): boolean {
    return (
      st.busy ||
      st.backoffUntil > 0 ||
      this.#pausedAll ||
      this.#pausedTopics.has(st.topic) ||
      this.#pausedParts.has(st.key)
    );
  }

  #refreshPause(st: PartitionState): void {
    if (this.#isPaused(st)) this.#member.pause([st]);
    else this.#member.resume([st]);
  }

  // ---- group callbacks --------------------------------------------------------------------

  #assigned(tps: TopicPartition[]): void {
    for (const tp of tps) {
      const key = partitionKey(tp.topic, tp.partition);
      const st: PartitionState = {
        ...tp,
        key,
        processed: null,
        committed: null,
        busy: false,
        gone: false,
        backoffUntil: 0,
        backoffTimer: undefined,
        failedOffset: -1,
        attempt: 0,
        pendingSeek: undefined,
        abort: new AbortController(),
        idle: [],
      };
      this.#parts.set(key, st);
      const seek = this.#pendingSeeks.get(key) ?? this.#pendingSeeks.get(partitionKey(tp.topic, -1));
      this.#pendingSeeks.delete(key);
      if (seek !== undefined) {
        void this.#resolveOffset(tp, seek).then(
          (offset) => this.#seekWhenIdle(st, offset),
          (err) => this.#report(err, tp),
        );
      }
      this.#refreshPause(st);
    }
  }

  async #revoked(tps: TopicPartition[]): Promise<void> {
    const states = tps
      .map((tp) => this.#parts.get(partitionKey(tp.topic, tp.partition)))
      .filter((s) => s !== undefined);
    for (const st of states) {
      st.gone = true;
      clearTimeout(st.backoffTimer);
    }
    this.#dropGoneReady();
    await Promise.all(states.map((st) => (st.busy ? new Promise<void>((r) => st.idle.push(r)) : undefined)));
    await this.#commitNow(new Set(states.map((s) => s.key)));
    for (const st of states) this.#parts.delete(st.key);
    this.#wakeLoop();
  }

  #lost(tps: TopicPartition[]): void {
    for (const tp of tps) {
      const st = this.#parts.get(partitionKey(tp.topic, tp.partition));
      if (st === undefined) continue;
      st.gone = true;
      clearTimeout(st.backoffTimer);
      st.abort.abort(
        new EventlineError('EVENTLINE_ERR_FENCED', `${tp.topic}/${tp.partition} was taken away`),
      );
      this.#parts.delete(st.key);
    }
    this.#dropGoneReady();
    this.#report(
      new EventlineError(
        'EVENTLINE_ERR_FENCED',
        `lost ${tps.length} partition(s): this member missed its session timeout`,
      ),
      {},
    );
    this.#wakeLoop();
  }

  /** Batches fetched for partitions that are gone are never started; settling them wakes waiters. */
  #dropGoneReady(): void {
    const dropped = this.#ready.filter(([st]) => st.gone);
    this.#ready = this.#ready.filter(([st]) => !st.gone);
    for (const [st] of dropped) this.#settle(st);
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
    const due = [...this.#parts.values()].filter(
      (st) =>
        st.processed !== null && st.processed !== st.committed && (only === undefined || only.has(st.key)),
    );
    if (due.length === 0) return;
    const offsets = due.map((st) => ({ topic: st.topic, partition: st.partition, offset: st.processed! }));
    try {
      await this.#member.commit(offsets);
      due.forEach((st, i) => {
        st.committed = offsets[i]!.offset;
      });
    } catch (err) {
      this.#report(err, {});
      if (isEventlineError(err) && err.retryable && !this.#stopping) {
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
      st.failedOffset = -1;
      this.#seekWhenIdle(st, offset);
    }
  }

  stop(): Promise<void> {
    if (this.#stopPromise) return this.#stopPromise;
    this.#stopping = true;
    this.#loopAbort.abort();
    this.#wakeLoop();
    this.#stopPromise = (async () => {
      try {
        await this.#readyPromise.catch(() => {});
        // Records fetched but not started are dropped: uncommitted, so the next owner gets them.
        for (const [st] of this.#ready) this.#settle(st);
        this.#ready = [];
        const busy = [...this.#parts.values()].filter((st) => st.busy);
        const drained = Promise.all(busy.map((st) => new Promise<void>((r) => st.idle.push(r))));
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
        for (const st of this.#parts.values()) clearTimeout(st.backoffTimer);
        await this.#commitNow(undefined);
        await this.#member.leave();
      } catch (err) {
        this.#report(err, {});
      } finally {
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

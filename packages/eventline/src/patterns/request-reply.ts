/**
 * Request/reply over topics. A requester publishes a request carrying a correlation id and the
 * name of its own reply topic; a responder (a consumer-group member) handles it, publishes the
 * reply there, and only then lets its offset be committed.
 *
 * Routing: every requester creates a reply topic of its own (one partition) when it starts and
 * deletes it when it closes. Replies need no partition pinning and no group: the requester reads
 * its topic from offset 0 with a plain reader, so a rebalance anywhere never stops replies from
 * arriving (a shared reply topic with a partition per instance needs the instances to agree on
 * who owns which partition, which is the part that breaks under membership changes elsewhere).
 *
 * Exactly one reply: a responder that crashes after replying but before committing handles the
 * request again and replies twice; the requester keeps the first reply and counts the others.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Eventline, HeadersInput } from '../client.ts';
import { type BoundCodec, bytes, type Codec, json } from '../codec.ts';
import type { StoredRecord } from '../engine/types.ts';
import { type ErrorCode, EventlineError, fail, isEventlineError } from '../errors.ts';
import { decodeMessage, type Message } from '../message.ts';
import { prepareDecode } from '../runtime/codecs.ts';
import type { ErrorInfo, HandlerContext, Subscription, SubscriptionState } from '../runtime/subscription.ts';
import { defineTopic, type Topic, validateTopicName } from '../topic.ts';
import { type Duration, parseDuration } from '../util/units.ts';

/** Header names of the protocol. Replies carry the request's correlation id back. */
export const REQUEST_HEADERS = {
  correlationId: 'eventline.correlation-id',
  /** The topic the reply goes to. */
  replyTo: 'eventline.reply-to',
  /** The partition of that topic the reply goes to. */
  replyPartition: 'eventline.reply-partition',
  /** When the requester gives up: milliseconds since the epoch, on the requester's clock. */
  deadline: 'eventline.deadline',
  /** `ok` or `error`. */
  status: 'eventline.reply-status',
  errorCode: 'eventline.error-code',
  errorMessage: 'eventline.error-message',
  errorRetryable: 'eventline.error-retryable',
} as const;

/**
 * The code a requester rejects with when the responder sent a failure reply. Not yet in the
 * errors table: see the report of issue 5 (retryable false; the responder's code is in `details`).
 */
const REMOTE_ERROR: ErrorCode = 'EVENTLINE_ERR_REMOTE';

const DEFAULT_TIMEOUT = '30s';
/** How long finished correlation ids are remembered, to tell duplicate and late replies apart. */
const REMEMBERED = 10_000;

// ---- requester ---------------------------------------------------------------------------------

export interface RequesterOptions {
  /** Default timeout of a request. Default `'30s'`. */
  timeout?: Duration;
  /** Reply topic names start with this. Default `'eventline.replies.'`. */
  replyTopicPrefix?: string;
  /** Retention of the reply topic (left behind only if the process dies). Default `'1h'`. */
  replyRetention?: Duration;
  /** Decodes reply values unless a request names its own. Default: JSON. */
  replyCodec?: Codec<unknown>;
  /**
   * While requests wait, the reply topic is read at least this often. Engines that wake readers
   * (the embedded one) deliver sooner; Kafka readers poll, so this bounds the added latency there.
   * Default `'5ms'`.
   */
  pollInterval?: Duration;
}

export interface RequestOptions<Res, K = string> {
  /** Default: the requester's timeout. */
  timeout?: Duration;
  /** Key of the request record (chooses its partition). */
  key?: K | Buffer | null;
  headers?: HeadersInput;
  /** Decodes the reply value. Default: the requester's reply codec (JSON). */
  replyCodec?: Codec<Res>;
  /** Cancels the request: it rejects with the signal's reason; a reply that comes later is late. */
  signal?: AbortSignal;
}

/** Counters of a requester since it was created. */
export interface RequesterStats {
  /** Requests published. */
  sent: number;
  /** Requests that got their reply (successful or failure replies). */
  replied: number;
  /** Of those, failure replies. */
  failed: number;
  timedOut: number;
  /** Cancelled by their signal or by close(). */
  cancelled: number;
  /** Replies that came after their request timed out or was cancelled: dropped. */
  lateReplies: number;
  /** Further replies to a request that already had one (a responder redelivery): dropped. */
  duplicateReplies: number;
  /** Requests waiting now. */
  pending: number;
}

/** Sends requests and routes their replies back to it. See {@link createRequester}. */
export interface Requester {
  /** The requester's own reply topic; set once started. */
  readonly replyTopic: string | undefined;
  /** Creates the reply topic and starts reading it; `request` calls it on first use. */
  ready(): Promise<void>;
  /**
   * Publishes `payload` to `topic` and resolves with the reply's value. A topic given by name
   * uses JSON for the request.
   *
   * Rejects with EVENTLINE_ERR_TIMEOUT (no reply in time; `details` has topic, correlationId and
   * timeoutMs), EVENTLINE_ERR_REMOTE (a failure reply; `details.code` and `details.message` are
   * the responder's), EVENTLINE_ERR_DECODE (a reply its codec rejects), EVENTLINE_ERR_CLOSED, the
   * signal's reason when aborted, and whatever `publish` throws.
   */
  request<Req, Res = unknown, K = string>(
    topic: Topic<Req, K> | string,
    payload: NoInfer<Req>,
    options?: RequestOptions<Res, NoInfer<K>>,
  ): Promise<Res>;
  stats(): RequesterStats;
  /** Rejects waiting requests with EVENTLINE_ERR_CLOSED and deletes the reply topic. */
  close(): Promise<void>;
}

/** Default start of reply topic names: one topic per requester instance. */
export const REPLY_TOPIC_PREFIX = 'eventline.replies.';

interface Pending {
  topic: string;
  codec: BoundCodec<unknown>;
  /** performance.now() when the request was made. */
  started: number;
  resolve(value: unknown): void;
  reject(err: unknown): void;
}

type Outcome = 'replied' | 'gone';
type Ending = 'replied' | 'timedOut' | 'cancelled';

/**
 * A requester on `bus`. It starts on first use (or `ready()`): it creates its reply topic
 * (`<prefix><clientId>-<random>`, one partition) and reads it. Close it before the bus.
 *
 * Throws EVENTLINE_ERR_INVALID_ARGUMENT for invalid options.
 */
export function createRequester(bus: Eventline, options: RequesterOptions = {}): Requester {
  return new RequesterImpl(bus, options);
}

class RequesterImpl implements Requester {
  readonly #bus: Eventline;
  readonly #timeoutMs: number;
  readonly #pollMs: number;
  readonly #retention: Duration;
  readonly #codec: Codec<unknown>;
  readonly #name: string;
  readonly #pending = new Map<string, Pending>();
  readonly #finished = new Map<string, Outcome>();
  readonly #stop = new AbortController();
  readonly #codecs: ReplyCodecs;
  #started: Promise<void> | undefined;
  #loop: Promise<void> | undefined;
  #closing: Promise<void> | undefined;
  #replyTopic: string | undefined;
  #stats = { sent: 0, replied: 0, failed: 0, timedOut: 0, cancelled: 0, lateReplies: 0, duplicateReplies: 0 };

  constructor(bus: Eventline, options: RequesterOptions) {
    this.#bus = bus;
    this.#timeoutMs = parseDuration(options.timeout ?? DEFAULT_TIMEOUT, 'timeout');
    this.#pollMs = parseDuration(options.pollInterval ?? '5ms', 'pollInterval');
    this.#retention = options.replyRetention ?? '1h';
    parseDuration(this.#retention, 'replyRetention');
    this.#codec = options.replyCodec ?? json();
    const prefix = options.replyTopicPrefix ?? REPLY_TOPIC_PREFIX;
    const client = bus.clientId.replace(/[^a-zA-Z0-9._-]/g, '_').slice(0, 100);
    this.#name = `${prefix}${client}-${randomBytes(6).toString('hex')}`;
    validateTopicName(this.#name);
    this.#codecs = new ReplyCodecs(bus);
  }

  get replyTopic(): string | undefined {
    return this.#replyTopic;
  }

  ready(): Promise<void> {
    if (this.#closing) return Promise.reject(closed('requester'));
    this.#started ??= (async () => {
      await this.#bus.admin.createTopic(this.#name, {
        partitions: 1,
        retention: this.#retention,
        fsync: false,
      });
      // On Kafka a new topic reaches every broker's metadata a moment later.
      await waitForTopic(this.#bus, this.#name, this.#stop.signal);
      this.#replyTopic = this.#name;
      this.#loop = this.#read();
    })();
    this.#started.catch(() => {
      this.#started = undefined;
    });
    return this.#started;
  }

  async request<Req, Res = unknown, K = string>(
    topicInput: Topic<Req, K> | string,
    payload: NoInfer<Req>,
    options: RequestOptions<Res, NoInfer<K>> = {},
  ): Promise<Res> {
    const topic = typeof topicInput === 'string' ? namedTopic<Req, K>(topicInput) : topicInput;
    const timeoutMs =
      options.timeout === undefined ? this.#timeoutMs : parseDuration(options.timeout, 'timeout');
    options.signal?.throwIfAborted();
    await this.ready();
    if (this.#closing) throw closed('requester');
    const id = randomUUID();
    const codec = this.#codecs.of(topic.name, (options.replyCodec ?? this.#codec) as Codec<unknown>);
    const { promise, resolve, reject } = Promise.withResolvers<unknown>();
    const signal = options.signal;
    const onAbort = (): void => this.#settle(id, 'gone', 'cancelled', (p) => p.reject(signal!.reason));
    const timer = setTimeout(() => {
      this.#settle(id, 'gone', 'timedOut', (p) =>
        p.reject(
          new EventlineError(
            'EVENTLINE_ERR_TIMEOUT',
            `request to topic ${topic.name} got no reply within ${timeoutMs} ms (correlation id ${id})`,
            { details: { topic: topic.name, correlationId: id, timeoutMs } },
          ),
        ),
      );
    }, timeoutMs);
    const done = (): void => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
    };
    this.#pending.set(id, {
      topic: topic.name,
      codec,
      started: performance.now(),
      resolve: (v) => {
        done();
        resolve(v);
      },
      reject: (e) => {
        done();
        reject(e);
      },
    });
    signal?.addEventListener('abort', onAbort, { once: true });
    const headers: [string, string | Buffer][] = [
      ...(options.headers === undefined
        ? []
        : Array.isArray(options.headers)
          ? options.headers
          : Object.entries(options.headers)),
      [REQUEST_HEADERS.correlationId, id],
      [REQUEST_HEADERS.replyTo, this.#name],
      [REQUEST_HEADERS.replyPartition, '0'],
      [REQUEST_HEADERS.deadline, String(Date.now() + timeoutMs)],
    ];
    try {
      await this.#bus.publish(topic, payload, {
        headers,
        ...(options.key === undefined ? {} : { key: options.key }),
      });
      this.#stats.sent++;
    } catch (err) {
      // Not stored: no reply can come.
      const p = this.#pending.get(id);
      this.#pending.delete(id);
      p?.reject(err);
    }
    return promise as Promise<Res>;
  }

  /** Ends a waiting request once: remembers how, counts it, and settles its promise. */
  #settle(
    id: string,
    outcome: Outcome,
    counter: Ending,
    settle: (p: Pending) => void,
    result: 'success' | 'failure' = 'success',
  ): void {
    const p = this.#pending.get(id);
    if (p === undefined) return;
    this.#pending.delete(id);
    this.#remember(id, outcome);
    this.#stats[counter]++;
    const metrics = this.#bus.metrics;
    if (counter !== 'cancelled') {
      const label = counter === 'timedOut' ? 'timeout' : result;
      metrics.requestDuration.child(p.topic, label).observe((performance.now() - p.started) / 1000);
      if (counter === 'timedOut') metrics.requestTimeouts.child(p.topic).inc();
    }
    settle(p);
  }

  #remember(id: string, outcome: Outcome): void {
    this.#finished.set(id, outcome);
    if (this.#finished.size > REMEMBERED) this.#finished.delete(this.#finished.keys().next().value!);
  }

  async #read(): Promise<void> {
    const watch = this.#bus.engine.watch();
    const signal = this.#stop.signal;
    let offset = 0;
    let failures = 0;
    while (!signal.aborted) {
      try {
        const records = await this.#bus.engine.fetch(this.#name, 0, offset, { maxRecords: 500 });
        failures = 0;
        for (const r of records) await this.#onReply(r);
        if (records.length > 0) offset = records[records.length - 1]!.offset + 1;
        else await watch.wait(this.#pending.size > 0 ? this.#pollMs : 1000, signal);
      } catch (err) {
        if (signal.aborted) break;
        this.#bus.logger.warn({ err, topic: this.#name }, 'reading replies failed; retrying');
        await sleep(Math.min(50 * 2 ** failures++, 2000), undefined, { signal }).catch(() => {});
      }
    }
  }

  async #onReply(r: StoredRecord): Promise<void> {
    const id = headerOf(r, REQUEST_HEADERS.correlationId);
    if (id === undefined) return;
    const p = this.#pending.get(id);
    if (p === undefined) {
      const duplicate = this.#finished.get(id) === 'replied';
      if (duplicate) this.#stats.duplicateReplies++;
      else this.#stats.lateReplies++;
      this.#bus.metrics.lateReplies.child(duplicate ? 'duplicate' : 'late').inc();
      return;
    }
    let outcome: () => void;
    let result: 'success' | 'failure' = 'success';
    if (headerOf(r, REQUEST_HEADERS.status) === 'error') {
      result = 'failure';
      const err = remoteError(r, p.topic, id);
      outcome = () => {
        this.#stats.failed++;
        p.reject(err);
      };
    } else {
      try {
        const pending = r.value === null ? undefined : p.codec.prepareDecode?.(r.value);
        if (pending !== undefined) await pending;
        const value = r.value === null ? null : p.codec.decode(r.value);
        outcome = () => p.resolve(value);
      } catch (err) {
        const e = new EventlineError(
          'EVENTLINE_ERR_DECODE',
          `the reply to a request to ${p.topic} (correlation id ${id}) is not valid ${p.codec.name}: ${messageOf(err)}`,
          { cause: err, details: { topic: p.topic, correlationId: id } },
        );
        result = 'failure';
        outcome = () => p.reject(e);
      }
    }
    // The request may have timed out while the reply was being decoded.
    if (this.#pending.get(id) === p) this.#settle(id, 'replied', 'replied', outcome, result);
    else {
      this.#stats.lateReplies++;
      this.#bus.metrics.lateReplies.child('late').inc();
    }
  }

  stats(): RequesterStats {
    return { ...this.#stats, pending: this.#pending.size };
  }

  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#stop.abort();
      for (const id of [...this.#pending.keys()]) {
        this.#settle(id, 'gone', 'cancelled', (p) => p.reject(closed('requester')));
      }
      const started = this.#started;
      if (started === undefined) return;
      if (
        await started.then(
          () => true,
          () => false,
        )
      ) {
        await this.#loop;
        await this.#bus.admin.deleteTopic(this.#name).catch((err: unknown) => {
          this.#bus.logger.warn({ err, topic: this.#name }, 'could not delete the reply topic');
        });
      }
    })();
    return this.#closing;
  }
}

// ---- responder ---------------------------------------------------------------------------------

/** What a responder's handler gets besides the request. */
export interface ResponderContext extends HandlerContext {
  /** The request's correlation id; undefined for a record published without one. */
  readonly correlationId: string | undefined;
  /** When the requester gives up (ms since the epoch), when it said. */
  readonly deadline: number | undefined;
  /**
   * Aborted when the partition is taken away, the responder stops, or the deadline passes
   * (nobody waits for the reply any more).
   */
  readonly signal: AbortSignal;
}

export interface RespondOptions<Req, Res, K = string> {
  /** Requests arrive here. A topic given by name carries JSON. */
  topic: Topic<Req, K> | string;
  /** Responders sharing a group share the requests; each request goes to one of them. */
  group: string;
  /**
   * Returns the reply. Throwing sends a failure reply carrying the error's `code` (a string
   * property; `'HANDLER_ERROR'` when it has none), `message` and `retryable` flag, and the request
   * is done; unless the partition was taken away meanwhile, when the next owner handles it again.
   */
  handler: (request: Message<Req, K>, context: ResponderContext) => Res | Promise<Res>;
  /** Encodes replies. Default: JSON. Requesters decode with the same codec. */
  replyCodec?: Codec<Res>;
  /** Where replies to records that name no reply topic go (records from plain publishers). Default: nowhere. */
  replyTopic?: string;
  /**
   * Where a new group starts. Default true: requests published before the first responder
   * joined are answered (those past their deadline are skipped).
   */
  fromBeginning?: boolean;
  /** Partitions handled at once. Default 1. */
  concurrency?: number;
  /** Default `'10s'`: a crashed responder's requests move to another after this long. */
  sessionTimeout?: Duration;
  /** Default: the subscription's (`'100ms'`). A crash in this window means a duplicate reply. */
  commitInterval?: Duration;
  /** Default `'30s'`. */
  shutdownGrace?: Duration;
  /** Told about failed deliveries and replies that could not be sent. Default: the client's logger. */
  onError?: (error: Error, info: ErrorInfo) => void;
  signal?: AbortSignal;
}

/** Counters of a responder since it started. */
export interface ResponderStats {
  /** Requests handed to the handler. */
  handled: number;
  /** Replies sent (successful or failure replies). */
  replied: number;
  /** Of those, failure replies. */
  failed: number;
  /** Requests skipped because their deadline had passed. */
  expired: number;
  /** Replies dropped: their reply topic is gone, or the deadline passed while sending failed. */
  undeliverable: number;
}

/** A running responder: a consumer-group subscription with counters. */
export interface Responder extends Subscription {
  stats(): ResponderStats;
}

/**
 * Answers requests published to `options.topic` (by a requester, or any publisher setting the
 * `eventline.reply-to` header). The responder is a consumer-group member: a request's offset is
 * committed only after its reply was published, so a crash or rebalance delivers it again and
 * the requester keeps the first reply.
 *
 * Throws EVENTLINE_ERR_INVALID_ARGUMENT for invalid options, EVENTLINE_ERR_CLOSED on a closed bus.
 */
export function respond<Req, Res, K = string>(
  bus: Eventline,
  options: RespondOptions<Req, Res, K>,
): Responder {
  if (typeof options.handler !== 'function')
    fail('EVENTLINE_ERR_INVALID_ARGUMENT', 'respond: handler is required');
  if (options.replyTopic !== undefined) validateTopicName(options.replyTopic);
  const topic = typeof options.topic === 'string' ? namedTopic<Req, K>(options.topic) : options.topic;
  const codecs = bus.codecsOf(topic as Topic<unknown, unknown>);
  const replyCodec = new ReplyCodecs(bus).of(topic.name, (options.replyCodec ?? json()) as Codec<unknown>);
  const replyTopics = new Map<string, Topic<Buffer>>();
  const stats: ResponderStats = { handled: 0, replied: 0, failed: 0, expired: 0, undeliverable: 0 };
  const report = (error: Error, info: Omit<ErrorInfo, 'group'>): void => {
    const full = { group: options.group, ...info };
    if (options.onError) options.onError(error, full);
    else bus.logger.error({ err: error, ...full }, 'request/reply: reply not sent');
  };

  const send = async (
    request: Message<Buffer, string>,
    ctx: HandlerContext,
    to: { topic: string; partition: number | undefined; deadline: number | undefined },
    reply: { value: Buffer | null; headers: [string, string][] },
  ): Promise<void> => {
    let target = replyTopics.get(to.topic);
    if (target === undefined) {
      target = defineTopic(to.topic, { value: bytes() });
      if (replyTopics.size >= 1000) replyTopics.clear();
      replyTopics.set(to.topic, target);
    }
    const giveUpAt = to.deadline ?? Date.now() + 30_000;
    for (let attempt = 0; ; attempt++) {
      try {
        await bus.publish(target, reply.value, {
          headers: reply.headers,
          type: `${topic.type}.reply`,
          ...(to.partition === undefined ? {} : { partition: to.partition }),
        });
        stats.replied++;
        return;
      } catch (err) {
        // Taken away meanwhile: the next owner handles the request again and replies.
        if (ctx.signal.aborted) throw err;
        // A reply topic just created elsewhere may not be known here yet: wait for it until the deadline.
        const wait = isEventlineError(err) && (err.retryable || err.code === 'EVENTLINE_ERR_UNKNOWN_TOPIC');
        if (!wait || Date.now() + 50 * 2 ** attempt > giveUpAt) {
          stats.undeliverable++;
          report(err instanceof Error ? err : new Error(String(err)), {
            topic: request.topic,
            partition: request.partition,
            offset: request.offset,
          });
          return;
        }
        await sleep(Math.min(50 * 2 ** attempt, 1000));
      }
    }
  };

  const sub = bus.subscribe({
    group: options.group,
    topics: [topic.name],
    fromBeginning: options.fromBeginning ?? true,
    ...(options.concurrency === undefined ? {} : { concurrency: options.concurrency }),
    ...(options.sessionTimeout === undefined ? {} : { sessionTimeout: options.sessionTimeout }),
    ...(options.commitInterval === undefined ? {} : { commitInterval: options.commitInterval }),
    ...(options.shutdownGrace === undefined ? {} : { shutdownGrace: options.shutdownGrace }),
    ...(options.onError === undefined ? {} : { onError: options.onError }),
    ...(options.signal === undefined ? {} : { signal: options.signal }),
    handler: async (raw, ctx) => {
      const h = raw.headers;
      const correlationId = h[REQUEST_HEADERS.correlationId];
      const deadline = optionalNumber(h[REQUEST_HEADERS.deadline]);
      if (deadline !== undefined && Date.now() > deadline) {
        stats.expired++;
        return;
      }
      const replyTo = h[REQUEST_HEADERS.replyTo] ?? options.replyTopic;
      const to =
        replyTo === undefined
          ? undefined
          : {
              topic: replyTo,
              partition: optionalNumber(h[REQUEST_HEADERS.replyPartition]),
              deadline,
            };
      const headers: [string, string][] =
        correlationId === undefined ? [] : [[REQUEST_HEADERS.correlationId, correlationId]];
      let reply: { value: Buffer | null; headers: [string, string][] };
      stats.handled++;
      try {
        const record: StoredRecord = {
          topic: raw.topic,
          partition: raw.partition,
          offset: raw.offset,
          timestamp: raw.timestamp,
          key: raw.rawKey,
          value: raw.rawValue,
          headers: raw.rawHeaders,
        };
        const schemas = prepareDecode(codecs, [record]);
        if (schemas !== undefined) await schemas;
        const request = decodeMessage(record, codecs.value, codecs.key) as Message<Req, K>;
        const signal =
          deadline === undefined
            ? ctx.signal
            : AbortSignal.any([ctx.signal, AbortSignal.timeout(Math.max(0, deadline - Date.now()))]);
        const result = await options.handler(request, { ...ctx, signal, correlationId, deadline });
        const encoding = replyCodec.prepareEncode?.();
        if (encoding !== undefined) await encoding;
        reply = {
          value: encodeReply(replyCodec, result, topic.name),
          headers: [...headers, [REQUEST_HEADERS.status, 'ok']],
        };
      } catch (err) {
        // Taken away or stopping: not done; the next owner handles it again.
        if (ctx.signal.aborted) throw err;
        // A decode failure that may pass (a registry out of reach): deliver it again.
        if (isEventlineError(err, 'EVENTLINE_ERR_DECODE') && err.retryable) throw err;
        stats.failed++;
        reply = { value: null, headers: [...headers, ...failureHeaders(err)] };
      }
      if (to !== undefined) await send(raw, ctx, to, reply);
    },
  });
  bus.track({ responder: sub });
  return new ResponderImpl(sub, stats);
}

class ResponderImpl implements Responder {
  readonly #sub: Subscription;
  readonly #stats: ResponderStats;

  constructor(sub: Subscription, stats: ResponderStats) {
    this.#sub = sub;
    this.#stats = stats;
  }

  get group(): string {
    return this.#sub.group;
  }

  get stopped(): Promise<void> {
    return this.#sub.stopped;
  }

  ready(): Promise<void> {
    return this.#sub.ready();
  }

  assignment() {
    return this.#sub.assignment();
  }

  pause(targets?: Parameters<Subscription['pause']>[0]): void {
    this.#sub.pause(targets);
  }

  resume(targets?: Parameters<Subscription['resume']>[0]): void {
    this.#sub.resume(targets);
  }

  seek(target: Parameters<Subscription['seek']>[0]): Promise<void> {
    return this.#sub.seek(target);
  }

  stop(): Promise<void> {
    return this.#sub.stop();
  }

  state(): SubscriptionState {
    return this.#sub.state();
  }

  stats(): ResponderStats {
    return { ...this.#stats };
  }
}

// ---- shared ------------------------------------------------------------------------------------

/**
 * Reply codecs bound to a connection. A codec that needs the schema registry registers its
 * schemas under `<request topic>-reply`, the same subject for every requester and responder.
 */
class ReplyCodecs {
  readonly #bus: Eventline;
  readonly #topics = new Map<string, WeakMap<Codec<unknown>, Topic<unknown>>>();

  constructor(bus: Eventline) {
    this.#bus = bus;
  }

  of(requestTopic: string, codec: Codec<unknown>): BoundCodec<unknown> {
    if (codec.bind === undefined) return codec;
    let byCodec = this.#topics.get(requestTopic);
    if (byCodec === undefined) {
      byCodec = new WeakMap();
      this.#topics.set(requestTopic, byCodec);
    }
    let t = byCodec.get(codec);
    if (t === undefined) {
      t = defineTopic(`${requestTopic}-reply`, { value: codec });
      byCodec.set(codec, t);
    }
    return this.#bus.codecsOf(t as Topic<unknown, unknown>).value;
  }
}

const named = new Map<string, Topic<unknown, unknown>>();

/** A topic given by name: default settings, JSON values. */
function namedTopic<V, K>(name: string): Topic<V, K> {
  let t = named.get(name);
  if (t === undefined) {
    t = defineTopic(name) as Topic<unknown, unknown>;
    if (named.size >= 1000) named.clear();
    named.set(name, t);
  }
  return t as Topic<V, K>;
}

async function waitForTopic(bus: Eventline, topic: string, signal: AbortSignal): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    try {
      await bus.reader.offsets(topic);
      return;
    } catch (err) {
      if (!isEventlineError(err, 'EVENTLINE_ERR_UNKNOWN_TOPIC') || attempt >= 50) throw err;
      await sleep(Math.min(20 * 2 ** attempt, 500), undefined, { signal });
    }
  }
}

function encodeReply(codec: Codec<unknown>, value: unknown, topic: string): Buffer {
  try {
    return codec.encode(value);
  } catch (err) {
    if (err instanceof EventlineError) throw err;
    throw new EventlineError(
      'EVENTLINE_ERR_ENCODE',
      `the reply to a request from ${topic} cannot be encoded as ${codec.name}: ${messageOf(err)}`,
      { cause: err, details: { topic } },
    );
  }
}

function failureHeaders(err: unknown): [string, string][] {
  const e = err as { code?: unknown; retryable?: unknown } | null | undefined;
  const code = typeof e?.code === 'string' && e.code.length > 0 ? e.code : 'HANDLER_ERROR';
  return [
    [REQUEST_HEADERS.status, 'error'],
    [REQUEST_HEADERS.errorCode, code],
    // Headers are bytes, but keep them readable in tools: one line, bounded.
    [REQUEST_HEADERS.errorMessage, messageOf(err).slice(0, 4000)],
    [REQUEST_HEADERS.errorRetryable, e?.retryable === true ? 'true' : 'false'],
  ];
}

function remoteError(r: StoredRecord, topic: string, correlationId: string): EventlineError {
  const code = headerOf(r, REQUEST_HEADERS.errorCode) ?? 'HANDLER_ERROR';
  const message = headerOf(r, REQUEST_HEADERS.errorMessage) ?? '';
  return new EventlineError(
    REMOTE_ERROR,
    `the responder to topic ${topic} failed the request (correlation id ${correlationId}): ${code}: ${message}`,
    {
      retryable: headerOf(r, REQUEST_HEADERS.errorRetryable) === 'true',
      details: { topic, correlationId, code, message },
    },
  );
}

function headerOf(r: StoredRecord, name: string): string | undefined {
  let found: Buffer | undefined;
  for (const [n, v] of r.headers) if (n === name) found = v;
  return found?.toString('utf8');
}

function optionalNumber(s: string | undefined): number | undefined {
  if (s === undefined) return undefined;
  const n = Number(s);
  return Number.isFinite(n) ? n : undefined;
}

function closed(what: string): EventlineError {
  return new EventlineError('EVENTLINE_ERR_CLOSED', `this ${what} is closed`);
}

function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

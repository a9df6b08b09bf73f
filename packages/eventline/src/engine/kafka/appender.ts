import { randomUUID } from 'node:crypto';
import {
  type BaseOptions,
  type CompressionAlgorithmValue,
  type MessageToProduce,
  ProduceAcks,
  type ProduceResult,
  Producer,
} from '@platformatic/kafka';
import { EventlineError } from '../../errors.ts';
import { partitionKey } from '../assignor.ts';
import { headerName, recordSize } from '../embedded/batch-format.ts';
import type { AppendRecord, AppendResult, TopicPartition } from '../types.ts';
import { type RecordLimits, validateRecords } from '../validate.ts';
import { wrapKafkaError } from './errors.ts';

/** What the appender needs to know about a topic (cached by the engine). */
export interface TopicLimits extends RecordLimits {
  compression: CompressionAlgorithmValue;
}

/** One append as queued: its records, what it may be split into, and how it settles. */
interface Pending {
  topic: string;
  records: AppendRecord[];
  atomic: boolean;
  resolve(results: AppendResult[]): void;
  reject(err: unknown): void;
}

/**
 * A run of records for one partition that fits one Kafka record batch and is written whole: an
 * atomic single-partition append, or a piece of a non-atomic one.
 */
interface Unit {
  topic: string;
  partition: number;
  records: AppendRecord[];
  bytes: number;
  limits: TopicLimits;
  resolve(results: AppendResult[]): void;
  reject(err: unknown): void;
}

/** Bytes a record takes in a Kafka record batch beyond its key, value and headers (varints, attributes). */
const RECORD_OVERHEAD = 24;
/** A record batch's header. */
const BATCH_OVERHEAD = 61;

const sizeOf = (r: AppendRecord): number => recordSize(r.key, r.value, r.headers) + RECORD_OVERHEAD;

export interface KafkaAppenderOptions {
  clientOptions: BaseOptions;
  /** How long a transaction may stay open; a crashed producer's transaction is aborted after it. */
  transactionTimeoutMs: number;
  limits(topic: string): Promise<TopicLimits>;
  /**
   * Resolves once readers of committed data see these records (best effort, bounded). A broker
   * answers a transaction's commit before it wrote the commit markers, and until then the
   * records are durable but not yet readable.
   */
  visible(written: (TopicPartition & { offset: number })[]): Promise<void>;
}

/**
 * Appends on Kafka with the guarantees of the engine contract: acknowledged means written to all
 * in-sync replicas (idempotent producer, acks=all), and an append is atomic unless it says not.
 *
 * - Records of one append that go to one partition and fit in one record batch are sent by the
 *   idempotent producer: Kafka appends a record batch all or nothing.
 * - Any other atomic append (several partitions, or more than one batch) is written in a Kafka
 *   transaction, which consumers reading committed data see whole or not at all.
 * - A non-atomic append is cut into per-partition runs that each fit a record batch.
 * Appends made in one turn of the event loop share requests (and transactions): group commit.
 * Each request carries one record batch per partition, for every partition at once.
 */
export class KafkaAppender {
  readonly #o: KafkaAppenderOptions;
  #plain: Producer | undefined;
  #transactional: Producer | undefined;
  #queue: Pending[] = [];
  #scheduled = false;
  #transactions: Pending[][] = [];
  #transacting: Promise<void> | undefined;
  #inflight = new Set<Promise<unknown>>();

  constructor(options: KafkaAppenderOptions) {
    this.#o = options;
  }

  append(topic: string, records: AppendRecord[], atomic = true): Promise<AppendResult[]> {
    return new Promise((resolve, reject) => {
      this.#queue.push({ topic, records, atomic, resolve, reject });
      if (!this.#scheduled) {
        this.#scheduled = true;
        setImmediate(() => this.#flush());
      }
    });
  }

  #producer(): Producer {
    this.#plain ??= new Producer<Buffer, Buffer, Buffer, Buffer>({
      ...this.#o.clientOptions,
      idempotent: true,
      acks: ProduceAcks.ALL,
    });
    return this.#plain;
  }

  #transactionalProducer(): Producer {
    // The transaction timeout is the client's request timeout in this client.
    this.#transactional ??= new Producer<Buffer, Buffer, Buffer, Buffer>({
      ...this.#o.clientOptions,
      idempotent: true,
      acks: ProduceAcks.ALL,
      transactionalId: `eventline-${this.#o.clientOptions.clientId}-${randomUUID()}`,
      timeout: this.#o.transactionTimeoutMs,
      // Room for the short waits on CONCURRENT_TRANSACTIONS (see the engine's retryDelay).
      retries: 8,
    });
    return this.#transactional;
  }

  #track<T>(p: Promise<T>): Promise<T> {
    this.#inflight.add(p);
    void p.finally(() => this.#inflight.delete(p)).catch(() => {});
    return p;
  }

  #flush(): void {
    this.#scheduled = false;
    const queue = this.#queue;
    this.#queue = [];
    this.#track(this.#route(queue));
  }

  /** Validates each append on its own, then sends the simple ones and queues the rest for a transaction. */
  async #route(queue: Pending[]): Promise<void> {
    const units: Unit[] = [];
    const transactional: Pending[] = [];
    for (const p of queue) {
      let limits: TopicLimits;
      try {
        limits = await this.#o.limits(p.topic);
        validateRecords(p.topic, limits, p.records);
      } catch (err) {
        p.reject(err);
        continue;
      }
      const first = p.records[0]!.partition;
      if (!p.atomic) units.push(...split(p, limits));
      else if (p.records.every((r) => r.partition === first)) {
        const bytes = p.records.reduce((s, r) => s + sizeOf(r), BATCH_OVERHEAD);
        if (bytes <= limits.maxMessageBytes) units.push({ ...p, partition: first, bytes, limits });
        else transactional.push(p);
      } else transactional.push(p);
    }
    if (transactional.length > 0) {
      this.#transactions.push(transactional);
      this.#transacting ??= this.#track(this.#runTransactions());
    }
    if (units.length > 0) await this.#sendUnits(units);
  }

  /**
   * Sends units with the idempotent producer: per partition, units are packed into record
   * batches within the size limit; each request carries the next batch of every partition, and
   * the next request waits for it, so a partition's batches land in order.
   */
  async #sendUnits(units: Unit[]): Promise<void> {
    for (const round of rounds(units)) {
      for (const [compression, batches] of Map.groupBy(round, (b) => b[0]!.limits.compression)) {
        const all = batches.flat();
        try {
          const result = await this.#producer().send({
            messages: toMessages(all),
            acks: ProduceAcks.ALL,
            compression,
          });
          settleBatches(batches, result);
        } catch (err) {
          const e = wrapKafkaError(err, `publishing to ${[...new Set(all.map((u) => u.topic))].join(', ')}`);
          for (const u of all) u.reject(e);
        }
      }
    }
  }

  /** Transactions run one after the other on the transactional producer; appends queued meanwhile share the next. */
  async #runTransactions(): Promise<void> {
    try {
      while (this.#transactions.length > 0) {
        const batch = this.#transactions.flat();
        this.#transactions = [];
        await this.#transaction(batch);
      }
    } finally {
      this.#transacting = undefined;
    }
  }

  async #transaction(appends: Pending[]): Promise<void> {
    const producer = this.#transactionalProducer();
    let tx: Awaited<ReturnType<Producer['beginTransaction']>> | undefined;
    try {
      const results = new Map<Pending, AppendResult[]>();
      const units: Unit[] = [];
      let missing: unknown;
      for (const p of appends) {
        const out: AppendResult[] = [];
        results.set(p, out);
        // Within a transaction, each partition's records go in batches like a non-atomic append.
        for (const u of split(p, await this.#o.limits(p.topic))) {
          units.push({ ...u, resolve: (r) => out.push(...r), reject: (err) => (missing ??= err) });
        }
      }
      tx = await producer.beginTransaction();
      for (const round of rounds(units)) {
        for (const [compression, batches] of Map.groupBy(round, (b) => b[0]!.limits.compression)) {
          const result = await tx.send({
            messages: toMessages(batches.flat()),
            acks: ProduceAcks.ALL,
            compression,
          });
          settleBatches(batches, result);
          if (missing !== undefined) throw missing;
        }
      }
      await tx.commit();
      const last = new Map<string, TopicPartition & { offset: number }>();
      for (const [p, list] of results) {
        for (const r of list) {
          const k = partitionKey(p.topic, r.partition);
          if ((last.get(k)?.offset ?? -1) < r.offset) last.set(k, { topic: p.topic, ...r });
        }
      }
      // Read-your-writes, as on the embedded engine: resolve once the records can be read.
      await this.#o.visible([...last.values()]).catch(() => {});
      for (const p of appends) p.resolve(restoreOrder(p.records, results.get(p)!));
    } catch (err) {
      if (tx !== undefined && !tx.completed) await tx.abort().catch(() => {});
      // A failed transaction leaves the producer unusable more often than not: an abort that did not
      // reach the coordinator ("already an active transaction"), or sequence numbers that moved on
      // for records never written (OUT_OF_ORDER_SEQUENCE_NUMBER). The next transaction starts a new
      // producer; the coordinator aborts anything left open once the transaction timeout passes.
      this.#transactional = undefined;
      void producer.close().catch(() => {});
      const e = wrapKafkaError(
        err,
        `publishing atomically to ${[...new Set(appends.map((p) => p.topic))].join(', ')}`,
      );
      for (const p of appends) p.reject(e);
    }
  }

  /** Resolves once everything queued so far has been written or has failed. */
  async drain(): Promise<void> {
    while (this.#queue.length > 0 || this.#scheduled || this.#inflight.size > 0) {
      if (this.#inflight.size > 0) await Promise.allSettled([...this.#inflight]);
      else await new Promise((r) => setImmediate(r));
    }
  }

  async close(): Promise<void> {
    await this.drain();
    await Promise.allSettled([this.#plain?.close(), this.#transactional?.close()]);
  }
}

/**
 * Cuts an append into per-partition runs that each fit one record batch. The append settles when
 * every run is written, with results in the order of its records; a run that fails fails it.
 */
function split(p: Pending, limits: TopicLimits): Unit[] {
  const byPartition = new Map<number, AppendRecord[]>();
  for (const r of p.records) {
    const list = byPartition.get(r.partition);
    if (list === undefined) byPartition.set(r.partition, [r]);
    else list.push(r);
  }
  const pieces: Omit<Unit, 'resolve' | 'reject'>[] = [];
  for (const [partition, records] of byPartition) {
    let start = 0;
    let bytes = BATCH_OVERHEAD;
    for (let i = 0; i < records.length; i++) {
      const size = sizeOf(records[i]!);
      if (i > start && bytes + size > limits.maxMessageBytes) {
        pieces.push({ topic: p.topic, partition, records: records.slice(start, i), bytes, limits });
        start = i;
        bytes = BATCH_OVERHEAD;
      }
      bytes += size;
    }
    pieces.push({ topic: p.topic, partition, records: records.slice(start), bytes, limits });
  }
  if (pieces.length === 1) return [{ ...pieces[0]!, resolve: p.resolve, reject: p.reject }];
  const results: AppendResult[] = [];
  let waiting = pieces.length;
  let failed = false;
  return pieces.map((piece) => ({
    ...piece,
    resolve: (r: AppendResult[]) => {
      results.push(...r);
      if (--waiting === 0 && !failed) p.resolve(restoreOrder(p.records, results));
    },
    reject: (err: unknown) => {
      if (!failed) p.reject(err);
      failed = true;
    },
  }));
}

/** Results of one append, gathered per partition, put back in the order of its records. */
function restoreOrder(records: readonly AppendRecord[], results: AppendResult[]): AppendResult[] {
  const next = new Map<number, number>();
  const byPartition = Map.groupBy(results, (r) => r.partition);
  for (const list of byPartition.values()) list.sort((a, b) => a.offset - b.offset);
  return records.map((r) => {
    const i = next.get(r.partition) ?? 0;
    next.set(r.partition, i + 1);
    return byPartition.get(r.partition)![i]!;
  });
}

/**
 * Packs each partition's units, in order, into record batches within the size limit, and lines
 * the batches up in rounds: round k holds the k-th batch of every partition.
 */
function rounds(units: Unit[]): Unit[][][] {
  const out: Unit[][][] = [];
  const put = (k: number, batch: Unit[]): void => {
    const round = out[k];
    if (round === undefined) out[k] = [batch];
    else round.push(batch);
  };
  for (const list of Map.groupBy(units, (u) => partitionKey(u.topic, u.partition)).values()) {
    let k = 0;
    let batch: Unit[] = [];
    let bytes = BATCH_OVERHEAD;
    for (const u of list) {
      if (batch.length > 0 && bytes + u.bytes - BATCH_OVERHEAD > u.limits.maxMessageBytes) {
        put(k++, batch);
        batch = [];
        bytes = BATCH_OVERHEAD;
      }
      batch.push(u);
      bytes += u.bytes - BATCH_OVERHEAD;
    }
    put(k, batch);
  }
  return out;
}

/** Resolves the units of a request from the base offset the broker gave each partition. */
function settleBatches(batches: Unit[][], result: ProduceResult): void {
  const bases = new Map<string, number>();
  for (const o of result.offsets ?? []) bases.set(partitionKey(o.topic, o.partition), Number(o.offset));
  for (const batch of batches) {
    const { topic, partition } = batch[0]!;
    let offset = bases.get(partitionKey(topic, partition)) ?? -1;
    if (offset < 0) {
      const e = new EventlineError(
        'EVENTLINE_ERR_INTERNAL',
        `the broker returned no offset for ${topic}/${partition}`,
      );
      for (const u of batch) u.reject(e);
      continue;
    }
    for (const u of batch) u.resolve(u.records.map(() => ({ partition, offset: offset++ })));
  }
}

function toMessages(units: Unit[]): MessageToProduce[] {
  const out: MessageToProduce[] = [];
  for (const u of units) for (const r of u.records) out.push(toMessage(u.topic, r));
  return out;
}

function toMessage(topic: string, r: AppendRecord): MessageToProduce {
  const headers = new Map<Buffer, Buffer>();
  for (const [name, value] of r.headers) {
    const b = headerName(name);
    // Keys are Buffer objects: a name that repeats, as Kafka allows, needs a distinct one.
    headers.set(headers.has(b) ? Buffer.from(b) : b, value);
  }
  return {
    topic,
    partition: r.partition,
    ...(r.key === null ? {} : { key: r.key }),
    value: r.value as Buffer,
    headers,
    timestamp: BigInt(r.timestamp),
  };
}

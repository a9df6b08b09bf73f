import { randomUUID } from 'node:crypto';
import {
  type BaseOptions,
  type CompressionAlgorithmValue,
  type MessageToProduce,
  ProduceAcks,
  Producer,
} from '@platformatic/kafka';
import { fail } from '../../errors.ts';
import { recordSize } from '../embedded/batch-format.ts';
import type { AppendRecord, AppendResult } from '../types.ts';
import { type RecordLimits, validateRecords } from '../validate.ts';
import { wrapKafkaError } from './errors.ts';

/** What the appender needs to know about a topic (cached by the engine). */
export interface TopicLimits extends RecordLimits {
  compression: CompressionAlgorithmValue;
}

interface Pending {
  topic: string;
  records: AppendRecord[];
  resolve(results: AppendResult[]): void;
  reject(err: unknown): void;
}

/** Bytes a record takes in a Kafka record batch beyond its key, value and headers (varints, attributes). */
const RECORD_OVERHEAD = 24;
/** A record batch's header. */
const BATCH_OVERHEAD = 61;

export interface KafkaAppenderOptions {
  clientOptions: BaseOptions;
  /** How long a transaction may stay open; a crashed producer's transaction is aborted after it. */
  transactionTimeoutMs: number;
  limits(topic: string): Promise<TopicLimits>;
}

/**
 * Appends on Kafka with the guarantees of the engine contract: acknowledged means written to all
 * in-sync replicas (idempotent producer, acks=all), and an append is atomic.
 *
 * - Records of one append that go to one partition and fit in one record batch are sent by the
 *   idempotent producer: Kafka appends a record batch all or nothing.
 * - Any other append (several partitions, or more than one batch) is written in a Kafka
 *   transaction, which consumers reading committed data see whole or not at all.
 * Appends made in one turn of the event loop share requests (and transactions): group commit.
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

  append(topic: string, records: AppendRecord[]): Promise<AppendResult[]> {
    return new Promise((resolve, reject) => {
      this.#queue.push({ topic, records, resolve, reject });
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
    const simple = new Map<string, Pending[]>();
    const atomic: Pending[] = [];
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
      const bytes = p.records.reduce(
        (s, r) => s + recordSize(r.key, r.value, r.headers) + RECORD_OVERHEAD,
        BATCH_OVERHEAD,
      );
      if (p.records.every((r) => r.partition === first) && bytes <= limits.maxMessageBytes) {
        const k = `${p.topic}\u0000${first}`;
        const list = simple.get(k) ?? [];
        list.push(p);
        simple.set(k, list);
      } else atomic.push(p);
    }
    if (atomic.length > 0) {
      this.#transactions.push(atomic);
      this.#transacting ??= this.#track(this.#runTransactions());
    }
    await Promise.all([...simple.values()].map((list) => this.#sendSimple(list)));
  }

  /** One partition's simple appends: as few record batches as the size limit allows, in order. */
  async #sendSimple(list: Pending[]): Promise<void> {
    const topic = list[0]!.topic;
    const limits = await this.#o.limits(topic);
    const chunks: Pending[][] = [];
    let size = BATCH_OVERHEAD;
    for (const p of list) {
      const bytes = p.records.reduce(
        (s, r) => s + recordSize(r.key, r.value, r.headers) + RECORD_OVERHEAD,
        0,
      );
      if (chunks.length === 0 || size + bytes > limits.maxMessageBytes) {
        chunks.push([]);
        size = BATCH_OVERHEAD;
      }
      chunks.at(-1)!.push(p);
      size += bytes;
    }
    // In order: a later chunk never overtakes an earlier one of the same partition.
    for (const chunk of chunks) {
      const records = chunk.flatMap((p) => p.records);
      try {
        const result = await this.#producer().send({
          messages: records.map((r) => toMessage(topic, r)),
          acks: ProduceAcks.ALL,
          compression: limits.compression,
        });
        const base = Number(result.offsets?.[0]?.offset ?? -1);
        if (base < 0) fail('EVENTLINE_ERR_INTERNAL', `the broker returned no offset for ${topic}`);
        let offset = base;
        for (const p of chunk)
          p.resolve(p.records.map((r) => ({ partition: r.partition, offset: offset++ })));
      } catch (err) {
        const e = wrapKafkaError(err, `publishing to ${topic}`);
        for (const p of chunk) p.reject(e);
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
      tx = await producer.beginTransaction();
      const results = new Map<Pending, AppendResult[]>(appends.map((p) => [p, new Array(p.records.length)]));
      // Per topic and partition, in order, in record batches within the size limit.
      const byPartition = new Map<string, { topic: string; partition: number; items: [Pending, number][] }>();
      for (const p of appends) {
        p.records.forEach((r, i) => {
          const k = `${p.topic}\u0000${r.partition}`;
          let g = byPartition.get(k);
          if (g === undefined) {
            g = { topic: p.topic, partition: r.partition, items: [] };
            byPartition.set(k, g);
          }
          g.items.push([p, i]);
        });
      }
      for (const g of byPartition.values()) {
        const limits = await this.#o.limits(g.topic);
        for (let start = 0; start < g.items.length; ) {
          let end = start;
          let size = BATCH_OVERHEAD;
          while (end < g.items.length) {
            const [p, i] = g.items[end]!;
            const r = p.records[i]!;
            const bytes = recordSize(r.key, r.value, r.headers) + RECORD_OVERHEAD;
            if (end > start && size + bytes > limits.maxMessageBytes) break;
            size += bytes;
            end++;
          }
          const items = g.items.slice(start, end);
          const result = await tx.send({
            messages: items.map(([p, i]) => toMessage(g.topic, p.records[i]!)),
            acks: ProduceAcks.ALL,
            compression: limits.compression,
          });
          let offset = Number(result.offsets?.[0]?.offset ?? -1);
          if (offset < 0) fail('EVENTLINE_ERR_INTERNAL', `the broker returned no offset for ${g.topic}`);
          for (const [p, i] of items) results.get(p)![i] = { partition: g.partition, offset: offset++ };
          start = end;
        }
      }
      await tx.commit();
      for (const p of appends) p.resolve(results.get(p)!);
    } catch (err) {
      if (tx !== undefined && !tx.completed) await tx.abort().catch(() => {});
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

function toMessage(topic: string, r: AppendRecord): MessageToProduce {
  const headers = new Map<Buffer, Buffer>();
  // Buffer keys are distinct objects, so a header name may repeat, as Kafka allows.
  for (const [name, value] of r.headers) headers.set(Buffer.from(name), value);
  return {
    topic,
    partition: r.partition,
    ...(r.key === null ? {} : { key: r.key }),
    value: r.value as Buffer,
    headers,
    timestamp: BigInt(r.timestamp),
  };
}

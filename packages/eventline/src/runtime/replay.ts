/**
 * Dead letters as an operator works with them: which dead-letter topics hold records, what those
 * records are, and sending them back to the topic they came from (or another one).
 *
 * What has been replayed is remembered per dead-letter topic, so no dead letter is replayed twice:
 *
 * - The committed offsets of the consumer group `eventline.replay.<dlqTopic>` on the dead-letter
 *   topic: every dead letter below a partition's committed offset has been replayed (the settled
 *   prefix). An unfiltered replay only ever moves these offsets.
 * - Marks in the compacted topic `eventline.replayed.<dlqTopic>`, one per dead letter replayed
 *   beyond that prefix. They exist only when a filter or a limit left earlier dead letters in place:
 *   those are not replayed and keep the prefix where it is, so a later replay still finds them, while
 *   the marks keep it from sending the ones already replayed again. A mark is keyed
 *   `<partition>:<offset>`; once the prefix passes it, it is deleted with a tombstone.
 *
 * Each batch is published, then marked, then committed. A crash between publishing and marking
 * replays that batch again on the next run (at least once, like every consumer); the copies keep
 * their `ce_id`, so a deduplicating consumer drops them. Nothing is ever marked that was not
 * published. Run one replay of a dead-letter topic at a time: two at once may both send a record.
 */
import { createHash } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { EncodedRecord, Eventline } from '../client.ts';
import type { AppendRecord, Engine, PartitionOffsets, StoredRecord } from '../engine/types.ts';
import { type EventlineError, fail, isEventlineError } from '../errors.ts';
import { decodeMessage } from '../message.ts';
import { partitionForKey } from '../partitioner.ts';
import { MAX_TOPIC_NAME_LENGTH, type Topic, validateTopicName } from '../topic.ts';
import { prepareDecode } from './codecs.ts';
import {
  type DeadLetter,
  deadLetterTopic,
  parkingLotTopic,
  parseDeadLetter,
  toReplay,
} from './dead-letter.ts';
import type { TopicInput } from './subscription.ts';

/**
 * Where dead letters are read from: the dead-letter topic of a consumer group and a source topic
 * (or its parking lot), or a dead-letter topic by name. A declared `Topic` (rather than a name) also
 * decodes keys and values with its codecs in `readDeadLetters`.
 */
export type DeadLetterSource<T extends TopicInput = TopicInput> =
  | {
      group: string;
      topic: T;
      /** Read the parking lot (`parking.<group>.<topic>`) instead of the dead-letter topic. Default false. */
      parkingLot?: boolean;
    }
  | { dlqTopic: string; topic?: T };

/** Which dead letters to show or replay. Every given condition must hold. */
export interface DeadLetterFilter {
  /** The error code is one of these (`EVENTLINE_ERR_DECODE`, an application code, an error's name). */
  errorCode?: string | readonly string[];
  /** The error message contains this text, or matches this pattern. */
  message?: string | RegExp;
  /** The original key: UTF-8 text, bytes, or `null` for records without a key. */
  key?: string | Buffer | null;
  /** The original partition. */
  partition?: number;
  /** Original offsets, both ends inclusive. */
  offsets?: { from?: number; to?: number };
  /** Last failed at or after this time (epoch milliseconds, a Date, or ISO 8601 text). */
  since?: number | Date | string;
  /** Last failed before this time. */
  until?: number | Date | string;
  /** Any other test. */
  where?: (dead: DeadLetter) => boolean;
}

/** A dead-letter (or parking-lot) topic and what it holds. */
export interface DeadLetterTopicInfo {
  dlqTopic: string;
  kind: 'dead-letters' | 'parking-lot';
  /** The consumer group and source topic, from the records (from the name while there are none). */
  group: string;
  topic: string;
  /** Dead letters not replayed yet. */
  count: number;
  /** Last failure of the oldest and of the newest of them (ISO 8601); undefined when `count` is 0. */
  oldestFailure: string | undefined;
  newestFailure: string | undefined;
  /** `count` by error code. */
  errorCodes: Record<string, number>;
}

export interface ReadDeadLettersOptions {
  /** At most this many (the oldest first, partition by partition). Default 100. */
  limit?: number;
  filter?: DeadLetterFilter;
  /** Also return dead letters already replayed (`replayed: true`). Default false. */
  includeReplayed?: boolean;
}

type ValueOf<T> = T extends Topic<infer V, infer _K> ? V : unknown;
type KeyOf<T> = T extends Topic<infer _V, infer K> ? K : string;

/** A dead letter as `readDeadLetters` returns it. Its buffers are copies the caller may keep. */
export interface ListedDeadLetter<V = unknown, K = string> extends DeadLetter {
  /** Whether a replay already sent it back. */
  readonly replayed: boolean;
  /** Key and value decoded with the source `Topic`'s codecs; undefined for a topic given by name, or when decoding failed. */
  readonly decoded: { key: K | null; value: V } | undefined;
  /** Why decoding failed (EVENTLINE_ERR_DECODE); often the very reason the record is a dead letter. */
  readonly decodeError: EventlineError | undefined;
}

export type ReplayOptions<T extends TopicInput = TopicInput> = DeadLetterSource<T> & {
  filter?: DeadLetterFilter;
  /** Publish to this topic instead of each dead letter's original topic. */
  to?: TopicInput;
  /** Replay at most this many. Default: all that match. */
  limit?: number;
  /** Count what would be replayed, and where, without publishing or remembering anything. Default false. */
  dryRun?: boolean;
  /** At most this many records per second. Default: as fast as the engine takes them. */
  rate?: number;
  /** Dead letters read and published at once. Default 500. */
  batchSize?: number;
  /** Stops the replay after the batch in flight (which is published and remembered). */
  signal?: AbortSignal;
  /** Called after every batch. */
  onProgress?: (progress: ReplayProgress) => void;
};

export interface ReplayProgress {
  dlqTopic: string;
  /** Dead letters replayed so far (or that would be, in a dry run). */
  replayed: number;
  /** Dead letters looked at and left in place (not matching the filter, or past the limit). */
  skipped: number;
  /** Offsets of the dead-letter topic read so far, past what earlier replays settled. */
  scanned: number;
  /** Offsets there were to read when the replay started: `scanned` reaches it unless stopped early. */
  toScan: number;
}

export interface ReplayResult extends ReplayProgress {
  dryRun: boolean;
  /** Records of the dead-letter topic that are not dead letters; left alone. */
  invalid: number;
  /** Where the replayed records went (or would go), by topic and partition. */
  targets: { topic: string; partition: number; count: number }[];
  /** True when the signal stopped the replay before it was done. */
  stopped: boolean;
}

/** The consumer group whose committed offsets on a dead-letter topic say what has been replayed. */
/** Start of the names of the groups that track replays. */
export const REPLAY_GROUP_PREFIX = 'eventline.replay.';

export function replayGroup(dlqTopic: string): string {
  return `${REPLAY_GROUP_PREFIX}${dlqTopic}`;
}

/** The compacted topic marking dead letters replayed out of order (see the module comment). */
export function replayMarksTopic(dlqTopic: string): string {
  const name = `eventline.replayed.${dlqTopic}`;
  if (name.length <= MAX_TOPIC_NAME_LENGTH) return name;
  return `eventline.replayed.${createHash('sha256').update(dlqTopic).digest('hex')}`;
}

/**
 * Every dead-letter topic (`dlq.*`) and parking lot (`parking.*`) with the number of dead letters
 * not replayed yet, when the oldest and newest of them failed, and their error codes. Reads every
 * pending dead letter's headers, so the counts are exact.
 */
export async function listDeadLetterTopics(bus: Eventline): Promise<DeadLetterTopicInfo[]> {
  const out: DeadLetterTopicInfo[] = [];
  for (const name of await bus.admin.listTopics()) {
    const kind = name.startsWith('dlq.')
      ? 'dead-letters'
      : name.startsWith('parking.')
        ? 'parking-lot'
        : undefined;
    if (kind === undefined) continue;
    const book = await ReplayBook.open(bus, name);
    const info: DeadLetterTopicInfo = {
      dlqTopic: name,
      kind,
      ...namesFrom(name),
      count: 0,
      oldestFailure: undefined,
      newestFailure: undefined,
      errorCodes: {},
    };
    let named = false;
    for (const p of book.partitions) {
      for await (const { items } of scan(bus.engine, book, p, p.committed)) {
        for (const { dead, replayed } of items) {
          if (dead === undefined || replayed) continue;
          if (!named) {
            named = true;
            info.group = dead.group;
            info.topic = dead.original.topic;
          }
          info.count++;
          info.errorCodes[dead.error.code] = (info.errorCodes[dead.error.code] ?? 0) + 1;
          const failed = dead.lastFailure;
          if (info.oldestFailure === undefined || failed < info.oldestFailure) info.oldestFailure = failed;
          if (info.newestFailure === undefined || failed > info.newestFailure) info.newestFailure = failed;
        }
      }
    }
    if (!named) {
      // Nothing pending: name it from any record still stored.
      for (const p of book.partitions) {
        const [first] =
          p.start < p.end ? await bus.engine.fetch(name, p.partition, p.start, { maxRecords: 1 }) : [];
        const dead = first === undefined ? undefined : parseDeadLetter(first);
        if (dead === undefined) continue;
        info.group = dead.group;
        info.topic = dead.original.topic;
        break;
      }
    }
    out.push(info);
  }
  return out;
}

/**
 * Dead letters of a dead-letter topic, oldest first, those not replayed yet unless
 * `includeReplayed`. With a declared `Topic` as the source topic, keys and values are decoded too
 * (a record that does not decode comes back with `decodeError` instead).
 *
 * Throws EVENTLINE_ERR_UNKNOWN_TOPIC when the dead-letter topic does not exist (the group never
 * dead-lettered anything from that topic), EVENTLINE_ERR_INVALID_ARGUMENT for a bad filter or limit.
 */
export async function readDeadLetters<T extends TopicInput = string>(
  bus: Eventline,
  source: DeadLetterSource<T>,
  options: ReadDeadLettersOptions = {},
): Promise<ListedDeadLetter<ValueOf<T>, KeyOf<T>>[]> {
  const limit = positiveInt(options.limit ?? 100, 'limit');
  const matches = compileFilter(options.filter);
  const dlqTopic = dlqTopicOf(source);
  const book = await ReplayBook.open(bus, dlqTopic);
  const declared = source.topic !== undefined && typeof source.topic !== 'string' ? source.topic : undefined;
  const codecs = declared === undefined ? undefined : bus.codecsOf(declared as Topic<unknown, unknown>);
  const out: ListedDeadLetter<ValueOf<T>, KeyOf<T>>[] = [];
  for (const p of book.partitions) {
    const from = options.includeReplayed ? p.start : p.committed;
    for await (const { items } of scan(bus.engine, book, p, from)) {
      const chosen = items.filter(
        (i) => i.dead !== undefined && (options.includeReplayed || !i.replayed) && matches(i.dead),
      );
      if (codecs !== undefined)
        await prepareDecode(
          codecs,
          chosen.map((i) => i.record),
        );
      for (const { record, dead, replayed } of chosen) {
        let decoded: { key: KeyOf<T> | null; value: ValueOf<T> } | undefined;
        let decodeError: EventlineError | undefined;
        if (codecs !== undefined) {
          try {
            const m = decodeMessage(record, codecs.value, codecs.key);
            decoded = { key: m.key as KeyOf<T> | null, value: m.value as ValueOf<T> };
          } catch (err) {
            decodeError = err as EventlineError;
          }
        }
        out.push({ ...copied(dead!), replayed, decoded, decodeError });
        if (out.length >= limit) return out;
      }
    }
  }
  return out;
}

/**
 * Publishes dead letters back to the topic each came from, or to `to`: the original key, value and
 * headers byte for byte, with `eventline.replays` counting the replay (a record that fails again
 * after enough replays goes to the parking lot instead). Keyed records are partitioned by the target
 * topic's partitioner; keyless ones go to their original partition (modulo the target's count).
 *
 * Only dead letters not replayed before are sent, and each is remembered once published, so running
 * a replay again sends nothing twice; a filtered replay leaves the others for a later one (see the
 * module comment for how). A dry run counts and predicts the target partitions, and writes nothing.
 *
 * Throws EVENTLINE_ERR_UNKNOWN_TOPIC when the dead-letter topic or a target topic does not exist,
 * EVENTLINE_ERR_INVALID_ARGUMENT for a bad option, and what publishing throws
 * (EVENTLINE_ERR_MESSAGE_TOO_LARGE, EVENTLINE_ERR_ENGINE_BUSY, …); batches published before such an
 * error stay replayed and remembered.
 */
export async function replayDeadLetters(bus: Eventline, options: ReplayOptions): Promise<ReplayResult> {
  const limit = options.limit === undefined ? Number.POSITIVE_INFINITY : positiveInt(options.limit, 'limit');
  const rate = options.rate;
  if (rate !== undefined && !(typeof rate === 'number' && rate > 0 && Number.isFinite(rate))) {
    fail(
      'EVENTLINE_ERR_INVALID_ARGUMENT',
      `rate must be a positive number of records per second, got ${rate}`,
    );
  }
  const batchSize = Math.min(
    positiveInt(options.batchSize ?? 500, 'batchSize'),
    rate === undefined ? Number.POSITIVE_INFINITY : Math.max(1, Math.floor(rate)),
  );
  const matches = compileFilter(options.filter);
  const dryRun = options.dryRun === true;
  const engine = bus.engine;
  const dlqTopic = dlqTopicOf(options);
  const to =
    options.to === undefined ? undefined : typeof options.to === 'string' ? options.to : options.to.name;
  const counts = new Map<string, number>();
  const partitionsOf = async (topic: string): Promise<number> => {
    let n = counts.get(topic);
    if (n === undefined) {
      n = await engine.partitionCount(topic);
      counts.set(topic, n);
    }
    return n;
  };
  if (to !== undefined) {
    validateTopicName(to);
    await partitionsOf(to);
  }
  const book = await ReplayBook.open(bus, dlqTopic);
  const result: ReplayResult = {
    dlqTopic,
    dryRun,
    replayed: 0,
    skipped: 0,
    scanned: 0,
    toScan: book.partitions.reduce((n, p) => n + (p.end - p.committed), 0),
    invalid: 0,
    targets: [],
    stopped: false,
  };
  const targets = new Map<string, { topic: string; partition: number; count: number }>();
  const started = Date.now();
  let done = false;
  for (const p of book.partitions) {
    if (done) break;
    // The first dead letter left in place: the settled prefix can grow up to it, not past it.
    let frontier: number | undefined;
    let position = p.committed;
    for await (const { items, next } of scan(engine, book, p, p.committed, batchSize)) {
      const batches = new Map<string, EncodedRecord[]>();
      const replayed: number[] = [];
      for (const { record, dead, replayed: before } of items) {
        if (before) continue;
        if (dead === undefined) {
          result.invalid++;
          continue;
        }
        if (result.replayed + replayed.length >= limit || !matches(dead)) {
          result.skipped++;
          frontier ??= record.offset;
          continue;
        }
        const topic = to ?? dead.original.topic;
        const count = await partitionsOf(topic);
        const partition =
          dead.key === null ? dead.original.partition % count : partitionForKey(dead.key, count);
        const replay: AppendRecord = toReplay(dead, partition);
        const id = dead.headers.find(([name]) => name === 'ce_id')?.[1].toString('utf8') ?? '';
        let batch = batches.get(topic);
        if (batch === undefined) {
          batch = [];
          batches.set(topic, batch);
        }
        batch.push({ ...replay, id });
        replayed.push(record.offset);
        const where = `${topic}\u0000${partition}`;
        const target = targets.get(where) ?? { topic, partition, count: 0 };
        target.count++;
        targets.set(where, target);
      }
      if (!dryRun) {
        for (const [topic, records] of batches) await bus.appendEncoded(topic, records);
        await book.settle(p, frontier ?? next, replayed);
        bus.metrics.replayed.child(dlqTopic).inc(replayed.length);
      }
      result.replayed += replayed.length;
      result.scanned += next - position;
      position = next;
      options.onProgress?.({
        dlqTopic,
        replayed: result.replayed,
        skipped: result.skipped,
        scanned: result.scanned,
        toScan: result.toScan,
      });
      if (result.replayed >= limit) {
        done = true;
        break;
      }
      if (options.signal?.aborted) {
        result.stopped = true;
        done = true;
        break;
      }
      if (rate !== undefined && replayed.length > 0) {
        const wait = started + (result.replayed / rate) * 1000 - Date.now();
        if (wait > 0) await sleep(wait, undefined, { signal: options.signal }).catch(() => {});
      }
    }
  }
  result.targets = [...targets.values()].sort((a, b) =>
    a.topic === b.topic ? a.partition - b.partition : a.topic < b.topic ? -1 : 1,
  );
  return result;
}

/** The dead-letter topic a source names. */
function dlqTopicOf(source: DeadLetterSource): string {
  if ('dlqTopic' in source) {
    validateTopicName(source.dlqTopic);
    return source.dlqTopic;
  }
  if (typeof source.group !== 'string' || source.group === '') {
    fail('EVENTLINE_ERR_INVALID_ARGUMENT', 'the consumer group must be a non-empty string');
  }
  const topic = typeof source.topic === 'string' ? source.topic : source.topic.name;
  validateTopicName(topic);
  return source.parkingLot ? parkingLotTopic(source.group, topic) : deadLetterTopic(source.group, topic);
}

/** Group and topic guessed from a name like `dlq.<group>.<topic>` (group names may hold dots too). */
function namesFrom(name: string): { group: string; topic: string } {
  const rest = name.slice(name.indexOf('.') + 1);
  const dot = rest.indexOf('.');
  return dot < 0 ? { group: rest, topic: '' } : { group: rest.slice(0, dot), topic: rest.slice(dot + 1) };
}

interface PartitionBook extends PartitionOffsets {
  /** Dead letters below this offset have been replayed. */
  committed: number;
  /** Offsets at or past `committed` replayed out of order. */
  marks: Set<number>;
}

/** What has been replayed from one dead-letter topic: committed offsets plus marks. */
class ReplayBook {
  readonly #bus: Eventline;
  readonly #engine: Engine;
  readonly dlqTopic: string;
  readonly partitions: PartitionBook[];
  readonly #marksTopic: string;
  #marksTopicExists: boolean;

  private constructor(bus: Eventline, dlqTopic: string, partitions: PartitionBook[], marksExist: boolean) {
    this.#bus = bus;
    this.#engine = bus.engine;
    this.dlqTopic = dlqTopic;
    this.partitions = partitions;
    this.#marksTopic = replayMarksTopic(dlqTopic);
    this.#marksTopicExists = marksExist;
  }

  static async open(bus: Eventline, dlqTopic: string): Promise<ReplayBook> {
    const engine = bus.engine;
    let offsets: PartitionOffsets[];
    try {
      offsets = await engine.listOffsets(dlqTopic);
    } catch (err) {
      if (!isEventlineError(err, 'EVENTLINE_ERR_UNKNOWN_TOPIC')) throw err;
      fail(
        'EVENTLINE_ERR_UNKNOWN_TOPIC',
        `there are no dead letters in ${dlqTopic}: the topic does not exist`,
        {
          cause: err,
          details: { topic: dlqTopic },
        },
      );
    }
    const committed = new Map<number, number>();
    for (const o of await engine.groupOffsets(replayGroup(dlqTopic))) {
      if (o.topic === dlqTopic) committed.set(o.partition, o.offset);
    }
    const marks = await readMarks(engine, replayMarksTopic(dlqTopic));
    const partitions = offsets.map((o) => ({
      ...o,
      committed: Math.min(Math.max(committed.get(o.partition) ?? o.start, o.start), o.end),
      marks: marks?.get(o.partition) ?? new Set<number>(),
    }));
    return new ReplayBook(bus, dlqTopic, partitions, marks !== undefined);
  }

  isReplayed(p: PartitionBook, offset: number): boolean {
    return offset < p.committed || p.marks.has(offset);
  }

  /**
   * Remembers dead letters of a partition as replayed: marks for those at or past `frontier`, then
   * the committed offset moved to `frontier`, then tombstones for marks the prefix has passed.
   */
  async settle(p: PartitionBook, frontier: number, replayed: readonly number[]): Promise<void> {
    const now = Date.now();
    const mark = (offset: number, value: Buffer | null): AppendRecord => ({
      partition: 0,
      key: Buffer.from(`${p.partition}:${offset}`),
      value,
      headers: [],
      timestamp: now,
    });
    const ahead = replayed.filter((o) => o >= frontier);
    if (ahead.length > 0) {
      await this.#ensureMarksTopic();
      await this.#engine.append(
        this.#marksTopic,
        ahead.map((o) => mark(o, Buffer.from(new Date(now).toISOString()))),
      );
      for (const o of ahead) p.marks.add(o);
    }
    if (frontier > p.committed) {
      await this.#engine.setGroupOffsets(replayGroup(this.dlqTopic), [
        { topic: this.dlqTopic, partition: p.partition, offset: frontier },
      ]);
      p.committed = frontier;
    }
    const passed = [...p.marks].filter((o) => o < p.committed);
    if (passed.length > 0) {
      await this.#engine.append(
        this.#marksTopic,
        passed.map((o) => mark(o, null)),
      );
      for (const o of passed) p.marks.delete(o);
    }
  }

  async #ensureMarksTopic(): Promise<void> {
    if (this.#marksTopicExists) return;
    // One partition: a replay reads every mark at its start. Compacted: tombstones clear passed marks.
    await this.#bus.admin.createTopic(this.#marksTopic, {
      partitions: 1,
      cleanupPolicy: 'compact',
      retention: 'forever',
    });
    this.#marksTopicExists = true;
  }
}

/** The marks of a marks topic by partition; undefined when the topic does not exist. */
async function readMarks(engine: Engine, topic: string): Promise<Map<number, Set<number>> | undefined> {
  let bounds: PartitionOffsets[];
  try {
    bounds = await engine.listOffsets(topic);
  } catch (err) {
    if (isEventlineError(err, 'EVENTLINE_ERR_UNKNOWN_TOPIC')) return undefined;
    throw err;
  }
  const marks = new Map<number, Set<number>>();
  for (const b of bounds) {
    for (let offset = b.start; offset < b.end; ) {
      const records = await engine.fetch(topic, b.partition, offset, { maxRecords: 5000 });
      if (records.length === 0) break;
      for (const r of records) {
        const [partition, at] = (r.key?.toString('utf8') ?? '').split(':').map(Number);
        if (!Number.isInteger(partition) || !Number.isInteger(at)) continue;
        let set = marks.get(partition!);
        if (set === undefined) {
          set = new Set();
          marks.set(partition!, set);
        }
        if (r.value === null) set.delete(at!);
        else set.add(at!);
      }
      offset = records[records.length - 1]!.offset + 1;
    }
  }
  return marks;
}

interface Scanned {
  record: StoredRecord;
  /** Undefined for a record that is not a dead letter. */
  dead: DeadLetter | undefined;
  replayed: boolean;
}

/**
 * Reads one partition of a dead-letter topic from `from` up to the end it had when the book was
 * opened, a chunk at a time. `next` is where the following chunk starts (the end once done).
 */
async function* scan(
  engine: Engine,
  book: ReplayBook,
  p: PartitionBook,
  from: number,
  chunk = 500,
): AsyncGenerator<{ items: Scanned[]; next: number }> {
  for (let position = from; position < p.end; ) {
    const records = await engine.fetch(book.dlqTopic, p.partition, position, { maxRecords: chunk });
    const items: Scanned[] = [];
    for (const record of records) {
      if (record.offset >= p.end) break;
      items.push({ record, dead: parseDeadLetter(record), replayed: book.isReplayed(p, record.offset) });
    }
    // No records, or only records written since the start: the rest are gone or not ours to read
    // (Kafka's transaction markers take offsets too).
    const last = items.at(-1);
    position = last === undefined || items.length < records.length ? p.end : last.record.offset + 1;
    yield { items, next: position };
  }
}

function positiveInt(value: unknown, name: string): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1) {
    fail('EVENTLINE_ERR_INVALID_ARGUMENT', `${name} must be a positive integer, got ${String(value)}`);
  }
  return value;
}

function timeOf(value: number | Date | string, name: string): number {
  const ms = value instanceof Date ? value.getTime() : typeof value === 'string' ? Date.parse(value) : value;
  if (typeof ms !== 'number' || !Number.isFinite(ms)) {
    fail('EVENTLINE_ERR_INVALID_ARGUMENT', `filter.${name}: cannot read ${String(value)} as a time`);
  }
  return ms;
}

/** Turns a filter into a test, checking it once. */
export function compileFilter(filter: DeadLetterFilter = {}): (dead: DeadLetter) => boolean {
  const tests: ((d: DeadLetter) => boolean)[] = [];
  const { errorCode, message, key, partition, offsets, since, until, where } = filter;
  if (errorCode !== undefined) {
    const codes = new Set(typeof errorCode === 'string' ? [errorCode] : errorCode);
    tests.push((d) => codes.has(d.error.code));
  }
  if (message instanceof RegExp) {
    // A fresh copy: a global pattern's lastIndex would otherwise carry from one record to the next.
    const pattern = new RegExp(message.source, message.flags.replace(/[gy]/g, ''));
    tests.push((d) => pattern.test(d.error.message));
  } else if (typeof message === 'string') {
    tests.push((d) => d.error.message.includes(message));
  }
  if (key !== undefined) {
    const bytes = key === null ? null : Buffer.isBuffer(key) ? key : Buffer.from(key, 'utf8');
    tests.push((d) => (bytes === null ? d.key === null : d.key !== null && bytes.equals(d.key)));
  }
  if (partition !== undefined) tests.push((d) => d.original.partition === partition);
  if (offsets !== undefined) {
    const from = offsets.from ?? 0;
    const to = offsets.to ?? Number.POSITIVE_INFINITY;
    tests.push((d) => d.original.offset >= from && d.original.offset <= to);
  }
  const failedAt = (d: DeadLetter): number => {
    const ms = Date.parse(d.lastFailure);
    return Number.isFinite(ms) ? ms : d.at.timestamp;
  };
  if (since !== undefined) {
    const ms = timeOf(since, 'since');
    tests.push((d) => failedAt(d) >= ms);
  }
  if (until !== undefined) {
    const ms = timeOf(until, 'until');
    tests.push((d) => failedAt(d) < ms);
  }
  if (where !== undefined) tests.push(where);
  return (d) => tests.every((t) => t(d));
}

/** A dead letter with its buffers copied out of the fetched block they may share. */
function copied(d: DeadLetter): DeadLetter {
  const copy = (b: Buffer | null): Buffer | null => (b === null ? null : Buffer.from(b));
  return {
    ...d,
    key: copy(d.key),
    value: copy(d.value),
    headers: d.headers.map(([name, v]) => [name, Buffer.from(v)] as const),
  };
}

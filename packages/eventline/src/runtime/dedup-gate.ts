/**
 * The consumer runtime's dedup (`subscribe({ dedup })`). Ids are handled as bytes, a fetched batch
 * at a time, not as a string per record: event ids are time-ordered (UUIDv7), so a batch of new
 * records is usually answered by its id range alone, and its ids are marked by copying their bytes.
 * Strings and sets are made only when ranges overlap (ids of several partitions interleave, random
 * ids, replays, duplicates).
 */
import type { StoredRecord } from '../engine/types.ts';
import type { Message } from '../message.ts';
import { parseDuration } from '../util/units.ts';
import { type DedupOptions, type DedupStore, dedupTtl, eventIdOf, hasMany, markMany } from './dedup.ts';

/**
 * What a store may offer the consumer runtime beyond {@link DedupStore} (the SQLite store does): a
 * lookup that needs a batch's ids only when marks lie within their range, and marks written from
 * the ids' bytes.
 */
export interface BatchMarkStore extends DedupStore {
  /** The ids `group` marked among `ids()`, all of which lie within [low, high]. */
  hasInRange(group: string, low: string, high: string, ids: () => readonly string[]): Promise<Set<string>>;
  /**
   * Marks the ids in `bytes` (Latin-1, each followed by a newline; none holds one), all within
   * [low, high], durably before it resolves.
   */
  markBytes(
    group: string,
    bytes: Buffer,
    count: number,
    low: string,
    high: string,
    ttlMs: number,
  ): Promise<void>;
}

function isBatchMarkStore(store: DedupStore): store is BatchMarkStore {
  const s = store as Partial<BatchMarkStore>;
  return typeof s.hasInRange === 'function' && typeof s.markBytes === 'function';
}

const CE_ID = 'ce_id';
const NEWLINE = 0x0a;

/**
 * The `ce_id`s of one fetched batch of records: copied back to back into one buffer (where the
 * engine can copy a header out), with the range they span and whether each sorts after the one
 * before (then no id repeats within the batch). A string is made for an id only when asked for.
 */
export class BatchIds {
  readonly #records: readonly StoredRecord[];
  #bytes: Buffer;
  /** Where record i's id lies in `#bytes`; `#starts[i]` is -1 when it has none. */
  readonly #starts: Int32Array;
  readonly #ends: Int32Array;
  #strings: (string | undefined)[] | undefined;
  /** Records whose id holds a newline (which marks written as bytes cannot): marked as strings. */
  #odd: Set<number> | undefined;
  /** Records that have an id. */
  readonly count: number;
  /** The smallest and the largest id, as SQLite compares text ('' when `count` is 0). */
  readonly low: string;
  readonly high: string;
  /** Each id sorts after the one before it: the batch holds no id twice. */
  readonly ordered: boolean;
  /** The gate's bookkeeping: the marks this batch last added ids to, and when it was last found clear. */
  marks: Marks | undefined;
  clearAt = -1;

  constructor(records: readonly StoredRecord[]) {
    const n = records.length;
    this.#records = records;
    this.#starts = new Int32Array(n);
    this.#ends = new Int32Array(n);
    this.#bytes = Buffer.allocUnsafe(n * 40 + 64);
    let at = 0;
    let count = 0;
    let low = -1;
    let high = -1;
    let previous = -1;
    let ordered = true;
    for (let i = 0; i < n; i++) {
      const length = this.#gather(records[i]!, i, at);
      if (length < 0) {
        this.#starts[i] = -1;
        continue;
      }
      this.#starts[i] = at;
      this.#ends[i] = at + length;
      at += length;
      count++;
      if (previous < 0) {
        low = i;
        high = i;
      } else if (ordered && this.#compare(i, previous) > 0) {
        // The common case: each id after the last, so it is the largest so far.
        high = i;
      } else {
        ordered = false;
        if (this.#compare(i, low) < 0) low = i;
        else if (this.#compare(i, high) > 0) high = i;
      }
      previous = i;
    }
    this.count = count;
    this.ordered = ordered;
    this.low = low < 0 ? '' : this.#text(low);
    this.high = high < 0 ? '' : this.#text(high);
    if (this.#bytes.subarray(0, at).indexOf(NEWLINE) >= 0) {
      this.#odd = new Set();
      for (let i = 0; i < n; i++) {
        const start = this.#starts[i]!;
        if (start >= 0 && this.#bytes.subarray(start, this.#ends[i]).indexOf(NEWLINE) >= 0) this.#odd.add(i);
      }
    }
  }

  /** Copies record i's id to `#bytes` at `at`; its length, or -1 when it has none. */
  #gather(r: StoredRecord, i: number, at: number): number {
    if (r.copyHeader !== undefined) {
      let length = r.copyHeader(CE_ID, this.#bytes, at);
      while (length === -2) {
        this.#grow(at);
        length = r.copyHeader(CE_ID, this.#bytes, at);
      }
      return length;
    }
    const id = eventIdOf(r);
    if (id === undefined) return -1;
    this.#strings ??= [];
    this.#strings[i] = id;
    while (at + id.length > this.#bytes.length) this.#grow(at);
    return this.#bytes.write(id, at, 'latin1');
  }

  #grow(used: number): void {
    const bigger = Buffer.allocUnsafe(this.#bytes.length * 2);
    this.#bytes.copy(bigger, 0, 0, used);
    this.#bytes = bigger;
  }

  /** Compares the ids of records i and j byte by byte (as SQLite compares text). */
  #compare(i: number, j: number): number {
    const b = this.#bytes;
    let x = this.#starts[i]!;
    let y = this.#starts[j]!;
    const xEnd = this.#ends[i]!;
    const yEnd = this.#ends[j]!;
    for (; x < xEnd && y < yEnd; x++, y++) {
      const d = b[x]! - b[y]!;
      if (d !== 0) return d;
    }
    return xEnd - x - (yEnd - y);
  }

  #text(i: number): string {
    return this.#bytes.toString('latin1', this.#starts[i], this.#ends[i]);
  }

  /** Where the record at this offset is in the batch, or -1. Offsets ascend within a batch. */
  indexOf(offset: number): number {
    const records = this.#records;
    const guess = offset - records[0]!.offset;
    if (records[guess]?.offset === offset) return guess;
    let lo = 0;
    let hi = records.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const o = records[mid]!.offset;
      if (o === offset) return mid;
      if (o < offset) lo = mid + 1;
      else hi = mid - 1;
    }
    return -1;
  }

  /** True when record i has an id. */
  has(i: number): boolean {
    return i >= 0 && i < this.#starts.length && this.#starts[i]! >= 0;
  }

  /** The id of the record at this offset, or undefined. */
  idAt(offset: number): string | undefined {
    return this.id(this.indexOf(offset));
  }

  /** The id of record i (made into a string now, once), or undefined. */
  id(i: number): string | undefined {
    if (!this.has(i)) return undefined;
    this.#strings ??= [];
    let id = this.#strings[i];
    if (id === undefined) {
      id = this.#text(i);
      this.#strings[i] = id;
    }
    return id;
  }

  /** Every id of the batch, in record order. */
  ids(): string[] {
    const out: string[] = [];
    for (let i = 0; i < this.#records.length; i++) {
      const id = this.id(i);
      if (id !== undefined) out.push(id);
    }
    return out;
  }

  /** True when record i's id holds a newline. */
  odd(i: number): boolean {
    return this.#odd?.has(i) === true;
  }

  /** Copies record i's id and a newline into `out` at `at`; returns where the next one goes. */
  copyId(i: number, out: Buffer, at: number): number {
    const b = this.#bytes;
    const end = this.#ends[i]!;
    for (let k = this.#starts[i]!; k < end; k++) out[at++] = b[k]!;
    out[at++] = NEWLINE;
    return at;
  }

  /** The room record i's id and its newline take. */
  idSize(i: number): number {
    return this.#ends[i]! - this.#starts[i]! + 1;
  }
}

/**
 * Handled ids whose marks are not written yet: their bytes, and the batches they came from with
 * the range those span. An id outside every such batch's range cannot be here; a set of them is
 * made only once an id inside is asked about.
 */
class Marks {
  #bytes = Buffer.allocUnsafe(64 * 1024);
  #at = 0;
  /** Ids in `#bytes`. */
  count = 0;
  /** Ids holding a newline, kept as strings. */
  readonly odd: string[] = [];
  readonly from: BatchIds[] = [];
  low = '';
  high = '';
  #set: Set<string> | undefined;

  get size(): number {
    return this.count + this.odd.length;
  }

  /** Adds record i of `batch`; true when the batch is new here (the ranges grew). */
  add(batch: BatchIds, i: number): boolean {
    let added = false;
    if (batch.marks !== this) {
      batch.marks = this;
      this.#include(batch);
      added = true;
    }
    if (batch.odd(i)) this.odd.push(batch.id(i)!);
    else {
      const size = batch.idSize(i);
      if (this.#at + size > this.#bytes.length) this.#grow(this.#at + size);
      this.#at = batch.copyId(i, this.#bytes, this.#at);
      this.count++;
    }
    this.#set?.add(batch.id(i)!);
    return added;
  }

  #include(batch: BatchIds): void {
    this.from.push(batch);
    if (this.from.length === 1) {
      this.low = batch.low;
      this.high = batch.high;
    } else {
      if (batch.low < this.low) this.low = batch.low;
      if (batch.high > this.high) this.high = batch.high;
    }
  }

  #grow(needed: number): void {
    let size = this.#bytes.length * 2;
    while (size < needed) size *= 2;
    const bigger = Buffer.allocUnsafe(size);
    this.#bytes.copy(bigger, 0, 0, this.#at);
    this.#bytes = bigger;
  }

  /** Takes over the ids of marks that could not be written. */
  absorb(failed: Marks): void {
    if (failed.count > 0) {
      if (this.#at + failed.#at > this.#bytes.length) this.#grow(this.#at + failed.#at);
      failed.#bytes.copy(this.#bytes, this.#at, 0, failed.#at);
      this.#at += failed.#at;
      this.count += failed.count;
    }
    this.odd.push(...failed.odd);
    for (const batch of failed.from) {
      batch.marks = this;
      this.#include(batch);
    }
    this.#set = undefined;
  }

  /** The ids written as bytes, each followed by a newline. */
  bytes(): Buffer {
    return this.#bytes.subarray(0, this.#at);
  }

  /** Every id, as strings. */
  ids(): string[] {
    const text = this.#bytes.toString('latin1', 0, this.#at);
    const ids = text.length === 0 ? [] : text.slice(0, -1).split('\n');
    return ids.concat(this.odd);
  }

  has(id: string): boolean {
    if (this.size === 0 || id < this.low || id > this.high) return false;
    this.#set ??= new Set(this.ids());
    return this.#set.has(id);
  }

  /** True when a batch other than `except` that added ids here spans some of [low, high]. */
  overlaps(low: string, high: string, except?: BatchIds): boolean {
    if (this.size === 0 || low > this.high || high < this.low) return false;
    for (const batch of this.from) {
      if (batch !== except && low <= batch.high && high >= batch.low) return true;
    }
    return false;
  }
}

/**
 * The consumer runtime's dedup: one store lookup per fetched batch before any handler runs, and
 * the ids of handled records marked in batches: within `markDelay` of their handler (or once 1000
 * wait), and always before the offsets that cover them are committed (the runtime awaits `flush()`
 * before each commit). A crash can therefore repeat only a record handled in that last moment;
 * `processOnce` of the SQL stores leaves no window at all.
 */
export class DedupGate {
  readonly #store: DedupStore;
  readonly #group: string;
  readonly #ttlMs: number;
  readonly #delayMs: number;
  readonly onDuplicate: ((message: Message<unknown, unknown>) => void) | undefined;
  /** Handled, not yet handed to a flush. */
  #pending = new Marks();
  /** Being marked by the flush in progress. */
  #writing: Marks | undefined;
  /** Moves on whenever the batches behind the unwritten marks change (see `repeat`). */
  #version = 0;
  #inFlight: Promise<void> | undefined;
  /** A flush asked for while one runs: it starts when that one ends and takes all that is pending. */
  #queued: Promise<void> | undefined;
  #timer: NodeJS.Timeout | undefined;
  #failure: unknown;

  constructor(options: DedupOptions, group: string) {
    this.#store = options.store;
    this.#group = group;
    this.#ttlMs = dedupTtl(options);
    this.#delayMs = parseDuration(options.markDelay ?? '2ms', 'dedup.markDelay');
    this.onDuplicate = options.onDuplicate;
  }

  /** The ids of a fetched batch that were processed already (marked, or handled and about to be). */
  async seen(batch: BatchIds): Promise<Set<string>> {
    if (batch.count === 0) return new Set();
    const store = this.#store;
    const found = isBatchMarkStore(store)
      ? await store.hasInRange(this.#group, batch.low, batch.high, () => batch.ids())
      : await hasMany(store, this.#group, batch.ids());
    const writing = this.#writing;
    if (this.#pending.overlaps(batch.low, batch.high) || writing?.overlaps(batch.low, batch.high) === true) {
      for (const id of batch.ids()) {
        if (this.#pending.has(id) || writing?.has(id) === true) found.add(id);
      }
    }
    return found;
  }

  /**
   * True when the record at `offset` of `batch` repeats an id handled since the batch was fetched
   * whose mark is still on its way. A batch holding no id twice, whose range no other batch behind
   * the unwritten marks spans, is answered without looking at its id; the answer holds until those
   * batches change.
   */
  repeat(batch: BatchIds, offset: number): boolean {
    if (batch.clearAt === this.#version) return false;
    const writing = this.#writing;
    if (
      batch.ordered &&
      !this.#pending.overlaps(batch.low, batch.high, batch) &&
      writing?.overlaps(batch.low, batch.high, batch) !== true
    ) {
      batch.clearAt = this.#version;
      return false;
    }
    const id = batch.id(batch.indexOf(offset));
    return id !== undefined && (this.#pending.has(id) || writing?.has(id) === true);
  }

  /** The record at `offset` of `batch` was handled. */
  handled(batch: BatchIds, offset: number): void {
    const i = batch.indexOf(offset);
    if (!batch.has(i)) return;
    if (this.#pending.add(batch, i)) this.#version++;
    if (this.#pending.size >= 1000) void this.flush().catch(() => {});
    else this.#timer ??= setTimeout(() => void this.flush().catch(() => {}), this.#delayMs);
  }

  /** Writes every pending mark durably; rejects when the store fails (the commit must wait then). */
  flush(): Promise<void> {
    clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#inFlight === undefined) return this.#flushNow();
    const after = (): Promise<void> => {
      this.#queued = undefined;
      return this.#flushNow();
    };
    this.#queued ??= this.#inFlight.then(after, after);
    return this.#queued;
  }

  #flushNow(): Promise<void> {
    const marks = this.#pending;
    this.#pending = new Marks();
    this.#writing = marks;
    this.#version++;
    const run = (async () => {
      try {
        if (marks.size > 0) await this.#write(marks);
        this.#failure = undefined;
      } catch (err) {
        // Not marked: they go with the next flush.
        this.#pending.absorb(marks);
        this.#failure = err;
        throw err;
      } finally {
        this.#writing = undefined;
        this.#version++;
        this.#inFlight = undefined;
      }
    })();
    this.#inFlight = run.catch(() => {});
    return run;
  }

  async #write(marks: Marks): Promise<void> {
    const store = this.#store;
    if (marks.odd.length > 0) await markMany(store, this.#group, marks.odd, this.#ttlMs);
    if (marks.count === 0) return;
    if (isBatchMarkStore(store)) {
      await store.markBytes(this.#group, marks.bytes(), marks.count, marks.low, marks.high, this.#ttlMs);
    } else {
      const text = marks.bytes().toString('latin1');
      await markMany(store, this.#group, text.slice(0, -1).split('\n'), this.#ttlMs);
    }
  }

  /** The last flush failure, if the store has not answered since. */
  get failure(): unknown {
    return this.#failure;
  }

  close(): void {
    clearTimeout(this.#timer);
  }
}

/**
 * What the runtime keeps per partition for dedup: the batch each taken record came from, by
 * offset. Offsets in a partition are dense and taken in order, so they go in an array from the
 * first offset held, not in a hash map; an offset that does not follow on (a gap left by
 * compaction, a record put back) goes in a map beside it.
 */
export class OffsetIds<T> {
  /** The offset of `#slots[0]`. */
  #base = 0;
  #slots: (T | undefined)[] = [];
  /** Slots before this one are empty. */
  #head = 0;
  #other: Map<number, T> | undefined;

  set(offset: number, value: T): void {
    if (this.#head === this.#slots.length) {
      this.#slots.length = 0;
      this.#head = 0;
      this.#base = offset;
    }
    const i = offset - this.#base;
    if (i >= this.#slots.length && i - this.#slots.length <= 64) {
      while (this.#slots.length < i) this.#slots.push(undefined);
      this.#slots.push(value);
    } else if (i >= this.#head && i < this.#slots.length) this.#slots[i] = value;
    else {
      this.#other ??= new Map();
      this.#other.set(offset, value);
    }
  }

  get(offset: number): T | undefined {
    const i = offset - this.#base;
    if (i >= this.#head && i < this.#slots.length) return this.#slots[i];
    return this.#other?.get(offset);
  }

  delete(offset: number): void {
    const i = offset - this.#base;
    if (i < this.#head || i >= this.#slots.length) {
      this.#other?.delete(offset);
      return;
    }
    this.#slots[i] = undefined;
    while (this.#head < this.#slots.length && this.#slots[this.#head] === undefined) this.#head++;
    if (this.#head > 4096 && this.#head * 2 > this.#slots.length) {
      this.#slots.splice(0, this.#head);
      this.#base += this.#head;
      this.#head = 0;
    }
  }

  clear(): void {
    this.#slots = [];
    this.#head = 0;
    this.#other = undefined;
  }
}

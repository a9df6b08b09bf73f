/**
 * The consumer runtime's dedup (`subscribe({ dedup })`), a fetched batch at a time rather than a
 * string per record: each `ce_id` (a UUIDv7, time-ordered) is packed into 16 bytes as it is read
 * from the stored batch, a batch of new records is answered by its id range alone, and handled ids
 * are marked by copying those bytes. Strings and sets are made only where ranges overlap (ids of
 * several partitions interleave, ids that are not UUIDs, replays, duplicates).
 */
import type { StoredRecord } from '../engine/types.ts';
import type { Message } from '../message.ts';
import { parseDuration } from '../util/units.ts';
import { packUuidString, packUuidText } from '../util/uuid.ts';
import { type DedupOptions, type DedupStore, dedupTtl, eventIdOf, hasMany, markMany } from './dedup.ts';

/** Handled ids on their way to a store (see {@link BatchMarkStore}). */
export interface MarkedIds {
  readonly count: number;
  /** The ids packed 16 bytes each, when every one is a UUID in lowercase text; else undefined. */
  packed(): Buffer | undefined;
  /** The ids as strings. */
  list(): string[];
}

/**
 * What a store may offer the consumer runtime beyond {@link DedupStore} (the SQLite store does): a
 * lookup that needs a batch's ids only when marks lie within their range, and marks written from
 * the ids' bytes.
 */
export interface BatchMarkStore extends DedupStore {
  /** The ids `group` marked among `ids()`, all of which lie within [low, high]. */
  hasInRange(group: string, low: string, high: string, ids: () => readonly string[]): Promise<Set<string>>;
  /** Marks `ids`, all within [low, high], for `ttlMs`, durably before it resolves. */
  markIds(group: string, ids: MarkedIds, low: string, high: string, ttlMs: number): Promise<void>;
}

function isBatchMarkStore(store: DedupStore): store is BatchMarkStore {
  const s = store as Partial<BatchMarkStore>;
  return typeof s.hasInRange === 'function' && typeof s.markIds === 'function';
}

const CE_ID = 'ce_id';
/** What `BatchIds` holds of a record's id. */
const NONE = 0;
const PACKED = 1;
const TEXT = 2;
/** What finishing a record of a batch did. */
const NOT_TAKEN = 0;
const FINISHED = 1;
const FINISHED_LAST = 2;

/**
 * Packed ids (of fetched batches, and of flushes) are cut from shared slabs, as
 * `Buffer.allocUnsafe` cuts small buffers from its pool: one allocation outside the heap per
 * 64 Ki ids, rather than one per batch. A slab is freed once nothing cut from it is left.
 */
const SLAB_SIZE = 1024 * 1024;
let slab: Buffer | undefined;
let slabUsed = 0;

function carve(size: number): Buffer {
  if (size > SLAB_SIZE / 8) return Buffer.allocUnsafe(size);
  if (slab === undefined || slabUsed + size > SLAB_SIZE) {
    slab = Buffer.allocUnsafeSlow(SLAB_SIZE);
    slabUsed = 0;
  }
  const piece = slab.subarray(slabUsed, slabUsed + size);
  slabUsed += size;
  return piece;
}

/**
 * The `ce_id`s of one fetched batch of records, with the range they span and whether each sorts
 * after the one before (then no id repeats within the batch). A UUID in lowercase text (the
 * `ce_id`s Eventline makes) is read where the engine stored it, when the engine can say where, and
 * kept packed in 16 bytes; any other id is kept as a string. Nothing refers to the records or the
 * bytes they were read from once the batch is made, so neither outlives its handling.
 */
export class BatchIds {
  readonly #size: number;
  /**
   * The records' offsets (ascending), when they are not `first`, `first + 1`, … (a compacted
   * log). Plain arrays, made only when needed: a typed array per batch is memory outside the heap
   * that the garbage collector accounts for, and cost more than the rest of the batch's upkeep.
   */
  #offsets: number[] | undefined;
  /** Record i's id packed, when `#kinds[i]` is PACKED (`#kinds` undefined: every id is). */
  readonly #packed: Buffer;
  #kinds: number[] | undefined;
  /** Ids as strings: those that do not pack, and those asked for. */
  #strings: (string | undefined)[] | undefined;
  /** Records that have an id. */
  readonly count: number;
  /** The smallest and the largest id, as SQLite compares text ('' when `count` is 0). */
  readonly low: string;
  readonly high: string;
  /** Each id sorts after the one before it: the batch holds no id twice. */
  readonly ordered: boolean;
  /** The offsets of the first and the last record. */
  readonly first: number;
  readonly last: number;
  /** Records not finished yet (see TakenIds); `#finished[i]` is 1 once record i is. */
  #open: number;
  #finished: number[] | undefined;
  /**
   * The ids of records handled so far, kept only for a batch that is not `ordered` (it may hold an
   * id twice): a repeat is then found even once the first copy's mark is written.
   */
  #handled: Set<string> | undefined;
  /**
   * The gate's bookkeeping: the unwritten marks this batch last added ids to (undefined once they
   * are written), and when it was last found clear.
   */
  marks: Marks | undefined;
  clearAt = -1;

  constructor(records: readonly StoredRecord[]) {
    const n = records.length;
    this.#size = n;
    this.#packed = carve(n * 16);
    this.first = records[0]?.offset ?? 0;
    this.last = records[n - 1]?.offset ?? -1;
    if (this.last - this.first !== n - 1) this.#offsets = records.map((r) => r.offset);
    this.#open = n;
    const span = new Int32Array(2);
    let count = 0;
    let low = -1;
    let high = -1;
    let previous = -1;
    let ordered = true;
    for (let i = 0; i < n; i++) {
      const r = records[i]!;
      if (!this.#read(r, i, span)) {
        this.#kind(i, NONE);
        continue;
      }
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
    this.low = low < 0 ? '' : this.id(low)!;
    this.high = high < 0 ? '' : this.id(high)!;
  }

  /** Reads record i's id: packed, or as a string; false when it has none. */
  #read(r: StoredRecord, i: number, span: Int32Array): boolean {
    if (r.locateHeader !== undefined) {
      const source = r.locateHeader(CE_ID, span);
      if (source === undefined) return false;
      if (span[1]! - span[0]! === 36 && packUuidText(source, span[0]!, this.#packed, i * 16)) {
        if (this.#kinds !== undefined) this.#kinds[i] = PACKED;
        return true;
      }
      const bytes = Buffer.from(source.buffer, source.byteOffset, source.byteLength);
      return this.#keep(i, bytes.toString('latin1', span[0], span[1]));
    }
    const id = eventIdOf(r);
    if (id === undefined) return false;
    if (id.length === 36 && packUuidString(id, this.#packed, i * 16)) {
      if (this.#kinds !== undefined) this.#kinds[i] = PACKED;
      return true;
    }
    return this.#keep(i, id);
  }

  #keep(i: number, id: string): true {
    this.#kind(i, TEXT);
    this.#strings ??= [];
    this.#strings[i] = id;
    return true;
  }

  /** Record i's id is not packed: TEXT, or NONE (no id). */
  #kind(i: number, kind: number): void {
    // Records before i all had packed ids.
    this.#kinds ??= new Array<number>(this.#size).fill(PACKED);
    this.#kinds[i] = kind;
  }

  #isPacked(i: number): boolean {
    return this.#kinds === undefined || this.#kinds[i] === PACKED;
  }

  /** Compares the ids of records i and j as SQLite compares text. */
  #compare(i: number, j: number): number {
    if (this.#isPacked(i) && this.#isPacked(j)) {
      // Packing keeps the order of lowercase hex text.
      const p = this.#packed;
      for (let x = i * 16, y = j * 16, end = x + 16; x < end; x++, y++) {
        const d = p[x]! - p[y]!;
        if (d !== 0) return d;
      }
      return 0;
    }
    const a = this.id(i)!;
    const b = this.id(j)!;
    return a < b ? -1 : a > b ? 1 : 0;
  }

  /** Where the record at this offset is in the batch, or -1. Offsets ascend within a batch. */
  indexOf(offset: number): number {
    const offsets = this.#offsets;
    if (offsets === undefined) {
      const i = offset - this.first;
      return i >= 0 && i < this.#size ? i : -1;
    }
    let lo = 0;
    let hi = offsets.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const o = offsets[mid]!;
      if (o === offset) return mid;
      if (o < offset) lo = mid + 1;
      else hi = mid - 1;
    }
    return -1;
  }

  /** True while the record at this offset (one of the batch's) is not finished. */
  isTaken(offset: number): boolean {
    const i = this.indexOf(offset);
    return i >= 0 && this.#finished?.[i] !== 1;
  }

  /** The record at this offset is finished: NOT_TAKEN, FINISHED, or FINISHED_LAST (the batch's last). */
  finish(offset: number): number {
    const i = this.indexOf(offset);
    if (i < 0) return NOT_TAKEN;
    this.#finished ??= new Array<number>(this.#size).fill(0);
    if (this.#finished[i] === 1) return NOT_TAKEN;
    this.#finished[i] = 1;
    return --this.#open === 0 ? FINISHED_LAST : FINISHED;
  }

  /** Record i was handled: a batch that may hold an id twice remembers its id. */
  noteHandled(i: number): void {
    if (this.ordered) return;
    const id = this.id(i);
    if (id === undefined) return;
    this.#handled ??= new Set();
    this.#handled.add(id);
  }

  /** True when a record of this batch with this id was handled (known only when not `ordered`). */
  handledHere(id: string): boolean {
    return this.#handled?.has(id) === true;
  }

  /** True when record i has an id. */
  has(i: number): boolean {
    return i >= 0 && i < this.#size && (this.#kinds === undefined || this.#kinds[i] !== NONE);
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
      const hex = this.#packed.toString('hex', i * 16, i * 16 + 16);
      id = `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
      this.#strings[i] = id;
    }
    return id;
  }

  /** Every id of the batch, in record order. */
  ids(): string[] {
    const out: string[] = [];
    for (let i = 0; i < this.#size; i++) {
      const id = this.id(i);
      if (id !== undefined) out.push(id);
    }
    return out;
  }

  /** True when the ids of records from `i` to `j` (exclusive; all with an id) are packed. */
  packedRange(i: number, j: number): boolean {
    if (this.#kinds === undefined) return true;
    for (let k = i; k < j; k++) if (this.#kinds[k] !== PACKED) return false;
    return true;
  }

  /** Copies the packed ids of records `i` to `j` (exclusive) into `out` at `to`. */
  copyPacked(i: number, j: number, out: Buffer, to: number): void {
    this.#packed.copy(out, to, i * 16, j * 16);
  }
}

/**
 * Handled ids whose marks are not written yet: which record of which batch each is, and the
 * batches they came from with the range those span. An id outside every such batch's range cannot
 * be here; a set of them is made only once an id inside is asked about.
 */
class Marks implements MarkedIds {
  /** Runs of consecutive records of one batch (records are mostly handled in order). */
  readonly #batches: BatchIds[] = [];
  readonly #starts: number[] = [];
  readonly #lengths: number[] = [];
  #count = 0;
  readonly from: BatchIds[] = [];
  low = '';
  high = '';
  #set: Set<string> | undefined;

  get count(): number {
    return this.#count;
  }

  /** Adds record i of `batch`; true when the batch is new here (the ranges grew). */
  add(batch: BatchIds, i: number): boolean {
    let added = false;
    if (batch.marks !== this) {
      batch.marks = this;
      this.#include(batch);
      added = true;
    }
    const last = this.#batches.length - 1;
    if (last >= 0 && this.#batches[last] === batch && this.#starts[last]! + this.#lengths[last]! === i) {
      this.#lengths[last]!++;
    } else {
      this.#batches.push(batch);
      this.#starts.push(i);
      this.#lengths.push(1);
    }
    this.#count++;
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

  /** Takes over the ids of marks that could not be written. */
  absorb(failed: Marks): void {
    for (const batch of failed.from) {
      batch.marks = this;
      this.#include(batch);
    }
    this.#batches.push(...failed.#batches);
    this.#starts.push(...failed.#starts);
    this.#lengths.push(...failed.#lengths);
    this.#count += failed.#count;
    this.#set = undefined;
  }

  /**
   * The marks are written: the batches that last added ids here stop pointing at them. Otherwise a
   * batch still open (a record waiting in retry) would keep these marks alive, and through `from`
   * every batch behind them, and so on from flush to flush.
   */
  release(): void {
    for (const batch of this.from) if (batch.marks === this) batch.marks = undefined;
  }

  packed(): Buffer | undefined {
    const out = carve(this.#count * 16);
    for (let r = 0, to = 0; r < this.#batches.length; r++) {
      const batch = this.#batches[r]!;
      const first = this.#starts[r]!;
      const end = first + this.#lengths[r]!;
      if (!batch.packedRange(first, end)) return undefined;
      batch.copyPacked(first, end, out, to);
      to += (end - first) * 16;
    }
    return out;
  }

  list(): string[] {
    const ids: string[] = [];
    for (let r = 0; r < this.#batches.length; r++) {
      const batch = this.#batches[r]!;
      const end = this.#starts[r]! + this.#lengths[r]!;
      for (let i = this.#starts[r]!; i < end; i++) ids.push(batch.id(i)!);
    }
    return ids;
  }

  has(id: string): boolean {
    if (this.count === 0 || id < this.low || id > this.high) return false;
    this.#set ??= new Set(this.list());
    return this.#set.has(id);
  }

  /** True when a batch other than `except` that added ids here spans some of [low, high]. */
  overlaps(low: string, high: string, except?: BatchIds): boolean {
    if (this.count === 0 || low > this.high || high < this.low) return false;
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
    // A flush may end while the store looks (an async store): marks unwritten when the lookup began
    // may be written after the store read, and gone from here once it answers. Those of then and
    // those of now are both checked.
    const before = [this.#pending, this.#writing];
    const found = isBatchMarkStore(store)
      ? await store.hasInRange(this.#group, batch.low, batch.high, () => batch.ids())
      : await hasMany(store, this.#group, batch.ids());
    const unwritten: Marks[] = [];
    for (const marks of [...before, this.#pending, this.#writing]) {
      if (marks !== undefined && !unwritten.includes(marks) && marks.overlaps(batch.low, batch.high)) {
        unwritten.push(marks);
      }
    }
    if (unwritten.length > 0) {
      for (const id of batch.ids()) {
        if (unwritten.some((marks) => marks.has(id))) found.add(id);
      }
    }
    return found;
  }

  /**
   * True when the record at `offset` of `batch` repeats an id handled since the batch was fetched:
   * by an earlier record of the same batch (marked by now or not), or elsewhere with its mark still
   * on its way. A batch holding no id twice, whose range no other batch behind the unwritten marks
   * spans, is answered without looking at its id; the answer holds until those batches change.
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
    if (id === undefined) return false;
    return batch.handledHere(id) || this.#pending.has(id) || writing?.has(id) === true;
  }

  /** The record at `offset` of `batch` was handled. */
  handled(batch: BatchIds, offset: number): void {
    const i = batch.indexOf(offset);
    if (!batch.has(i)) return;
    batch.noteHandled(i);
    if (this.#pending.add(batch, i)) this.#version++;
    if (this.#pending.count >= 1000) void this.flush().catch(() => {});
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
        if (marks.count > 0) await this.#write(marks);
        marks.release();
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
    if (isBatchMarkStore(store)) await store.markIds(this.#group, marks, marks.low, marks.high, this.#ttlMs);
    else await markMany(store, this.#group, marks.list(), this.#ttlMs);
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
 * What the runtime keeps per partition for dedup: the fetched batches whose records are taken and
 * not yet finished, in offset order, so a record's id is found from its offset. Kept per batch,
 * not per record: a batch is dropped once each of its records is finished.
 */
export class TakenIds {
  #batches: BatchIds[] = [];

  /** A fetched batch was taken. Its offsets all lie after those of the batches before it. */
  add(batch: BatchIds): void {
    this.#batches.push(batch);
  }

  /** The batch the record at this offset came from, while it is not finished. */
  get(offset: number): BatchIds | undefined {
    for (const batch of this.#batches) {
      if (offset < batch.first) return undefined;
      if (offset <= batch.last) return batch.isTaken(offset) ? batch : undefined;
    }
    return undefined;
  }

  /** The record at this offset is finished (handled, skipped or set aside). */
  delete(offset: number): void {
    this.finish(offset);
  }

  /**
   * The record at this offset is finished: returns the batch it came from, or undefined when it
   * was not taken (or finished already).
   */
  finish(offset: number): BatchIds | undefined {
    const batches = this.#batches;
    for (let at = 0; at < batches.length; at++) {
      const batch = batches[at]!;
      if (offset < batch.first) return undefined;
      if (offset > batch.last) continue;
      const state = batch.finish(offset);
      if (state === FINISHED_LAST) {
        if (at === 0) batches.shift();
        else batches.splice(at, 1);
      }
      return state === NOT_TAKEN ? undefined : batch;
    }
    return undefined;
  }

  clear(): void {
    this.#batches = [];
  }
}

/**
 * The embedded engine stores records as record batches, one SQLite row per batch, much as Kafka
 * stores record batches in segment files: appends write one row instead of one per record, and a
 * fetch reads one blob and slices it without copying.
 *
 * Record layout inside a batch payload (varints are unsigned LEB128; zigzag for signed):
 *   varint  offsetDelta            from the batch's base offset
 *   zigzag  timestampDelta         from the batch's first timestamp
 *   varint  keyLength + 1          0 means a null key
 *   bytes   key
 *   varint  valueLength + 1        0 means a null value (a tombstone)
 *   bytes   value
 *   varint  headerCount
 *   repeat  varint nameLength, bytes name (UTF-8), varint valueLength, bytes value
 */
import { type Header, recordFields, type StoredRecord } from '../types.ts';

export interface EncodableRecord {
  offset: number;
  timestamp: number;
  key: Buffer | null;
  value: Buffer | null;
  headers: readonly Header[];
}

const nameCache = new Map<string, Buffer>();

/** A header name as UTF-8 bytes; the common names are cached. */
export function headerName(name: string): Buffer {
  let b = nameCache.get(name);
  if (b === undefined) {
    b = Buffer.from(name, 'utf8');
    if (nameCache.size < 1024) nameCache.set(name, b);
  }
  return b;
}

function zigzag(n: number): number {
  return n >= 0 ? n * 2 : -n * 2 - 1;
}

function writeVarint(buf: Buffer, pos: number, n: number): number {
  while (n >= 0x80) {
    buf[pos++] = (n & 0x7f) | 0x80;
    n = Math.floor(n / 128);
  }
  buf[pos++] = n;
  return pos;
}

/** Bytes a record takes on the wire for size limits: key + value + header names and values. */
export function recordSize(key: Buffer | null, value: Buffer | null, headers: readonly Header[]): number {
  let size = (key?.length ?? 0) + (value?.length ?? 0);
  for (const [name, v] of headers) size += headerName(name).length + v.length;
  return size;
}

/**
 * Encodes records (offsets ascending, all from one partition) into one batch payload. One pass:
 * the buffer is sized from an upper bound and the unused tail is cut off.
 */
export function encodeBatch(
  records: readonly EncodableRecord[],
  baseOffset: number,
  firstTimestamp: number,
): Buffer {
  return encode(records, 0, records.length, (r) => r.offset - baseOffset, firstTimestamp);
}

/**
 * Encodes `records[start..end)` of an append, which get consecutive offsets from the batch's base:
 * no per-record offset objects are needed.
 */
export function encodeAppend(
  records: readonly Omit<EncodableRecord, 'offset'>[],
  start: number,
  end: number,
  firstTimestamp: number,
): Buffer {
  return encode(records, start, end, (_r, i) => i - start, firstTimestamp);
}

function encode<R extends Omit<EncodableRecord, 'offset'>>(
  records: readonly R[],
  start: number,
  end: number,
  deltaOf: (r: R, i: number) => number,
  firstTimestamp: number,
): Buffer {
  // Per record at most 5 varints of up to 10 bytes; per header 2 varints, name bytes, value.
  let bound = 0;
  for (let i = start; i < end; i++) {
    const r = records[i]!;
    bound += 50 + (r.key === null ? 0 : r.key.length) + (r.value === null ? 0 : r.value.length);
    const headers = r.headers;
    for (let h = 0; h < headers.length; h++)
      bound += 20 + headerName(headers[h]![0]).length + headers[h]![1].length;
  }
  const buf = Buffer.allocUnsafe(bound);
  let pos = 0;
  for (let i = start; i < end; i++) {
    const r = records[i]!;
    pos = writeVarint(buf, pos, deltaOf(r, i));
    pos = writeVarint(buf, pos, zigzag(r.timestamp - firstTimestamp));
    const key = r.key;
    if (key === null) buf[pos++] = 0;
    else {
      pos = writeVarint(buf, pos, key.length + 1);
      buf.set(key, pos);
      pos += key.length;
    }
    const value = r.value;
    if (value === null) buf[pos++] = 0;
    else {
      pos = writeVarint(buf, pos, value.length + 1);
      buf.set(value, pos);
      pos += value.length;
    }
    const headers = r.headers;
    pos = writeVarint(buf, pos, headers.length);
    for (let h = 0; h < headers.length; h++) {
      const [name, v] = headers[h]!;
      const n = headerName(name);
      pos = writeVarint(buf, pos, n.length);
      buf.set(n, pos);
      pos += n.length;
      pos = writeVarint(buf, pos, v.length);
      buf.set(v, pos);
      pos += v.length;
    }
  }
  return buf.subarray(0, pos);
}

/**
 * A record decoded from a batch. Key and value are views into the batch payload; headers are
 * decoded on first access, since most consumers read few of them.
 */
class BatchRecord implements StoredRecord {
  readonly topic: string;
  readonly partition: number;
  readonly offset: number;
  readonly timestamp: number;
  readonly key: Buffer | null;
  readonly value: Buffer | null;
  #payload: Buffer;
  #headersAt: number;
  #headers: readonly Header[] | undefined;

  constructor(
    topic: string,
    partition: number,
    offset: number,
    timestamp: number,
    key: Buffer | null,
    value: Buffer | null,
    payload: Buffer,
    headersAt: number,
  ) {
    this.topic = topic;
    this.partition = partition;
    this.offset = offset;
    this.timestamp = timestamp;
    this.key = key;
    this.value = value;
    this.#payload = payload;
    this.#headersAt = headersAt;
  }

  get headers(): readonly Header[] {
    if (this.#headers === undefined) this.#headers = decodeHeaders(this.#payload, this.#headersAt).headers;
    return this.#headers;
  }

  headerText(name: string): string | undefined {
    const span = new Int32Array(2);
    if (!findHeader(this.#payload, this.#headersAt, name, span)) return undefined;
    return this.#payload.toString('latin1', span[0], span[1]);
  }

  locateHeader(name: string, span: Int32Array): Uint8Array | undefined {
    return findHeader(this.#payload, this.#headersAt, name, span) ? this.#payload : undefined;
  }

  toJSON(): object {
    return recordFields(this);
  }
}

function readVarint(buf: Buffer, state: { pos: number }): number {
  let result = 0;
  let factor = 1;
  for (;;) {
    const byte = buf[state.pos++];
    if (byte === undefined) throw new RangeError('truncated record batch');
    result += (byte & 0x7f) * factor;
    if (byte < 0x80) return result;
    factor *= 128;
  }
}

/**
 * Finds the value of the first header named `name` (headers from `headersAt`): true, with its place
 * in `buf` in `span` ([start, end)), or false. `span` also serves as the read position, so looking
 * up a header allocates nothing (it runs for every record a dedup consumer fetches).
 */
function findHeader(buf: Buffer, headersAt: number, name: string, span: Int32Array): boolean {
  span[0] = headersAt;
  const count = varintAt(buf, span);
  for (let i = 0; i < count; i++) {
    const nameLength = varintAt(buf, span);
    const at: number = span[0]!;
    span[0] = at + nameLength;
    const valueLength = varintAt(buf, span);
    const start: number = span[0]!;
    if (nameLength === name.length && sameText(buf, at, name)) {
      span[1] = start + valueLength;
      return true;
    }
    span[0] = start + valueLength;
  }
  return false;
}

/** Reads the varint at `pos[0]` and moves `pos[0]` past it. */
function varintAt(buf: Buffer, pos: Int32Array): number {
  let at = pos[0]!;
  let byte = buf[at++];
  if (byte === undefined) throw new RangeError('truncated record batch');
  if (byte < 0x80) {
    pos[0] = at;
    return byte;
  }
  let result = byte & 0x7f;
  let factor = 128;
  for (;;) {
    byte = buf[at++];
    if (byte === undefined) throw new RangeError('truncated record batch');
    result += (byte & 0x7f) * factor;
    if (byte < 0x80) {
      pos[0] = at;
      return result;
    }
    factor *= 128;
  }
}

/** True when the bytes at `at` spell `text` (ASCII), without making a string of them. */
function sameText(buf: Buffer, at: number, text: string): boolean {
  for (let k = 0; k < text.length; k++) if (buf[at + k] !== text.charCodeAt(k)) return false;
  return true;
}

function decodeHeaders(buf: Buffer, at: number): { headers: Header[]; end: number } {
  const state = { pos: at };
  const count = readVarint(buf, state);
  const headers: Header[] = new Array(count);
  for (let i = 0; i < count; i++) {
    const nameLength = readVarint(buf, state);
    const name = buf.toString('utf8', state.pos, state.pos + nameLength);
    state.pos += nameLength;
    const valueLength = readVarint(buf, state);
    headers[i] = [name, buf.subarray(state.pos, state.pos + valueLength)];
    state.pos += valueLength;
  }
  return { headers, end: state.pos };
}

function skipHeaders(buf: Buffer, state: { pos: number }): void {
  const count = readVarint(buf, state);
  for (let i = 0; i < count; i++) {
    // Read first: `state.pos += readVarint(...)` would add to the position from before the varint.
    const nameLength = readVarint(buf, state);
    state.pos += nameLength;
    const valueLength = readVarint(buf, state);
    state.pos += valueLength;
  }
}

/**
 * Decodes the records of a batch with offsets at or after `fromOffset`, appending them to `out`.
 * Stops once `out` holds `limit` records. Returns the bytes of key and value decoded.
 */
export function decodeBatch(
  payload: Buffer,
  topic: string,
  partition: number,
  baseOffset: number,
  firstTimestamp: number,
  fromOffset: number,
  out: StoredRecord[],
  limit: number,
): number {
  const state = { pos: 0 };
  let bytes = 0;
  const end = payload.length;
  while (state.pos < end && out.length < limit) {
    const offset = baseOffset + readVarint(payload, state);
    const zz = readVarint(payload, state);
    const timestamp = firstTimestamp + (zz % 2 === 0 ? zz / 2 : -(zz + 1) / 2);
    const keyLength = readVarint(payload, state);
    const key = keyLength === 0 ? null : payload.subarray(state.pos, state.pos + keyLength - 1);
    state.pos += keyLength === 0 ? 0 : keyLength - 1;
    const valueLength = readVarint(payload, state);
    const value = valueLength === 0 ? null : payload.subarray(state.pos, state.pos + valueLength - 1);
    state.pos += valueLength === 0 ? 0 : valueLength - 1;
    const headersAt = state.pos;
    skipHeaders(payload, state);
    if (state.pos > end) throw new RangeError('truncated record batch');
    if (offset < fromOffset) continue;
    bytes += (key?.length ?? 0) + (value?.length ?? 0);
    out.push(new BatchRecord(topic, partition, offset, timestamp, key, value, payload, headersAt));
  }
  return bytes;
}

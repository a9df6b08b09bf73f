import { randomFillSync } from 'node:crypto';

const HEX = new Uint8Array(512);
for (let i = 0; i < 256; i++) {
  const h = i.toString(16).padStart(2, '0');
  HEX[i * 2] = h.charCodeAt(0);
  HEX[i * 2 + 1] = h.charCodeAt(1);
}
const DASH = 0x2d;
/** Random bytes are drawn in blocks: one CSPRNG call serves 512 ids, as randomUUID() does internally. */
const POOL_SIZE = 16 * 512;
const pool = Buffer.allocUnsafe(POOL_SIZE);
let poolAt = POOL_SIZE;

let lastMs = -1;
let counter = 0;
/** The 48-bit timestamp of `stampMs`, big-endian: recomputed only when the millisecond moves. */
const stamp = new Uint8Array(6);
let stampMs = -1;

/**
 * Writes `count` UUIDs of version 7 (RFC 9562: 48 bits of Unix milliseconds, a 12-bit counter,
 * then random bits) as ASCII text, 36 bytes each, into `target` from `offset`. Ids made later sort
 * later, so stores that index them (dedup marks, outbox rows) append instead of writing all over
 * their B-trees. Publishing needs an id per record, and crypto.randomUUID() plus encoding its
 * string cost more than the rest of the record; this writes the text straight into the buffer.
 */
export function writeUuids(target: Buffer, offset: number, count: number): void {
  let out = offset;
  const now = Date.now();
  for (let i = 0; i < count; i++) {
    if (poolAt + 16 > POOL_SIZE) {
      randomFillSync(pool);
      poolAt = 0;
    }
    const random = pool;
    const r = poolAt;
    poolAt += 16;
    // Within a millisecond the counter keeps ids in order; it starts at a random point below 2048
    // and, should it run out, borrows the next millisecond (RFC 9562, method 1).
    if (now > lastMs) {
      lastMs = now;
      counter = ((random[r + 6]! << 8) | random[r + 7]!) & 0x7ff;
    } else if (++counter > 0xfff) {
      lastMs++;
      counter = 0;
    }
    if (stampMs !== lastMs) {
      stampMs = lastMs;
      let ms = lastMs;
      for (let b = 5; b >= 0; b--) {
        stamp[b] = ms % 256;
        ms = Math.floor(ms / 256);
      }
    }
    random.set(stamp, r);
    random[r + 6] = 0x70 | (counter >> 8);
    random[r + 7] = counter & 0xff;
    random[r + 8] = (random[r + 8]! & 0x3f) | 0x80;
    for (let b = 0; b < 16; b++) {
      if (b === 4 || b === 6 || b === 8 || b === 10) target[out++] = DASH;
      const v = random[r + b]! * 2;
      target[out++] = HEX[v]!;
      target[out++] = HEX[v + 1]!;
    }
  }
}

const NOT_HEX = -256;
/** Each pair of lowercase hex digits (two character codes, high one first) to its byte; negative otherwise. */
const HEX_PAIR = new Int16Array(65536).fill(NOT_HEX);
for (let x = 0; x < 16; x++) {
  for (let y = 0; y < 16; y++) {
    HEX_PAIR[(x.toString(16).charCodeAt(0) << 8) | y.toString(16).charCodeAt(0)] = x * 16 + y;
  }
}

/**
 * Packs the UUID written as lowercase text (36 characters, 8-4-4-4-12 hex digits) at `text[at]`
 * into its 16 bytes at `out[to]`; false, with `out` partly written, when the text is not one.
 * Unrolled: it runs for every dedup mark the consumer runtime writes.
 */
export function packUuidText(text: Uint8Array, at: number, out: Uint8Array, to: number): boolean {
  const t = text;
  if (t[at + 8] !== DASH || t[at + 13] !== DASH || t[at + 18] !== DASH || t[at + 23] !== DASH) return false;
  let b: number;
  let bad = 0;
  b = HEX_PAIR[(t[at]! << 8) | t[at + 1]!]!;
  bad |= b;
  out[to] = b;
  b = HEX_PAIR[(t[at + 2]! << 8) | t[at + 3]!]!;
  bad |= b;
  out[to + 1] = b;
  b = HEX_PAIR[(t[at + 4]! << 8) | t[at + 5]!]!;
  bad |= b;
  out[to + 2] = b;
  b = HEX_PAIR[(t[at + 6]! << 8) | t[at + 7]!]!;
  bad |= b;
  out[to + 3] = b;
  b = HEX_PAIR[(t[at + 9]! << 8) | t[at + 10]!]!;
  bad |= b;
  out[to + 4] = b;
  b = HEX_PAIR[(t[at + 11]! << 8) | t[at + 12]!]!;
  bad |= b;
  out[to + 5] = b;
  b = HEX_PAIR[(t[at + 14]! << 8) | t[at + 15]!]!;
  bad |= b;
  out[to + 6] = b;
  b = HEX_PAIR[(t[at + 16]! << 8) | t[at + 17]!]!;
  bad |= b;
  out[to + 7] = b;
  b = HEX_PAIR[(t[at + 19]! << 8) | t[at + 20]!]!;
  bad |= b;
  out[to + 8] = b;
  b = HEX_PAIR[(t[at + 21]! << 8) | t[at + 22]!]!;
  bad |= b;
  out[to + 9] = b;
  b = HEX_PAIR[(t[at + 24]! << 8) | t[at + 25]!]!;
  bad |= b;
  out[to + 10] = b;
  b = HEX_PAIR[(t[at + 26]! << 8) | t[at + 27]!]!;
  bad |= b;
  out[to + 11] = b;
  b = HEX_PAIR[(t[at + 28]! << 8) | t[at + 29]!]!;
  bad |= b;
  out[to + 12] = b;
  b = HEX_PAIR[(t[at + 30]! << 8) | t[at + 31]!]!;
  bad |= b;
  out[to + 13] = b;
  b = HEX_PAIR[(t[at + 32]! << 8) | t[at + 33]!]!;
  bad |= b;
  out[to + 14] = b;
  b = HEX_PAIR[(t[at + 34]! << 8) | t[at + 35]!]!;
  bad |= b;
  out[to + 15] = b;
  return bad >= 0;
}

/** As {@link packUuidText}, for a UUID given as a string. */
export function packUuidString(id: string, out: Uint8Array, to: number): boolean {
  if (id.length !== 36) return false;
  const text = new Uint8Array(36);
  for (let i = 0; i < 36; i++) {
    const c = id.charCodeAt(i);
    if (c > 0xff) return false;
    text[i] = c;
  }
  return packUuidText(text, 0, out, to);
}

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

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

/**
 * Writes `count` random (version 4) UUIDs as ASCII text, 36 bytes each, into `target` from
 * `offset`. Publishing needs an id per record, and crypto.randomUUID() plus encoding its string
 * cost more than the rest of the record; this writes the text straight into the batch's buffer.
 */
export function writeUuids(target: Buffer, offset: number, count: number): void {
  let out = offset;
  for (let i = 0; i < count; i++) {
    if (poolAt + 16 > POOL_SIZE) {
      randomFillSync(pool);
      poolAt = 0;
    }
    const random = pool;
    const r = poolAt;
    poolAt += 16;
    random[r + 6] = (random[r + 6]! & 0x0f) | 0x40;
    random[r + 8] = (random[r + 8]! & 0x3f) | 0x80;
    for (let b = 0; b < 16; b++) {
      if (b === 4 || b === 6 || b === 8 || b === 10) target[out++] = DASH;
      const v = random[r + b]! * 2;
      target[out++] = HEX[v]!;
      target[out++] = HEX[v + 1]!;
    }
  }
}

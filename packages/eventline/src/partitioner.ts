/**
 * Kafka's default partitioner for keyed records: murmur2 of the key bytes (seed 0x9747b28c), made
 * positive by masking the sign bit, modulo the partition count. Implemented exactly as Kafka's Java
 * client (`Utils.murmur2`, `Utils.toPositive`), so a key lands on the same partition number whichever
 * engine or Kafka client wrote it.
 */
export function murmur2(data: Uint8Array): number {
  const length = data.length;
  const m = 0x5bd1e995;
  const r = 24;
  let h = (0x9747b28c ^ length) | 0;
  const length4 = length >>> 2;
  for (let i = 0; i < length4; i++) {
    const i4 = i << 2;
    let k = data[i4]! | (data[i4 + 1]! << 8) | (data[i4 + 2]! << 16) | (data[i4 + 3]! << 24);
    k = Math.imul(k, m);
    k ^= k >>> r;
    k = Math.imul(k, m);
    h = Math.imul(h, m);
    h ^= k;
  }
  const tail = length4 << 2;
  const rem = length & 3;
  if (rem === 3) h ^= data[tail + 2]! << 16;
  if (rem >= 2) h ^= data[tail + 1]! << 8;
  if (rem >= 1) {
    h ^= data[tail]!;
    h = Math.imul(h, m);
  }
  h ^= h >>> 13;
  h = Math.imul(h, m);
  h ^= h >>> 15;
  return h | 0;
}

/** The partition Kafka's default partitioner picks for a non-null key. */
export function partitionForKey(key: Uint8Array, partitions: number): number {
  return (murmur2(key) & 0x7fffffff) % partitions;
}

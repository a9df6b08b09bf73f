import assert from 'node:assert/strict';
import { test } from 'node:test';
import { murmur2, partitionForKey } from '../src/partitioner.ts';

// Expected values from Kafka's Java client (clients/src/test/.../utils/UtilsTest.java, testMurmur2).
const KAFKA_VECTORS: [Uint8Array, number][] = [
  [Buffer.from('21'), -973932308],
  [Buffer.from('foobar'), -790332482],
  [Buffer.from('a-little-bit-long-string'), -985981536],
  [Buffer.from('a-little-bit-longer-string'), -1486304829],
  [Buffer.from('lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8'), -58897971],
  [new Uint8Array([0x61, 0x62, 0x63]), 479470107],
];

test('murmur2 matches the Java client on its own test vectors', () => {
  for (const [input, expected] of KAFKA_VECTORS) {
    assert.equal(murmur2(input), expected, `murmur2(${Buffer.from(input).toString()})`);
  }
});

test('murmur2 matches further vectors checked against Kafka (1 to 5 byte tails)', () => {
  const vectors: [string, number][] = [
    ['1', -1993445489],
    ['12', 126087238],
    ['123', -267702483],
    ['1234', -1614185708],
    ['12345', -1188365604],
  ];
  for (const [s, expected] of vectors) assert.equal(murmur2(Buffer.from(s)), expected, s);
});

test('partitionForKey is toPositive(murmur2) modulo the partition count, as Kafka computes it', () => {
  for (const [input, hash] of KAFKA_VECTORS) {
    for (const n of [1, 3, 6, 7, 100]) {
      assert.equal(partitionForKey(input, n), (hash & 0x7fffffff) % n);
    }
  }
  // Every partition is reachable and the spread is even enough over many keys.
  const counts = new Array(6).fill(0);
  for (let i = 0; i < 6000; i++) counts[partitionForKey(Buffer.from(`user-${i}`), 6)]++;
  for (const c of counts) assert.ok(c > 800 && c < 1200, `uneven spread: ${counts}`);
});

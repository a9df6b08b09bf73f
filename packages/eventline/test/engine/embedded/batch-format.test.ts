import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  decodeBatch,
  type EncodableRecord,
  encodeBatch,
  recordSize,
} from '../../../src/engine/embedded/batch-format.ts';
import type { StoredRecord } from '../../../src/engine/types.ts';

const records: EncodableRecord[] = [
  { offset: 10, timestamp: 1_700_000_000_000, key: Buffer.from('k1'), value: Buffer.from('v1'), headers: [] },
  {
    offset: 11,
    timestamp: 1_699_999_999_000,
    key: null,
    value: Buffer.alloc(300, 7),
    headers: [
      ['ce_id', Buffer.from('abc')],
      ['dup', Buffer.from('1')],
      ['dup', Buffer.from([0, 255])],
    ],
  },
  {
    offset: 14,
    timestamp: 1_700_000_000_500,
    key: Buffer.from('k3'),
    value: null,
    headers: [['ünï', Buffer.alloc(0)]],
  },
];

test('a batch round-trips keys, values, nulls, timestamps (also earlier ones) and headers byte for byte', () => {
  const payload = encodeBatch(records, 10, records[0]!.timestamp);
  const out: StoredRecord[] = [];
  decodeBatch(payload, 't', 2, 10, records[0]!.timestamp, 0, out, 100);
  assert.equal(out.length, 3);
  out.forEach((r, i) => {
    const want = records[i]!;
    assert.equal(r.topic, 't');
    assert.equal(r.partition, 2);
    assert.equal(r.offset, want.offset);
    assert.equal(r.timestamp, want.timestamp);
    assert.deepEqual(r.key, want.key);
    assert.deepEqual(r.value, want.value);
    assert.deepEqual(
      r.headers.map(([n, v]) => [n, [...v]]),
      want.headers.map(([n, v]) => [n, [...v]]),
    );
  });
});

test('decoding skips offsets before the requested one and stops at the limit', () => {
  const payload = encodeBatch(records, 10, records[0]!.timestamp);
  const out: StoredRecord[] = [];
  decodeBatch(payload, 't', 0, 10, records[0]!.timestamp, 11, out, 1);
  assert.deepEqual(
    out.map((r) => r.offset),
    [11],
  );
});

test('a truncated payload is reported, never misread', () => {
  const payload = encodeBatch(records, 10, records[0]!.timestamp);
  assert.throws(
    () => decodeBatch(payload.subarray(0, payload.length - 5), 't', 0, 10, 0, 0, [], 100),
    /truncated/,
  );
});

test('record size counts key, value, header names and values', () => {
  assert.equal(
    recordSize(Buffer.from('ab'), Buffer.from('cde'), [['hi', Buffer.from('xyz')]]),
    2 + 3 + 2 + 3,
  );
  assert.equal(recordSize(null, null, []), 0);
});

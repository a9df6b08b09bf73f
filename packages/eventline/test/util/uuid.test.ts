import assert from 'node:assert/strict';
import { test } from 'node:test';
import { writeUuids } from '../../src/util/uuid.ts';

const UUID_V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

function ids(n: number): string[] {
  const buf = Buffer.alloc(36 * n);
  writeUuids(buf, 0, n);
  return Array.from({ length: n }, (_, i) => buf.toString('latin1', i * 36, i * 36 + 36));
}

test('ids are version 7 UUIDs carrying the current time in their first 48 bits', () => {
  const before = Date.now();
  const [id] = ids(1);
  assert.match(id!, UUID_V7);
  const ms = Number.parseInt(id!.replace(/-/g, '').slice(0, 12), 16);
  assert.ok(ms >= before && ms <= Date.now() + 1, `${ms} is now`);
});

test('ids made later sort later, also many within one millisecond, and never repeat', () => {
  const all = [...ids(10_000), ...ids(10_000)];
  for (const id of all) assert.match(id, UUID_V7);
  assert.deepEqual([...all].sort(), all, 'in order');
  assert.equal(new Set(all).size, all.length, 'unique');
});

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type AssignablePartition, assignPartitions, partitionKey } from '../../src/engine/assignor.ts';

function partitions(
  topic: string,
  n: number,
  current: (p: number) => string | null = () => null,
): AssignablePartition[] {
  return Array.from({ length: n }, (_, p) => ({ topic, partition: p, current: current(p) }));
}

function loads(result: Map<string, string | null>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const m of result.values()) if (m !== null) out[m] = (out[m] ?? 0) + 1;
  return out;
}

test('partitions spread evenly over members subscribed to the topic', () => {
  const members = ['a', 'b', 'c'].map((memberId) => ({ memberId, topics: ['t'] }));
  assert.deepEqual(loads(assignPartitions(members, partitions('t', 6))), { a: 2, b: 2, c: 2 });
  const seven = loads(assignPartitions(members, partitions('t', 7)));
  assert.deepEqual(Object.values(seven).sort(), [2, 2, 3]);
});

test('the answer does not depend on the order of the input', () => {
  const members = ['m2', 'm1', 'm3'].map((memberId) => ({ memberId, topics: ['t', 'u'] }));
  const ps = [...partitions('t', 5), ...partitions('u', 4)];
  const a = assignPartitions(members, ps);
  const b = assignPartitions([...members].reverse(), [...ps].reverse());
  assert.deepEqual([...a.entries()].sort(), [...b.entries()].sort());
});

test('a new member takes a fair share and the others keep theirs (sticky)', () => {
  const before = assignPartitions(
    ['a', 'b'].map((memberId) => ({ memberId, topics: ['t'] })),
    partitions('t', 6),
  );
  const current = (p: number): string | null => before.get(partitionKey('t', p)) ?? null;
  const after = assignPartitions(
    ['a', 'b', 'c'].map((memberId) => ({ memberId, topics: ['t'] })),
    partitions('t', 6, current),
  );
  assert.deepEqual(loads(after), { a: 2, b: 2, c: 2 });
  let moved = 0;
  for (let p = 0; p < 6; p++) if (after.get(partitionKey('t', p)) !== current(p)) moved++;
  assert.equal(moved, 2, 'only the partitions the newcomer needs move');
});

test('a partition only goes to a member subscribed to its topic; unsubscribed topics get nobody', () => {
  const result = assignPartitions(
    [
      { memberId: 'a', topics: ['t'] },
      { memberId: 'b', topics: ['t', 'u'] },
    ],
    [...partitions('t', 2), ...partitions('u', 2), ...partitions('orphan', 1)],
  );
  assert.equal(result.get(partitionKey('u', 0)), 'b');
  assert.equal(result.get(partitionKey('u', 1)), 'b');
  assert.equal(result.get(partitionKey('orphan', 0)), null);
  assert.deepEqual(loads(result), { a: 2, b: 2 });
});

test('a departed member leaves its partitions to the rest', () => {
  const result = assignPartitions(
    ['a', 'c'].map((memberId) => ({ memberId, topics: ['t'] })),
    partitions('t', 6, (p) => ['a', 'b', 'c'][p % 3]!),
  );
  assert.deepEqual(loads(result), { a: 3, c: 3 });
  for (let p = 0; p < 6; p++)
    if (p % 3 !== 1) assert.equal(result.get(partitionKey('t', p)), ['a', 'b', 'c'][p % 3]);
});

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isEventlineError } from '../src/errors.ts';
import {
  DEFAULT_TOPIC_CONFIG,
  defineTopic,
  diffTopicConfig,
  normalizeTopicConfig,
  validateTopicName,
} from '../src/topic.ts';

function rejects(fn: () => unknown, code: string, mentions: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(isEventlineError(err), `expected an EventlineError, got ${err}`);
    assert.equal(err.code, code);
    assert.match(err.message, mentions);
    return true;
  });
}

test("topic names follow Kafka's rules", () => {
  for (const ok of ['orders', 'task.created', 'a_b-c.d', 'X'.repeat(249), '..a', 'a..'])
    validateTopicName(ok);
  rejects(() => validateTopicName(''), 'EVENTLINE_ERR_INVALID_TOPIC_NAME', /non-empty/);
  rejects(() => validateTopicName('.'), 'EVENTLINE_ERR_INVALID_TOPIC_NAME', /'\.' and '\.\.'/);
  rejects(() => validateTopicName('..'), 'EVENTLINE_ERR_INVALID_TOPIC_NAME', /'\.' and '\.\.'/);
  rejects(
    () => validateTopicName('x'.repeat(250)),
    'EVENTLINE_ERR_INVALID_TOPIC_NAME',
    /250 characters.*249/,
  );
  rejects(() => validateTopicName('orders/eu'), 'EVENTLINE_ERR_INVALID_TOPIC_NAME', /"\/" is not allowed/);
  rejects(() => validateTopicName('ünïcode'), 'EVENTLINE_ERR_INVALID_TOPIC_NAME', /"ü" is not allowed/);
  rejects(() => validateTopicName('with space'), 'EVENTLINE_ERR_INVALID_TOPIC_NAME', /" " is not allowed/);
  rejects(() => defineTopic('bad name'), 'EVENTLINE_ERR_INVALID_TOPIC_NAME', /bad name/);
});

test('settings are normalised with Kafka defaults and readable units', () => {
  assert.deepEqual(normalizeTopicConfig('t'), DEFAULT_TOPIC_CONFIG);
  const c = normalizeTopicConfig('t', {
    partitions: 3,
    retention: '12h',
    retentionBytes: '1GiB',
    cleanupPolicy: 'compact',
    deleteRetention: '30m',
    maxMessageBytes: '2MiB',
    replicationFactor: 3,
    minInsyncReplicas: 2,
    compression: 'zstd',
  });
  assert.deepEqual(c, {
    partitions: 3,
    retentionMs: 12 * 3_600_000,
    retentionBytes: 1024 ** 3,
    cleanupPolicy: 'compact',
    deleteRetentionMs: 1_800_000,
    maxMessageBytes: 2 * 1024 ** 2,
    replicationFactor: 3,
    minInsyncReplicas: 2,
    compression: 'zstd',
    segmentMs: null,
    segmentBytes: null,
    minCleanableDirtyRatio: 0.5,
    fsync: true,
  });
  assert.equal(normalizeTopicConfig('t', { retention: 'forever' }).retentionMs, null);
  assert.equal(normalizeTopicConfig('t', { fsync: false }).fsync, false);
  assert.throws(
    () => normalizeTopicConfig('t', { fsync: 'no' as unknown as boolean }),
    /topic t: fsync must be true or false/,
  );
  const kafka = normalizeTopicConfig('t', {
    segmentMs: '1h',
    segmentBytes: '1MiB',
    minCleanableDirtyRatio: 0.1,
  });
  assert.deepEqual(
    [kafka.segmentMs, kafka.segmentBytes, kafka.minCleanableDirtyRatio],
    [3_600_000, 1024 ** 2, 0.1],
  );
});

test('bad settings name the topic and the setting', () => {
  rejects(
    () => normalizeTopicConfig('orders', { partitions: 0 }),
    'EVENTLINE_ERR_INVALID_TOPIC_CONFIG',
    /orders: partitions/,
  );
  rejects(
    () => normalizeTopicConfig('orders', { partitions: 1.5 }),
    'EVENTLINE_ERR_INVALID_TOPIC_CONFIG',
    /partitions/,
  );
  rejects(
    // @ts-expect-error: a unit that does not exist
    () => normalizeTopicConfig('orders', { retention: '7 fortnights' }),
    'EVENTLINE_ERR_INVALID_TOPIC_CONFIG',
    /orders: retention.*7 fortnights/,
  );
  rejects(
    // @ts-expect-error: not a cleanup policy
    () => normalizeTopicConfig('orders', { cleanupPolicy: 'archive' }),
    'EVENTLINE_ERR_INVALID_TOPIC_CONFIG',
    /cleanupPolicy/,
  );
  rejects(
    () => normalizeTopicConfig('orders', { maxMessageBytes: 10 }),
    'EVENTLINE_ERR_INVALID_TOPIC_CONFIG',
    /at least 64/,
  );
});

test('defineTopic keeps codecs, key function and event type', () => {
  const t = defineTopic<{ id: string }>('users', { key: (u) => u.id, type: 'com.example.user' });
  assert.equal(t.name, 'users');
  assert.equal(t.type, 'com.example.user');
  assert.equal(t.keyOf?.({ id: 'u1' }), 'u1');
  assert.equal(t.value.name, 'json');
  assert.deepEqual(t.value.decode(t.value.encode({ id: 'x' })), { id: 'x' });
  assert.ok(Object.isFrozen(t) && Object.isFrozen(t.config));
  assert.equal(defineTopic('plain').type, 'plain');
});

test('diffing declared and actual settings marks what may be applied', () => {
  const declared = normalizeTopicConfig('t', { partitions: 6, retention: '1d', cleanupPolicy: 'compact' });
  const diff = diffTopicConfig(declared, { ...DEFAULT_TOPIC_CONFIG, partitions: 3 });
  const bySetting = Object.fromEntries(diff.map((d) => [d.setting, d]));
  assert.deepEqual(Object.keys(bySetting).sort(), ['cleanupPolicy', 'partitions', 'retentionMs']);
  assert.equal(bySetting.partitions!.applicable, true);
  assert.equal(bySetting.retentionMs!.applicable, true);
  assert.equal(bySetting.cleanupPolicy!.applicable, false);
  // Shrinking partitions is never applicable.
  const shrink = diffTopicConfig(normalizeTopicConfig('t', { partitions: 2 }), {
    ...DEFAULT_TOPIC_CONFIG,
    partitions: 3,
  });
  assert.deepEqual(
    shrink.map((d) => [d.setting, d.applicable]),
    [['partitions', false]],
  );
  // Broker defaults and settings the engine does not keep are not drift.
  assert.deepEqual(diffTopicConfig(DEFAULT_TOPIC_CONFIG, { partitions: 1, replicationFactor: 3 }), []);
});

import assert from 'node:assert/strict';
import { bytes } from '../../../src/codec.ts';
import { isEventlineError } from '../../../src/errors.ts';
import { partitionForKey } from '../../../src/partitioner.ts';
import { defineTopic } from '../../../src/topic.ts';
import type { ConformanceCase } from '../suite.ts';

function assertCode(code: string, mentions?: RegExp) {
  return (err: unknown): boolean => {
    assert.ok(isEventlineError(err), `expected an EventlineError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    if (mentions) assert.match(err.message, mentions);
    return true;
  };
}

async function ends(
  ctx: { bus: { reader: { offsets(t: string): Promise<{ end: number }[]> } } },
  topic: string,
) {
  return (await ctx.bus.reader.offsets(topic)).map((p) => p.end);
}

export const publishCases: ConformanceCase[] = [
  {
    name: 'publish resolves with the partition and a dense offset, and the record reads back',
    async run(ctx) {
      const t = await ctx.topic<{ n: number }>('dense', { partitions: 3 });
      const results: { partition: number; offset: number }[] = [];
      for (let n = 0; n < 30; n++) results.push(await ctx.bus.publish(t, { n }, { key: `k${n % 7}` }));
      for (let p = 0; p < 3; p++) {
        const offsets = results.filter((r) => r.partition === p).map((r) => r.offset);
        assert.deepEqual(
          offsets,
          offsets.map((_, i) => i),
          `partition ${p} offsets are dense from 0`,
        );
        const back = await ctx.bus.reader.read(t, { partition: p, from: 'earliest', max: 100 });
        assert.deepEqual(
          back.map((m) => m.value.n),
          results.flatMap((r, n) => (r.partition === p ? [n] : [])),
        );
      }
    },
  },
  {
    name: "keys pick partitions with Kafka's murmur2; explicit partitions win; keyless records spread",
    async run(ctx) {
      const t = await ctx.topic('keys', { partitions: 5 });
      for (let i = 0; i < 50; i++) {
        const r = await ctx.bus.publish(t, { i }, { key: `customer-${i}` });
        assert.equal(r.partition, partitionForKey(Buffer.from(`customer-${i}`), 5), `customer-${i}`);
      }
      const forced = await ctx.bus.publish(t, { forced: true }, { key: 'customer-1', partition: 4 });
      assert.equal(forced.partition, 4);
      const keyless = await ctx.bus.publishBatch(
        t,
        Array.from({ length: 10 }, (_, i) => ({ value: { i } })),
      );
      assert.equal(new Set(keyless.map((r) => r.partition)).size, 5, 'keyless records reach every partition');
      const derived = defineTopic<{ user: string }>(t.name, { partitions: 5, key: (v) => v.user });
      const r = await ctx.bus.publish(derived, { user: 'u-42' });
      assert.equal(r.partition, partitionForKey(Buffer.from('u-42'), 5), 'the key function derives the key');
      const [m] = await ctx.bus.reader.read(t, { partition: r.partition, from: { offset: r.offset } });
      assert.equal(m?.key, 'u-42');
    },
  },
  {
    name: 'a batch is atomic: one bad record rejects all of it and nothing is stored',
    async run(ctx) {
      const t = await ctx.topic('atomic', { partitions: 2, maxMessageBytes: '4KiB' });
      await ctx.bus.publishBatch(t, [{ value: 'ok-1' }, { value: 'ok-2' }]);
      const before = await ends(ctx, t.name);
      await assert.rejects(
        ctx.bus.publishBatch(t, [{ value: 'fine' }, { value: 'x'.repeat(10_000) }, { value: 'fine' }]),
        assertCode('EVENTLINE_ERR_MESSAGE_TOO_LARGE', /4096 bytes/),
      );
      await assert.rejects(
        ctx.bus.publishBatch(t, [{ value: 'fine' }, { value: 'bad partition', partition: 7 }]),
        assertCode('EVENTLINE_ERR_UNKNOWN_PARTITION', /no partition 7/),
      );
      await assert.rejects(
        ctx.bus.publishBatch(t, [{ value: 'fine' }, { value: 10n as unknown as string }]),
        assertCode('EVENTLINE_ERR_ENCODE', /record 1.*json/),
      );
      assert.deepEqual(await ends(ctx, t.name), before, 'nothing of a rejected batch was stored');
      const results = await ctx.bus.publishBatch(
        t,
        Array.from({ length: 100 }, (_, i) => ({ value: `v${i}`, key: `k${i}` })),
      );
      assert.equal(results.length, 100);
      let stored = 0;
      for (const p of [0, 1])
        stored += (await ctx.bus.reader.read(t, { partition: p, from: 'earliest', max: 500 })).length;
      assert.equal(stored, 102, 'the two earlier records and all 100 of the batch');
    },
  },
  {
    name: 'a batch with atomic: false stores every record, in order per partition, with results in record order',
    async run(ctx) {
      // 4 KiB per message: each partition's share of the batch spans several Kafka record batches.
      const t = await ctx.topic<string>('loose', { partitions: 3, maxMessageBytes: '4KiB' });
      const items = Array.from({ length: 60 }, (_, i) => ({
        value: `${i}:${'v'.repeat(1000)}`,
        key: `k${i}`,
      }));
      const results = await ctx.bus.publishBatch(t, items, { atomic: false });
      assert.equal(results.length, 60);
      results.forEach((r, i) => {
        assert.equal(r.partition, partitionForKey(Buffer.from(`k${i}`), 3), `record ${i}'s partition`);
      });
      for (let p = 0; p < 3; p++) {
        const mine = results.flatMap((r, i) => (r.partition === p ? [{ i, offset: r.offset }] : []));
        const back = await ctx.bus.reader.read(t, { partition: p, from: 'earliest', max: 100 });
        assert.deepEqual(
          back.map((m) => Number(m.value.split(':')[0])),
          mine.map((x) => x.i),
          `partition ${p} holds its records in batch order`,
        );
        assert.deepEqual(
          back.map((m) => m.offset),
          mine.map((x) => x.offset),
          `partition ${p}'s offsets are the ones publishBatch returned`,
        );
      }
      const before = await ends(ctx, t.name);
      await assert.rejects(
        ctx.bus.publishBatch(t, [{ value: 'fine' }, { value: 'x'.repeat(10_000) }], { atomic: false }),
        assertCode('EVENTLINE_ERR_MESSAGE_TOO_LARGE'),
      );
      assert.deepEqual(
        await ends(ctx, t.name),
        before,
        'bad input is refused before anything of the batch is stored',
      );
    },
  },
  {
    name: 'every record carries CloudEvents headers, which callers can override',
    async run(ctx) {
      const t = await ctx.topic<{ a: number }>('ce', { type: 'com.example.thing.created' });
      const at = new Date('2026-01-02T03:04:05.678Z');
      const r1 = await ctx.bus.publish(
        t,
        { a: 1 },
        { timestamp: at, headers: { trace: 'abc', bin: Buffer.from([0, 1, 255]) } },
      );
      const r2 = await ctx.bus.publish(
        t,
        { a: 2 },
        { type: 'com.example.thing.renamed', headers: { ce_source: '/custom' } },
      );
      const r3 = await ctx.bus.publish(
        t,
        { a: 3 },
        {
          headers: [
            ['ce_id', 'my-id'],
            ['dup', '1'],
            ['dup', '2'],
          ],
        },
      );
      const [m1, m2, m3] = await ctx.bus.reader.read(t, {
        partition: 0,
        from: { offset: r1.offset },
        max: 3,
      });
      assert.ok(m1 && m2 && m3);
      assert.match(m1.headers.ce_id!, /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
      assert.equal(m1.id, r1.id);
      assert.notEqual(m1.id, m2.id);
      assert.equal(m1.headers.ce_specversion, '1.0');
      assert.equal(m1.type, 'com.example.thing.created');
      assert.equal(m1.headers.ce_source, '/eventline');
      assert.equal(m1.headers.ce_time, at.toISOString());
      assert.equal(m1.timestamp, at.getTime());
      assert.equal(m1.headers['content-type'], 'application/json');
      assert.equal(m1.headers.trace, 'abc');
      assert.deepEqual([...m1.rawHeaders.find(([n]) => n === 'bin')![1]], [0, 1, 255]);
      assert.equal(m2.type, 'com.example.thing.renamed');
      assert.equal(m2.headers.ce_source, '/custom');
      assert.equal(
        m2.rawHeaders.filter(([n]) => n === 'ce_source').length,
        1,
        'an override replaces the default',
      );
      assert.equal(m3.id, 'my-id');
      assert.deepEqual(
        m3.rawHeaders.filter(([n]) => n === 'dup').map(([, v]) => v.toString()),
        ['1', '2'],
        'repeated headers keep their order',
      );
      assert.ok(Math.abs(r2.timestamp - Date.now()) < 60_000, 'the timestamp defaults to now');
      void r3;
    },
  },
  {
    name: 'unknown topics, invalid names and too-large messages fail clearly and lose nothing',
    async run(ctx) {
      const t = await ctx.topic<string>('errors', { maxMessageBytes: '2KiB' });
      const kept = await ctx.bus.publishBatch(t, [{ value: 'a' }, { value: 'b' }]);
      await assert.rejects(
        ctx.bus.publish(defineTopic(`${t.name}-missing`), 'x'),
        assertCode('EVENTLINE_ERR_UNKNOWN_TOPIC', /-missing does not exist/),
      );
      assert.throws(
        () => defineTopic('no spaces allowed'),
        assertCode('EVENTLINE_ERR_INVALID_TOPIC_NAME', /" "/),
      );
      assert.throws(
        () => defineTopic('x'.repeat(250)),
        assertCode('EVENTLINE_ERR_INVALID_TOPIC_NAME', /249/),
      );
      await assert.rejects(
        ctx.bus.admin.createTopic('bad/name'),
        assertCode('EVENTLINE_ERR_INVALID_TOPIC_NAME'),
      );
      const err = await ctx.bus.publish(t, 'y'.repeat(5000)).catch((e: unknown) => e);
      assertCode('EVENTLINE_ERR_MESSAGE_TOO_LARGE', /2048 bytes/)(err);
      assert.equal((err as { details: { limit: number } }).details.limit, 2048);
      const back = await ctx.bus.reader.read(t, { partition: 0, from: 'earliest' });
      assert.deepEqual(
        back.map((m) => [m.offset, m.value]),
        kept.map((r, i) => [r.offset, ['a', 'b'][i]]),
      );
      assert.deepEqual(await ends(ctx, t.name), [2]);
    },
  },
  {
    name: 'ensureTopics is idempotent, reports drift, and grows partitions only when asked',
    async run(ctx) {
      const name = (await ctx.topic('ensure', { partitions: 2, retention: '1d' })).name;
      const same = defineTopic(name, { partitions: 2, retention: '1d' });
      const [again] = await ctx.bus.ensureTopics([same]);
      assert.equal(again?.action, 'unchanged');
      const more = defineTopic(name, { partitions: 4, retention: '2d' });
      const [drift] = await ctx.bus.ensureTopics([more]);
      assert.equal(drift?.action, 'alter');
      assert.equal(drift?.applied, undefined);
      assert.deepEqual(drift?.differences.map((d) => d.setting).sort(), ['partitions', 'retentionMs']);
      assert.equal(
        (await ctx.bus.admin.describeTopic(name)).partitions.length,
        2,
        'not applied without alter',
      );
      const [altered] = await ctx.bus.ensureTopics([more], { alter: true });
      assert.equal(altered?.applied, true);
      const described = await ctx.bus.admin.describeTopic(name);
      assert.equal(described.partitions.length, 4);
      assert.equal(described.config.retentionMs, 2 * 86_400_000);
      const fewer = defineTopic(name, { partitions: 1, retention: '2d' });
      const [shrink] = await ctx.bus.ensureTopics([fewer], { alter: true });
      assert.equal(shrink?.action, 'drift');
      assert.equal(shrink?.differences[0]?.applicable, false);
      assert.equal((await ctx.bus.admin.describeTopic(name)).partitions.length, 4, 'partitions never shrink');
      assert.equal(await ctx.bus.admin.createTopic(name, { partitions: 4 }), 'exists');
    },
  },
  {
    name: 'compacted topics need keys; a null value is a tombstone',
    async run(ctx) {
      const t = await ctx.topic<{ v: number }>('compact-keys', { cleanupPolicy: 'compact' });
      await assert.rejects(
        ctx.bus.publish(t, { v: 1 }),
        assertCode('EVENTLINE_ERR_INVALID_RECORD', /needs a key/),
      );
      const live = await ctx.bus.publish(t, { v: 1 }, { key: 'a' });
      const tomb = await ctx.bus.publish(t, null, { key: 'a' });
      const [m1, m2] = await ctx.bus.reader.read(t, { partition: 0, from: { offset: live.offset } });
      assert.deepEqual(m1?.value, { v: 1 });
      assert.equal(m2?.value, null);
      assert.equal(m2?.rawValue, null);
      assert.equal(m2?.offset, tomb.offset);
    },
  },
  {
    name: 'raw byte topics store values byte for byte',
    async run(ctx) {
      const t = await ctx.topic('raw', { value: bytes() });
      const payload = Buffer.from([0, 1, 2, 253, 254, 255]);
      const r = await ctx.bus.publish(t, payload, { key: Buffer.from([9, 9]) });
      const [m] = await ctx.bus.reader.read(t.name, { partition: r.partition, from: { offset: r.offset } });
      assert.deepEqual([...m!.value], [...payload]);
      assert.deepEqual([...m!.rawKey!], [9, 9]);
      assert.equal(m!.headers['content-type'], undefined, 'raw bytes have no content type');
    },
  },
];

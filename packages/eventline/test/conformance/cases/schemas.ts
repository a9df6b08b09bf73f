import assert from 'node:assert/strict';
import avsc from 'avsc';
import { bytes } from '../../../src/codec.ts';
import { isEventlineError } from '../../../src/errors.ts';
import { deadLetterTopic } from '../../../src/runtime/dead-letter.ts';
import type { ErrorInfo } from '../../../src/runtime/subscription.ts';
import { avro } from '../../../src/schema/avro.ts';
import { defineTopic } from '../../../src/topic.ts';
import { waitFor } from '../../helpers.ts';
import type { ConformanceCase } from '../suite.ts';

const USER_V1 = {
  type: 'record',
  name: 'User',
  namespace: 'test.users',
  fields: [
    { name: 'id', type: 'string' },
    { name: 'age', type: 'int' },
  ],
} as const;

/** v2 adds a field with a default (BACKWARD compatible) and widens age to long. */
const USER_V2 = {
  type: 'record',
  name: 'User',
  namespace: 'test.users',
  fields: [
    { name: 'id', type: 'string' },
    { name: 'age', type: 'long' },
    { name: 'email', type: ['null', 'string'], default: null },
  ],
} as const;

const EVERYTHING = {
  type: 'record',
  name: 'Everything',
  fields: [
    { name: 'big', type: 'long' },
    { name: 'small', type: 'long' },
    { name: 'at', type: { type: 'long', logicalType: 'timestamp-millis' } },
    { name: 'micros', type: { type: 'long', logicalType: 'timestamp-micros' } },
    { name: 'day', type: { type: 'int', logicalType: 'date' } },
    { name: 'id', type: { type: 'string', logicalType: 'uuid' } },
    { name: 'price', type: { type: 'bytes', logicalType: 'decimal', precision: 12, scale: 2 } },
    { name: 'tags', type: { type: 'array', items: 'string' } },
    { name: 'attrs', type: { type: 'map', values: 'int' } },
    { name: 'note', type: ['null', 'string'], default: null },
  ],
} as const;

export const schemaCases: ConformanceCase[] = [
  {
    name: 'avro: values round-trip in the Confluent wire format, logical types and longs beyond 2^53 intact',
    async run(ctx) {
      const t = await ctx.topic<Record<string, unknown>>('avro-rt', { value: avro(EVERYTHING) });
      const value = {
        big: 2n ** 62n + 3n,
        small: 42,
        at: new Date('2026-11-29T10:11:12.345Z'),
        micros: 1_795_000_000_123_456n,
        day: new Date('2026-11-29T00:00:00Z'),
        id: '9f1c6c3e-2b1a-4c53-9d6e-0c8f5b7a1e22',
        price: '-1234.50',
        tags: ['a', 'b'],
        attrs: { x: 1 },
        note: null,
      };
      const sent = await ctx.bus.publish(t, value);
      const [got] = await ctx.bus.reader.read(t, { partition: 0, from: { offset: sent.offset }, max: 1 });
      assert.deepEqual({ ...(got!.value as object) }, value);
      assert.equal(got!.headers['content-type'], 'application/vnd.apache.avro+binary');

      // The stored bytes: magic 0, the registered id big-endian, then plain Avro binary.
      const [raw] = await ctx.bus.reader.read(t.name, {
        partition: 0,
        from: { offset: sent.offset },
        max: 1,
      });
      const registry = await ctx.bus.registry();
      const latest = await registry.getVersion(`${t.name}-value`, 'latest');
      const stored = raw!.value as Buffer;
      assert.equal(stored[0], 0);
      assert.equal(stored.readInt32BE(1), latest.id);
      // Plain avsc (no logical types, no bigint longs) reads it too, projected onto two fields.
      const writer = avsc.Type.forSchema(JSON.parse(latest.schema) as avsc.Schema);
      const reader = avsc.Type.forSchema({
        type: 'record',
        name: 'Everything',
        fields: [
          { name: 'small', type: 'long' },
          { name: 'tags', type: { type: 'array', items: 'string' } },
        ],
      });
      const decoded = reader.fromBuffer(stored.subarray(5), reader.createResolver(writer));
      assert.deepEqual({ ...decoded }, { small: 42, tags: ['a', 'b'] });
    },
  },
  {
    name: 'avro: a value that does not match is refused naming the field path and type; nothing is published',
    async run(ctx) {
      const t = await ctx.topic<Record<string, unknown>>('avro-bad', { value: avro(USER_V2) });
      await ctx.bus.publish(t, { id: 'u1', age: 30, email: null });
      const before = await ctx.bus.reader.offsets(t.name);
      await assert.rejects(
        ctx.bus.publishBatch(t, [{ value: { id: 'u2', age: 31 } }, { value: { id: 'u3', age: 'old' } }]),
        (err) => {
          assert.ok(isEventlineError(err, 'EVENTLINE_ERR_ENCODE'), String(err));
          assert.match(err.message, /record 1/);
          assert.match(err.message, /\.age expected long, got string "old"/);
          assert.deepEqual(
            (err.details.mismatches as { path: string }[]).map((m) => m.path),
            ['.age'],
          );
          return true;
        },
      );
      await assert.rejects(ctx.bus.publish(t, { id: 7, age: 1 }), /\.id expected string, got number 7/);
      assert.deepEqual(await ctx.bus.reader.offsets(t.name), before);
    },
  },
  {
    name: 'avro: wrong magic byte, unknown schema id and truncated payloads are poison: dead-lettered, the consumer lives',
    async run(ctx) {
      const t = await ctx.topic<Record<string, unknown>>('avro-poison', {
        value: avro(USER_V1),
        partitions: 4,
      });
      const raw = defineTopic(t.name, { partitions: 4, value: bytes() });
      const good = await ctx.bus.publish(t, { id: 'ok', age: 1 }, { partition: 3 });
      const [stored] = await ctx.bus.reader.read(raw, {
        partition: 3,
        from: { offset: good.offset },
        max: 1,
      });
      const framed = stored!.value as Buffer;
      const unknownId = Buffer.from(framed);
      unknownId.writeInt32BE(2_000_000_000, 1);
      await ctx.bus.publish(raw, Buffer.from('{"id":"json"}'), { partition: 0 });
      await ctx.bus.publish(raw, unknownId, { partition: 1 });
      await ctx.bus.publish(raw, framed.subarray(0, framed.length - 1), { partition: 2 });
      const errors: [Error, ErrorInfo][] = [];
      const seen: string[] = [];
      const group = ctx.group('avro-poison');
      const sub = ctx.bus.subscribe({
        group,
        topics: [t],
        fromBeginning: true,
        onError: (e, info) => errors.push([e, info]),
        handler: (m) => void seen.push((m.value as { id: string }).id),
      });
      await waitFor('the good record', () => seen.length === 1);
      await waitFor(
        'each poison record dead-lettered',
        () => errors.filter(([, i]) => i.deadLetter).length === 3,
      );
      await ctx.bus.publish(t, { id: 'after', age: 2 }, { partition: 0 });
      await waitFor('a record published after the poison', () => seen.includes('after'));
      await sub.stop();
      const reason = (p: number): string => errors.find(([, i]) => i.partition === p)![0].message;
      for (const [err, info] of errors) {
        assert.ok(isEventlineError(err, 'EVENTLINE_ERR_DECODE'), String(err));
        assert.equal(info.poison, true);
        assert.equal(info.attempt, 1, 'poison is not tried again');
        assert.equal(info.deadLetter, deadLetterTopic(group, t.name));
      }
      assert.match(reason(0), /first byte is 123, not the schema registry magic byte 0/);
      assert.match(reason(1), /schema id 2000000000/);
      assert.match(reason(2), /truncated/);
      assert.deepEqual(seen, ['ok', 'after']);
    },
  },
  {
    name: 'avro: a reader schema decodes records written with older and newer compatible schemas',
    async run(ctx) {
      const v1 = await ctx.topic<Record<string, unknown>>('avro-evolve', { value: avro(USER_V1) });
      const v2 = defineTopic<Record<string, unknown>>(v1.name, { value: avro(USER_V2) });
      await ctx.bus.publish(v1, { id: 'old', age: 40 });
      await ctx.bus.publish(v2, { id: 'new', age: 2n ** 60n, email: 'n@example.com' });
      await ctx.bus.publish(v2, { id: 'new-small', age: 50, email: null });
      const asV2 = await ctx.bus.reader.read(v2, { partition: 0, from: 'earliest' });
      assert.deepEqual(
        asV2.map((m) => ({ ...(m.value as object) })),
        [
          { id: 'old', age: 40, email: null },
          { id: 'new', age: 2n ** 60n, email: 'n@example.com' },
          { id: 'new-small', age: 50, email: null },
        ],
      );
      // An old reader drops the new field; a long that no longer fits an int is a clear decode error.
      const asV1 = await ctx.bus.reader.read(v1, { partition: 0, from: 'earliest', max: 1 });
      assert.deepEqual({ ...(asV1[0]!.value as object) }, { id: 'old', age: 40 });
      await assert.rejects(ctx.bus.reader.read(v1, { partition: 0, from: { offset: 1 }, max: 1 }), (err) => {
        assert.ok(isEventlineError(err, 'EVENTLINE_ERR_DECODE'));
        assert.match(err.message, /cannot be read with this topic's schema/);
        return true;
      });
    },
  },
  {
    name: 'avro: an incompatible schema is refused on publish naming the broken rule; nothing is published',
    async run(ctx) {
      const t = await ctx.topic<Record<string, unknown>>('avro-incompat', { value: avro(USER_V1) });
      await ctx.bus.publish(t, { id: 'a', age: 1 });
      const breaking = defineTopic<Record<string, unknown>>(t.name, {
        value: avro({ ...USER_V1, fields: [...USER_V1.fields, { name: 'country', type: 'string' }] }),
      });
      const before = await ctx.bus.reader.offsets(t.name);
      await assert.rejects(ctx.bus.publish(breaking, { id: 'b', age: 2, country: 'NL' }), (err) => {
        assert.ok(isEventlineError(err, 'EVENTLINE_ERR_SCHEMA_INCOMPATIBLE'), String(err));
        assert.match(err.message, /country/);
        return true;
      });
      assert.deepEqual(await ctx.bus.reader.offsets(t.name), before);
    },
  },
  {
    name: 'avro: subjects follow the topic, record and topic-record strategies; keys use <topic>-key',
    async run(ctx) {
      const byTopic = await ctx.topic<Record<string, unknown>, Record<string, unknown>>('avro-subj', {
        value: avro(USER_V1),
        keyCodec: avro({ type: 'record', name: 'UserKey', fields: [{ name: 'id', type: 'string' }] }),
      });
      const byRecord = await ctx.topic<Record<string, unknown>>('avro-subj-r', {
        value: avro({ ...USER_V1, name: `R${byTopic.name.replace(/\W/g, '_')}` }, { subject: 'record' }),
      });
      const byTopicRecord = await ctx.topic<Record<string, unknown>>('avro-subj-tr', {
        value: avro(USER_V1, { subject: 'topic-record' }),
      });
      await ctx.bus.publish(byTopic, { id: 'a', age: 1 }, { key: { id: 'a' } });
      await ctx.bus.publish(byRecord, { id: 'a', age: 1 });
      await ctx.bus.publish(byTopicRecord, { id: 'a', age: 1 });
      const subjects = await (await ctx.bus.registry()).subjects();
      for (const s of [
        `${byTopic.name}-key`,
        `${byTopic.name}-value`,
        `test.users.R${byTopic.name.replace(/\W/g, '_')}`,
        `${byTopicRecord.name}-test.users.User`,
      ]) {
        assert.ok(subjects.includes(s), `subject ${s} in ${subjects.join(', ')}`);
      }
      const [m] = await ctx.bus.reader.read(byTopic, { partition: 0, from: 'earliest' });
      assert.deepEqual({ ...(m!.key as object) }, { id: 'a' });
    },
  },
  {
    name: 'avro: with autoRegister off, publishing waits for the schema to be registered by someone else',
    async run(ctx) {
      const t = await ctx.topic<Record<string, unknown>>('avro-noauto', {
        value: avro(USER_V1, { autoRegister: false }),
      });
      await assert.rejects(ctx.bus.publish(t, { id: 'a', age: 1 }), (err) => {
        assert.ok(isEventlineError(err, 'EVENTLINE_ERR_SCHEMA_NOT_FOUND'), String(err));
        return true;
      });
      await (await ctx.bus.registry()).register(`${t.name}-value`, { schema: JSON.stringify(USER_V1) });
      const sent = await ctx.bus.publish(t, { id: 'a', age: 1 });
      assert.equal(sent.offset >= 0, true);
    },
  },
];

import assert from 'node:assert/strict';
import type { Eventline, HeadersInput } from '../../../src/client.ts';
import { bytes } from '../../../src/codec.ts';
import type { Header, StoredRecord } from '../../../src/engine/types.ts';
import { partitionForKey } from '../../../src/partitioner.ts';
import { deadLetterTopic, REPLAYS_HEADER, toDeadLetter } from '../../../src/runtime/dead-letter.ts';
import {
  listDeadLetterTopics,
  readDeadLetters,
  replayDeadLetters,
  replayGroup,
} from '../../../src/runtime/replay.ts';
import type { Topic } from '../../../src/topic.ts';
import type { ConformanceCase } from '../suite.ts';

/** A record to publish and then dead-letter, failed with `error` (`code` becomes the error code). */
export interface Doomed {
  key: string | Buffer | null;
  value: Buffer;
  headers?: HeadersInput;
  code: string;
  message: string;
  /** When it last failed; default now. */
  failedAt?: number;
}

/**
 * Publishes records to `topic`, then stores each in the dead-letter topic of `group` (or `into`)
 * exactly as the consumer runtime does after the last attempt. Returns that topic and the originals.
 */
export async function deadLetters(
  bus: Eventline,
  topic: Topic<Buffer, string>,
  group: string,
  doomed: readonly Doomed[],
  into = deadLetterTopic(group, topic.name),
): Promise<{ dlqTopic: string; originals: StoredRecord[] }> {
  const published = await bus.publishBatch(
    topic,
    doomed.map((d) => ({ value: d.value, key: d.key, ...(d.headers ? { headers: d.headers } : {}) })),
  );
  const originals: StoredRecord[] = [];
  for (const r of published) {
    const [record] = await bus.engine.fetch(topic.name, r.partition, r.offset, { maxRecords: 1 });
    assert.equal(record?.offset, r.offset);
    originals.push(record);
  }
  const dlqTopic = into;
  await bus.admin.createTopic(dlqTopic, { partitions: 1 });
  await bus.appendEncoded(
    dlqTopic,
    originals.map((record, i) => {
      const d = doomed[i]!;
      const error = Object.assign(new Error(d.message), { code: d.code });
      const last = d.failedAt ?? Date.now();
      return {
        ...toDeadLetter(record, { group, attempts: 3, firstFailure: last - 1000, lastFailure: last, error }),
        id: `dead-${i}`,
      };
    }),
  );
  return { dlqTopic, originals };
}

/** The records of every partition of a topic from the given end offsets on. */
async function readFrom(
  bus: Eventline,
  topic: string,
  ends: readonly number[] = [],
): Promise<StoredRecord[]> {
  const out: StoredRecord[] = [];
  for (const p of await bus.reader.offsets(topic)) {
    out.push(
      ...(await bus.engine.fetch(topic, p.partition, ends[p.partition] ?? p.start, { maxRecords: 1000 })),
    );
  }
  return out;
}

async function endsOf(bus: Eventline, topic: string): Promise<number[]> {
  return (await bus.reader.offsets(topic)).map((p) => p.end);
}

const hex = (b: Buffer | null): string | null => (b === null ? null : b.toString('hex'));
const headerHex = (hs: readonly Header[]): [string, string][] => hs.map(([n, v]) => [n, v.toString('hex')]);

/** What identifies a record's content: key, value and headers, as hex. */
function content(r: { key: Buffer | null; value: Buffer | null; headers: readonly Header[] }): string {
  return JSON.stringify([hex(r.key), hex(r.value), headerHex(r.headers)]);
}

const BINARY = Buffer.from([0, 255, 1, 254, 0x80, 0x7f]);

export const deadLetterCases: ConformanceCase[] = [
  {
    name: 'dlq: a dead letter keeps key, value and headers byte for byte, and reads back with its failure',
    async run(ctx) {
      const t = await ctx.topic<Buffer>('dlq-format', { partitions: 2, value: bytes() });
      const group = ctx.group('dlq-format');
      const { dlqTopic, originals } = await deadLetters(ctx.bus, t, group, [
        {
          key: 'k1',
          value: BINARY,
          headers: [
            ['x-repeat', 'a'],
            ['x-repeat', Buffer.from([0xff])],
          ],
          code: 'E_BAD',
          message: 'bad\nthing',
        },
        { key: null, value: Buffer.from('plain'), code: 'EVENTLINE_ERR_DECODE', message: 'not json' },
      ]);
      const read = await readDeadLetters(ctx.bus, { group, topic: t.name });
      assert.equal(read.length, 2);
      for (const [i, d] of read.entries()) {
        const o = originals[i]!;
        assert.equal(content(d), content(o), `dead letter ${i}: key, value and headers as published`);
        assert.deepEqual(d.original, {
          topic: t.name,
          partition: o.partition,
          offset: o.offset,
          timestamp: o.timestamp,
        });
        assert.deepEqual(
          { group: d.group, attempts: d.attempts, replays: d.replays, replayed: d.replayed },
          {
            group,
            attempts: 3,
            replays: 0,
            replayed: false,
          },
        );
        assert.equal(d.at.topic, dlqTopic);
      }
      assert.deepEqual(
        read.map((d) => [d.error.code, d.error.message]),
        [
          ['E_BAD', 'bad\nthing'],
          ['EVENTLINE_ERR_DECODE', 'not json'],
        ],
      );
      assert.match(read[0]!.error.stack, /bad/);
      assert.ok(Date.parse(read[0]!.lastFailure) - Date.parse(read[0]!.firstFailure) === 1000);
    },
  },
  {
    name: 'dlq: list counts the dead letters not replayed yet, with failure times and error codes',
    async run(ctx) {
      const t = await ctx.topic<Buffer>('dlq-list', { value: bytes() });
      const group = ctx.group('dlq-list');
      const at = Date.parse('2030-01-01T00:00:00.000Z');
      const { dlqTopic } = await deadLetters(ctx.bus, t, group, [
        { key: 'a', value: Buffer.from('1'), code: 'E_ONE', message: 'm', failedAt: at + 2000 },
        { key: 'b', value: Buffer.from('2'), code: 'E_TWO', message: 'm', failedAt: at },
        { key: 'c', value: Buffer.from('3'), code: 'E_ONE', message: 'm', failedAt: at + 1000 },
      ]);
      const find = async () => (await listDeadLetterTopics(ctx.bus)).find((d) => d.dlqTopic === dlqTopic);
      assert.deepEqual(await find(), {
        dlqTopic,
        kind: 'dead-letters',
        group,
        topic: t.name,
        count: 3,
        oldestFailure: '2030-01-01T00:00:00.000Z',
        newestFailure: '2030-01-01T00:00:02.000Z',
        errorCodes: { E_ONE: 2, E_TWO: 1 },
      });
      const replayed = await replayDeadLetters(ctx.bus, {
        group,
        topic: t.name,
        filter: { errorCode: 'E_ONE' },
      });
      assert.equal(replayed.replayed, 2);
      const after = await find();
      assert.deepEqual(
        [after?.count, after?.errorCodes, after?.oldestFailure],
        [1, { E_TWO: 1 }, '2030-01-01T00:00:00.000Z'],
      );
      await replayDeadLetters(ctx.bus, { group, topic: t.name });
      const empty = await find();
      assert.deepEqual(
        [empty?.count, empty?.group, empty?.topic, empty?.newestFailure],
        [0, group, t.name, undefined],
      );
    },
  },
  {
    name: "dlq: replay sends each dead letter back byte for byte with eventline.replays 1, to its key's partition, once",
    async run(ctx) {
      const t = await ctx.topic<Buffer>('dlq-replay', { partitions: 3, value: bytes() });
      const group = ctx.group('dlq-replay');
      const doomed: Doomed[] = Array.from({ length: 12 }, (_, i) => ({
        key: i === 11 ? null : `key-${i}`,
        value: i === 0 ? BINARY : Buffer.from(`value ${i}`),
        headers: { 'x-n': String(i) },
        code: 'E_FAIL',
        message: `failure ${i}`,
      }));
      const { dlqTopic, originals } = await deadLetters(ctx.bus, t, group, doomed);
      const before = await endsOf(ctx.bus, t.name);
      const result = await replayDeadLetters(ctx.bus, { group, topic: t.name });
      assert.deepEqual([result.replayed, result.skipped, result.invalid, result.dryRun], [12, 0, 0, false]);
      const replays = await readFrom(ctx.bus, t.name, before);
      assert.equal(replays.length, 12);
      const expected = originals.map((o) => ({
        content: content({ ...o, headers: [...o.headers, [REPLAYS_HEADER, Buffer.from('1')]] }),
        partition: o.key === null ? o.partition : partitionForKey(o.key, 3),
      }));
      const got = replays.map((r) => ({ content: content(r), partition: r.partition }));
      const byContent = (a: { content: string }, b: { content: string }) => (a.content < b.content ? -1 : 1);
      assert.deepEqual(got.sort(byContent), expected.sort(byContent));
      assert.deepEqual(
        result.targets.reduce((n, x) => n + x.count, 0),
        12,
      );
      // Remembered: the replay group's committed offset reached the end of the dead-letter topic.
      assert.deepEqual(
        (await ctx.bus.reader.groupOffsets(replayGroup(dlqTopic))).map((o) => [o.topic, o.offset]),
        [[dlqTopic, 12]],
      );
      const after = await endsOf(ctx.bus, t.name);
      const again = await replayDeadLetters(ctx.bus, { group, topic: t.name });
      assert.equal(again.replayed, 0);
      assert.deepEqual(await endsOf(ctx.bus, t.name), after, 'a second replay publishes nothing');
      assert.equal((await readDeadLetters(ctx.bus, { group, topic: t.name })).length, 0);
      assert.equal(
        (await readDeadLetters(ctx.bus, { group, topic: t.name }, { includeReplayed: true })).length,
        12,
      );
    },
  },
  {
    name: 'dlq: a filtered replay sends only the matching dead letters; a later replay sends the rest exactly once',
    async run(ctx) {
      const t = await ctx.topic<Buffer>('dlq-filter', { partitions: 2, value: bytes() });
      const group = ctx.group('dlq-filter');
      const doomed: Doomed[] = Array.from({ length: 10 }, (_, i) => ({
        key: `k${i}`,
        value: Buffer.from(`v${i}`),
        code: i % 3 === 0 ? 'E_TIMEOUT' : 'E_INVALID',
        message: `record ${i} failed`,
      }));
      await deadLetters(ctx.bus, t, group, doomed);
      const values = async (ends: number[]): Promise<string[]> =>
        (await readFrom(ctx.bus, t.name, ends)).map((r) => r.value!.toString()).sort();
      const start = await endsOf(ctx.bus, t.name);
      const first = await replayDeadLetters(ctx.bus, {
        group,
        topic: t.name,
        filter: { errorCode: 'E_TIMEOUT' },
      });
      assert.deepEqual([first.replayed, first.skipped], [4, 6]);
      assert.deepEqual(await values(start), ['v0', 'v3', 'v6', 'v9']);
      // Again with the same filter: nothing new.
      const mid = await endsOf(ctx.bus, t.name);
      assert.equal(
        (await replayDeadLetters(ctx.bus, { group, topic: t.name, filter: { errorCode: 'E_TIMEOUT' } }))
          .replayed,
        0,
      );
      const limited = await replayDeadLetters(ctx.bus, { group, topic: t.name, limit: 2 });
      assert.equal(limited.replayed, 2);
      const rest = await replayDeadLetters(ctx.bus, { group, topic: t.name });
      assert.equal(rest.replayed, 4);
      assert.deepEqual(await values(mid), ['v1', 'v2', 'v4', 'v5', 'v7', 'v8']);
      assert.equal((await replayDeadLetters(ctx.bus, { group, topic: t.name })).replayed, 0);
      assert.deepEqual(await values(start), doomed.map((_, i) => `v${i}`).sort());
    },
  },
  {
    name: 'dlq: replay to another topic; a dry run predicts it and changes nothing',
    async run(ctx) {
      const t = await ctx.topic<Buffer>('dlq-to', { value: bytes() });
      const other = await ctx.topic<Buffer>('dlq-to-other', { partitions: 4, value: bytes() });
      const group = ctx.group('dlq-to');
      const { dlqTopic } = await deadLetters(
        ctx.bus,
        t,
        group,
        ['a', 'b', 'c', 'd', 'e'].map((k) => ({ key: k, value: Buffer.from(k), code: 'E', message: 'm' })),
      );
      const ends = { source: await endsOf(ctx.bus, t.name), other: await endsOf(ctx.bus, other.name) };
      const dry = await replayDeadLetters(ctx.bus, { group, topic: t.name, to: other, dryRun: true });
      assert.deepEqual([dry.replayed, dry.dryRun], [5, true]);
      assert.deepEqual(await endsOf(ctx.bus, other.name), ends.other, 'a dry run publishes nothing');
      assert.deepEqual(await ctx.bus.reader.groupOffsets(replayGroup(dlqTopic)), [], 'and remembers nothing');
      const real = await replayDeadLetters(ctx.bus, { group, topic: t.name, to: other.name });
      assert.deepEqual(real.targets, dry.targets, 'the dry run predicted where each would go');
      assert.deepEqual(await endsOf(ctx.bus, t.name), ends.source, 'nothing went to the original topic');
      const landed = await readFrom(ctx.bus, other.name, ends.other);
      assert.deepEqual(landed.map((r) => r.value!.toString()).sort(), ['a', 'b', 'c', 'd', 'e']);
      for (const r of landed) assert.equal(r.partition, partitionForKey(r.key!, 4));
      await assert.rejects(
        replayDeadLetters(ctx.bus, { group, topic: t.name, to: `${other.name}-missing` }),
        (err: { code?: string }) => err.code === 'EVENTLINE_ERR_UNKNOWN_TOPIC',
      );
    },
  },
];

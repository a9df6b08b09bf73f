import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { connect, type Eventline } from '../../src/client.ts';
import { bytes, json } from '../../src/codec.ts';
import { isEventlineError } from '../../src/errors.ts';
import { silentLogger } from '../../src/observability/logger.ts';
import {
  deadLetterTopic,
  parkingLotTopic,
  parseDeadLetter,
  REPLAYS_HEADER,
  replaysOf,
  toReplay,
} from '../../src/runtime/dead-letter.ts';
import {
  compileFilter,
  type DeadLetterFilter,
  listDeadLetterTopics,
  readDeadLetters,
  replayDeadLetters,
  replayGroup,
  replayMarksTopic,
} from '../../src/runtime/replay.ts';
import { defineTopic, type Topic } from '../../src/topic.ts';
import { type Doomed, deadLetters } from '../conformance/cases/dead-letters.ts';
import { unique } from '../helpers.ts';

let bus: Eventline;
before(async () => {
  bus = await connect('sqlite::memory:', { logger: silentLogger });
});
after(() => bus.close());

async function source(partitions = 1): Promise<{ topic: Topic<Buffer, string>; group: string }> {
  const topic = defineTopic(unique('replay-src'), { partitions, value: bytes() });
  await bus.ensureTopics([topic]);
  return { topic, group: unique('replay-group') };
}

function assertCode(code: string, mentions: RegExp) {
  return (err: unknown): boolean => {
    assert.ok(isEventlineError(err), `expected an EventlineError, got ${String(err)}`);
    assert.equal(err.code, code);
    assert.match(err.message, mentions);
    return true;
  };
}

const T0 = Date.parse('2030-05-01T10:00:00.000Z');

/** Ten dead letters on two partitions: codes, messages, keys and failure times differ. */
function ten(): Doomed[] {
  return Array.from({ length: 10 }, (_, i) => ({
    key: i === 9 ? null : `k${i}`,
    value: Buffer.from(`v${i}`),
    code: i < 5 ? 'E_HTTP' : 'E_SQL',
    message: i % 2 === 0 ? `HTTP 503 from billing (${i})` : `deadlock detected (${i})`,
    failedAt: T0 + i * 60_000,
  }));
}

describe('reading dead letters', () => {
  test('filters: error code, message text or pattern, key, original partition and offsets, failure time', async () => {
    const { topic, group } = await source(2);
    const { originals } = await deadLetters(bus, topic, group, ten());
    const keys = async (filter: DeadLetterFilter): Promise<(string | null)[]> =>
      (await readDeadLetters(bus, { group, topic: topic.name }, { filter })).map(
        (d) => d.key?.toString() ?? null,
      );
    assert.deepEqual(await keys({ errorCode: 'E_SQL' }), ['k5', 'k6', 'k7', 'k8', null]);
    assert.deepEqual(await keys({ errorCode: ['E_SQL', 'E_HTTP'] }), [
      ...Array.from({ length: 9 }, (_, i) => `k${i}`),
      null,
    ]);
    assert.deepEqual(await keys({ message: 'deadlock' }), ['k1', 'k3', 'k5', 'k7', null]);
    assert.deepEqual(await keys({ message: /^HTTP 50\d/g, errorCode: 'E_SQL' }), ['k6', 'k8']);
    assert.deepEqual(await keys({ key: 'k4' }), ['k4']);
    assert.deepEqual(await keys({ key: Buffer.from('k2') }), ['k2']);
    assert.deepEqual(await keys({ key: null }), [null]);
    assert.deepEqual(await keys({ since: new Date(T0 + 3 * 60_000), until: '2030-05-01T10:06:00.000Z' }), [
      'k3',
      'k4',
      'k5',
    ]);
    assert.deepEqual(await keys({ since: T0 + 8 * 60_000 }), ['k8', null]);
    const onOne = originals.filter((o) => o.partition === 1);
    assert.deepEqual(
      await keys({ partition: 1 }),
      onOne.map((o) => o.key?.toString() ?? null),
    );
    const [, second, third] = onOne;
    assert.deepEqual(await keys({ partition: 1, offsets: { from: second!.offset, to: third!.offset } }), [
      second!.key?.toString() ?? null,
      third!.key?.toString() ?? null,
    ]);
    assert.deepEqual(await keys({ where: (d) => d.value?.toString() === 'v7' }), ['k7']);
    const limited = await readDeadLetters(
      bus,
      { group, topic: topic.name },
      { limit: 3, filter: { errorCode: 'E_SQL' } },
    );
    assert.deepEqual(
      limited.map((d) => d.key?.toString()),
      ['k5', 'k6', 'k7'],
    );
  });

  test('with a declared topic, keys and values are decoded; a value that does not decode says why', async () => {
    const { group } = await source();
    const orders = defineTopic<{ id: number }>(unique('replay-json'), { value: json() });
    await bus.ensureTopics([orders]);
    const raw = defineTopic(orders.name, { value: bytes() });
    const { dlqTopic } = await deadLetters(bus, raw, group, [
      { key: 'a', value: Buffer.from('{"id":1}'), code: 'E', message: 'm' },
      { key: 'b', value: Buffer.from('{not json'), code: 'EVENTLINE_ERR_DECODE', message: 'bad json' },
    ]);
    const [good, bad] = await readDeadLetters(bus, { group, topic: orders });
    assert.deepEqual(good?.decoded, { key: 'a', value: { id: 1 } });
    assert.equal(good?.decodeError, undefined);
    assert.equal(bad?.decoded, undefined);
    assert.equal(bad?.decodeError?.code, 'EVENTLINE_ERR_DECODE');
    assert.match(bad!.decodeError!.message, new RegExp(`${dlqTopic}/0@1: the value is not valid json`));
    const byName = await readDeadLetters(bus, { dlqTopic, topic: orders });
    assert.deepEqual(
      byName.map((d) => d.decoded?.value),
      [{ id: 1 }, undefined],
    );
    const raws = await readDeadLetters(bus, { group, topic: orders.name });
    assert.deepEqual(
      raws.map((d) => [d.decoded, d.value?.toString()]),
      [
        [undefined, '{"id":1}'],
        [undefined, '{not json'],
      ],
    );
  });

  test('an unknown dead-letter topic, a bad limit or a bad time are refused with a code', async () => {
    await assert.rejects(
      readDeadLetters(bus, { group: 'nobody', topic: 'nothing' }),
      assertCode('EVENTLINE_ERR_UNKNOWN_TOPIC', /no dead letters in dlq\.nobody\.nothing/),
    );
    const { topic, group } = await source();
    await deadLetters(bus, topic, group, ten().slice(0, 1));
    await assert.rejects(
      readDeadLetters(bus, { group, topic: topic.name }, { limit: 0 }),
      assertCode('EVENTLINE_ERR_INVALID_ARGUMENT', /limit must be a positive integer/),
    );
    assert.throws(
      () => compileFilter({ since: 'yesterday-ish' }),
      assertCode('EVENTLINE_ERR_INVALID_ARGUMENT', /since/),
    );
    await assert.rejects(
      replayDeadLetters(bus, { group, topic: topic.name, rate: 0 }),
      assertCode('EVENTLINE_ERR_INVALID_ARGUMENT', /rate must be a positive number/),
    );
    await assert.rejects(
      replayDeadLetters(bus, { group: '', topic: topic.name }),
      assertCode('EVENTLINE_ERR_INVALID_ARGUMENT', /consumer group/),
    );
  });
});

describe('replaying dead letters', () => {
  test('the replay header counts up; a replayed record that fails again replays with 2', async () => {
    const { topic, group } = await source();
    const { dlqTopic } = await deadLetters(bus, topic, group, [
      {
        key: 'a',
        value: Buffer.from('x'),
        headers: { [REPLAYS_HEADER]: '1', keep: 'me' },
        code: 'E',
        message: 'm',
      },
    ]);
    const [stored] = await bus.engine.fetch(dlqTopic, 0, 0, { maxRecords: 1 });
    const dead = parseDeadLetter(stored!);
    assert.equal(dead?.replays, 1);
    const replay = toReplay(dead!, 0);
    assert.equal(replaysOf(replay.headers), 2);
    const before = (await bus.reader.offsets(topic.name))[0]!.end;
    await replayDeadLetters(bus, { group, topic: topic.name });
    const [back] = await bus.engine.fetch(topic.name, 0, before, { maxRecords: 10 });
    assert.deepEqual(
      back!.headers.filter(([n]) => n === REPLAYS_HEADER || n === 'keep').map(([n, v]) => [n, v.toString()]),
      [
        ['keep', 'me'],
        [REPLAYS_HEADER, '2'],
      ],
    );
  });

  test('keyless records go back to their original partition', async () => {
    const { topic, group } = await source(3);
    const doomed = Array.from({ length: 6 }, (_, i) => ({
      key: null,
      value: Buffer.from(`n${i}`),
      code: 'E',
      message: 'm',
    }));
    const { originals } = await deadLetters(bus, topic, group, doomed);
    const result = await replayDeadLetters(bus, { group, topic: topic.name, dryRun: true });
    const perPartition = new Map<number, number>();
    for (const o of originals) perPartition.set(o.partition, (perPartition.get(o.partition) ?? 0) + 1);
    assert.deepEqual(
      result.targets.map((t) => [t.partition, t.count]),
      [...perPartition].sort((a, b) => a[0] - b[0]),
    );
  });

  test('marks of a filtered replay are removed once the settled prefix passes them', async () => {
    const { topic, group } = await source();
    const { dlqTopic } = await deadLetters(bus, topic, group, ten());
    const marksTopic = replayMarksTopic(dlqTopic);
    await replayDeadLetters(bus, { group, topic: topic.name, dryRun: true, filter: { errorCode: 'E_SQL' } });
    assert.ok(!(await bus.admin.listTopics()).includes(marksTopic), 'a dry run creates nothing');
    const first = await replayDeadLetters(bus, { group, topic: topic.name, filter: { errorCode: 'E_SQL' } });
    assert.equal(first.replayed, 5);
    const live = async (): Promise<string[]> => {
      const records = await bus.engine.fetch(marksTopic, 0, 0, { maxRecords: 100 });
      const latest = new Map(records.map((r) => [r.key!.toString(), r.value]));
      return [...latest].filter(([, v]) => v !== null).map(([k]) => k);
    };
    assert.deepEqual(await live(), ['0:5', '0:6', '0:7', '0:8', '0:9']);
    assert.deepEqual(
      await bus.reader.groupOffsets(replayGroup(dlqTopic)),
      [],
      'the first one failed with E_HTTP',
    );
    const rest = await replayDeadLetters(bus, { group, topic: topic.name });
    assert.equal(rest.replayed, 5);
    assert.deepEqual(await live(), []);
    assert.deepEqual(
      (await bus.reader.groupOffsets(replayGroup(dlqTopic))).map((o) => o.offset),
      [10],
    );
  });

  test('records in a dead-letter topic that are not dead letters are counted and passed over', async () => {
    const { topic, group } = await source();
    const { dlqTopic } = await deadLetters(bus, topic, group, ten().slice(0, 2));
    await bus.engine.append(dlqTopic, [
      { partition: 0, key: null, value: Buffer.from('stray'), headers: [], timestamp: Date.now() },
    ]);
    const result = await replayDeadLetters(bus, { group, topic: topic.name });
    assert.deepEqual([result.replayed, result.invalid], [2, 1]);
    assert.deepEqual(
      (await bus.reader.groupOffsets(replayGroup(dlqTopic))).map((o) => o.offset),
      [3],
    );
  });

  test('rate and batch size pace the batches; progress after each; a signal stops it after the batch', async () => {
    const { topic, group } = await source();
    await deadLetters(bus, topic, group, ten());
    const progress: number[] = [];
    const stop = new AbortController();
    const result = await replayDeadLetters(bus, {
      group,
      topic: topic.name,
      batchSize: 3,
      rate: 1000,
      signal: stop.signal,
      onProgress: (p) => {
        progress.push(p.replayed);
        if (p.replayed >= 6) stop.abort();
      },
    });
    assert.deepEqual(progress, [3, 6]);
    assert.deepEqual([result.replayed, result.stopped], [6, true]);
    const rest = await replayDeadLetters(bus, { group, topic: topic.name, batchSize: 3 });
    assert.deepEqual([rest.replayed, rest.stopped], [4, false]);
  });

  test('the parking lot is listed, read and replayed like a dead-letter topic', async () => {
    const { topic, group } = await source();
    const parking = parkingLotTopic(group, topic.name);
    await deadLetters(
      bus,
      topic,
      group,
      [
        {
          key: 'p',
          value: Buffer.from('parked'),
          headers: { [REPLAYS_HEADER]: '3' },
          code: 'E',
          message: 'again',
        },
      ],
      parking,
    );
    const listed = (await listDeadLetterTopics(bus)).find((t) => t.dlqTopic === parking);
    assert.deepEqual(
      [listed?.kind, listed?.count, listed?.group, listed?.topic],
      ['parking-lot', 1, group, topic.name],
    );
    assert.ok(!(await bus.admin.listTopics()).includes(deadLetterTopic(group, topic.name)));
    const [parked] = await readDeadLetters(bus, { group, topic: topic.name, parkingLot: true });
    assert.equal(parked?.replays, 3);
    const result = await replayDeadLetters(bus, { group, topic: topic.name, parkingLot: true });
    assert.deepEqual([result.dlqTopic, result.replayed], [parking, 1]);
  });
});

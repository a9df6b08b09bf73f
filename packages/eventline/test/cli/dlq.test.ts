import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { connect } from '../../src/client.ts';
import { bytes } from '../../src/codec.ts';
import { silentLogger } from '../../src/observability/logger.ts';
import { partitionForKey } from '../../src/partitioner.ts';
import { REPLAYS_HEADER } from '../../src/runtime/dead-letter.ts';
import { defineTopic } from '../../src/topic.ts';
import { type Doomed, deadLetters } from '../conformance/cases/dead-letters.ts';

const BIN = new URL('../../bin/eventline.mjs', import.meta.url).pathname;
const dir = mkdtempSync(join(tmpdir(), 'eventline-cli-dlq-'));
const url = `sqlite:${join(dir, 'events.db')}`;
after(() => rmSync(dir, { recursive: true, force: true }));

const GROUP = 'billing';
const orders = defineTopic('orders', { partitions: 3, value: bytes() });
const audit = defineTopic('audit', { partitions: 2, value: bytes() });
const T0 = Date.parse('2030-05-01T10:00:00.000Z');
const BINARY = Buffer.from([0xff, 0x00, 0xfe]);

/** Runs the real command against the file; returns exit code, stdout and stderr. */
function cli(...args: string[]): { code: number | null; stdout: string; stderr: string } {
  const res = spawnSync(process.execPath, [BIN, ...args], {
    env: { ...process.env, EVENTLINE_URL: url },
    encoding: 'utf8',
  });
  return { code: res.status, stdout: res.stdout, stderr: res.stderr };
}

function lines(stdout: string): Record<string, unknown>[] {
  return stdout
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

/** Values of the records in a topic, sorted, and where each landed. */
async function contents(
  topic: string,
): Promise<{ value: string; partition: number; replays: string | undefined }[]> {
  const bus = await connect(url, { logger: silentLogger });
  try {
    const out = [];
    for (const p of await bus.reader.offsets(topic)) {
      for (const r of await bus.engine.fetch(topic, p.partition, p.start, { maxRecords: 100 })) {
        const replays = r.headers.find(([n]) => n === REPLAYS_HEADER)?.[1].toString();
        out.push({ value: r.value!.toString('base64'), partition: r.partition, replays });
      }
    }
    return out.sort((a, b) => (a.value < b.value ? -1 : 1));
  } finally {
    await bus.close();
  }
}

const doomed: Doomed[] = [
  {
    key: 'alice',
    value: Buffer.from('{"n":1}'),
    code: 'E_HTTP',
    message: 'HTTP 503 from billing',
    failedAt: T0,
  },
  {
    key: 'bob',
    value: BINARY,
    headers: { 'x-trace': 't-1' },
    code: 'EVENTLINE_ERR_DECODE',
    message: 'not json',
    failedAt: T0 + 60_000,
  },
  {
    key: 'carol',
    value: Buffer.from('{"n":3}'),
    code: 'E_HTTP',
    message: 'HTTP 504 gateway',
    failedAt: T0 + 120_000,
  },
];

describe('eventline dlq on a sqlite file', () => {
  before(async () => {
    const bus = await connect(url, { logger: silentLogger });
    await bus.ensureTopics([orders, audit]);
    await deadLetters(bus, orders, GROUP, doomed);
    await bus.close();
  });

  test('list prints a table of dead-letter topics, or one JSON line each', () => {
    const human = cli('dlq', 'list');
    assert.equal(human.code, 0, human.stderr);
    const [header, row, ...rest] = human.stdout.trimEnd().split('\n');
    assert.match(header!, /^DEAD-LETTER TOPIC +GROUP +TOPIC +COUNT +OLDEST FAILURE +NEWEST FAILURE +ERRORS$/);
    assert.match(
      row!,
      /^dlq\.billing\.orders +billing +orders +3 +2030-05-01T10:00:00\.000Z +2030-05-01T10:02:00\.000Z +E_HTTP x2, EVENTLINE_ERR_DECODE x1$/,
    );
    assert.deepEqual(rest, []);
    assert.deepEqual(lines(cli('dlq', 'list', '--json').stdout), [
      {
        dlqTopic: 'dlq.billing.orders',
        kind: 'dead-letters',
        group: GROUP,
        topic: 'orders',
        count: 3,
        oldestFailure: '2030-05-01T10:00:00.000Z',
        newestFailure: '2030-05-01T10:02:00.000Z',
        errorCodes: { E_HTTP: 2, EVENTLINE_ERR_DECODE: 1 },
      },
    ]);
  });

  test('show prints a table; filters, --limit, --value and --stack; --json lines', () => {
    const human = cli('dlq', 'show', GROUP, 'orders');
    assert.equal(human.code, 0, human.stderr);
    const rows = human.stdout.trimEnd().split('\n');
    assert.match(rows[0]!, /^ORIGIN +TIMESTAMP +KEY +ATTEMPTS +FIRST FAILURE +LAST FAILURE +REPLAYS +ERROR$/);
    assert.match(
      rows[1]!,
      /^orders\/\d@0 +\S+Z +alice +3 +2030-05-01T09:59:59\.000Z +2030-05-01T10:00:00\.000Z +0 +E_HTTP: HTTP 503 from billing$/,
    );
    assert.equal(rows.length, 4);
    const keys = (...args: string[]): unknown[] =>
      lines(cli('dlq', 'show', GROUP, 'orders', '--json', ...args).stdout).map((l) => l.key);
    assert.deepEqual(keys('--error-code', 'E_HTTP'), ['alice', 'carol']);
    assert.deepEqual(keys('--error-code', 'E_HTTP', '--error-code', 'EVENTLINE_ERR_DECODE'), [
      'alice',
      'bob',
      'carol',
    ]);
    assert.deepEqual(keys('--match', 'gateway'), ['carol']);
    assert.deepEqual(keys('--match', '/^HTTP 50[34]/'), ['alice', 'carol']);
    assert.deepEqual(keys('--key', 'bob'), ['bob']);
    assert.deepEqual(keys('--since', '2030-05-01T10:01:00Z', '--until', '2030-05-01T10:02:00Z'), ['bob']);
    const limited = cli('dlq', 'show', 'dlq.billing.orders', '--limit', '1', '--json');
    assert.deepEqual(
      lines(limited.stdout).map((l) => l.key),
      ['alice'],
    );
    assert.match(limited.stderr, /more dead letters than the 1 shown; use --limit/);
    const [bob] = lines(
      cli('dlq', 'show', GROUP, 'orders', '--key', 'bob', '--json', '--value', '--stack').stdout,
    );
    assert.deepEqual(
      { ...bob, partition: undefined, offset: undefined, timestamp: undefined, stack: undefined },
      {
        dlqTopic: 'dlq.billing.orders',
        dlqPartition: 0,
        dlqOffset: 1,
        topic: 'orders',
        partition: undefined,
        offset: undefined,
        timestamp: undefined,
        key: 'bob',
        group: GROUP,
        attempts: 3,
        firstFailure: '2030-05-01T10:00:59.000Z',
        lastFailure: '2030-05-01T10:01:00.000Z',
        errorCode: 'EVENTLINE_ERR_DECODE',
        errorMessage: 'not json',
        replays: 0,
        replayed: false,
        stack: undefined,
        value: BINARY.toString('base64'),
        valueEncoding: 'base64',
        headers: bob!.headers,
      },
    );
    assert.equal(bob!.partition, partitionForKey(Buffer.from('bob'), 3));
    assert.equal((bob!.headers as Record<string, string>)['x-trace'], 't-1');
    assert.match(bob!.stack as string, /^Error: not json\n +at /);
    const detail = cli('dlq', 'show', GROUP, 'orders', '--key', 'bob', '--value', '--stack').stdout;
    assert.match(
      detail,
      new RegExp(
        `\n {2}value: base64:${BINARY.toString('base64').replace(/[+/]/g, '\\$&')}\n {2}headers: .*x-trace=t-1`,
      ),
    );
    assert.match(detail, /\n {2}stack:\n {4}Error: not json\n {8}at /);
  });

  test('replay: a dry run changes nothing; a filtered replay, then the rest, each exactly once', async () => {
    const before = await contents('orders');
    const dry = cli('dlq', 'replay', GROUP, 'orders', '--dry-run');
    assert.equal(dry.code, 0, dry.stderr);
    assert.match(dry.stdout, /^would replay 3 dead letters from dlq\.billing\.orders to orders\/\d x\d/);
    assert.deepEqual(await contents('orders'), before);
    const filtered = cli('dlq', 'replay', GROUP, 'orders', '--error-code', 'E_HTTP');
    assert.equal(filtered.code, 0, filtered.stderr);
    assert.match(
      filtered.stdout,
      /^replayed 2 dead letters from dlq\.billing\.orders to orders\/\d x\d.*\n1 left in place \(filter or --limit\)\n$/,
    );
    assert.deepEqual(
      lines(cli('dlq', 'show', GROUP, 'orders', '--json').stdout).map((l) => l.key),
      ['bob'],
    );
    const all = lines(cli('dlq', 'show', GROUP, 'orders', '--json', '--all').stdout);
    assert.deepEqual(
      all.map((l) => [l.key, l.replayed]),
      [
        ['alice', true],
        ['bob', false],
        ['carol', true],
      ],
    );
    const rest = cli('dlq', 'replay', GROUP, 'orders', '--json');
    assert.equal(rest.code, 0, rest.stderr);
    const [result] = lines(rest.stdout);
    assert.deepEqual([result?.replayed, result?.skipped, result?.dryRun], [1, 0, false]);
    assert.deepEqual(result?.targets, [
      { topic: 'orders', partition: partitionForKey(Buffer.from('bob'), 3), count: 1 },
    ]);
    assert.match(
      cli('dlq', 'replay', GROUP, 'orders').stdout,
      /^replayed 0 dead letters from dlq\.billing\.orders\n$/,
    );
    const after = await contents('orders');
    const replayed = after.filter((r) => r.replays === '1').map((r) => r.value);
    assert.deepEqual(replayed.sort(), doomed.map((d) => d.value.toString('base64')).sort());
    assert.equal(after.length, 6);
    assert.match(cli('dlq', 'list').stdout, /\ndlq\.billing\.orders +billing +orders +0 +- +- +-\n/);
  });

  test('replay --to sends them to another topic, by the key on its partitions', async () => {
    const bus = await connect(url, { logger: silentLogger });
    await deadLetters(bus, orders, 'shipping', doomed.slice(0, 2));
    await bus.close();
    const res = cli('dlq', 'replay', 'shipping', 'orders', '--to', 'audit', '--rate', '100/s');
    assert.equal(res.code, 0, res.stderr);
    assert.match(res.stdout, /^replayed 2 dead letters from dlq\.shipping\.orders to audit\//);
    const landed = await contents('audit');
    assert.deepEqual(
      landed.map((r) => [r.value, r.partition]),
      [
        [Buffer.from('{"n":1}').toString('base64'), partitionForKey(Buffer.from('alice'), 2)],
        [BINARY.toString('base64'), partitionForKey(Buffer.from('bob'), 2)],
      ].sort((a, b) => (a[0]! < b[0]! ? -1 : 1)),
    );
  });

  test('mistakes: exit 2 with a usage line; an unknown dead-letter topic exits 1 with its code', () => {
    const offsets = cli('dlq', 'show', GROUP, 'orders', '--offsets', '5');
    assert.equal(offsets.code, 2);
    assert.match(offsets.stderr, /^eventline: usage: --offsets needs FROM\.\.TO/);
    const rate = cli('dlq', 'replay', GROUP, 'orders', '--rate', 'fast');
    assert.equal(rate.code, 2);
    assert.match(rate.stderr, /--rate needs records per second/);
    const since = cli('dlq', 'show', GROUP, 'orders', '--since', 'the dawn of time');
    assert.equal(since.code, 2);
    const unknown = cli('dlq', 'show', 'nobody', 'orders');
    assert.equal(unknown.code, 1);
    assert.match(
      unknown.stderr,
      /^eventline: error: there are no dead letters in dlq\.nobody\.orders.*\[EVENTLINE_ERR_UNKNOWN_TOPIC\]\n$/,
    );
    const missingTarget = cli('dlq', 'replay', GROUP, 'orders', '--to', 'nowhere');
    assert.equal(missingTarget.code, 1);
    assert.match(missingTarget.stderr, /\[EVENTLINE_ERR_UNKNOWN_TOPIC\]/);
  });
});

import assert from 'node:assert/strict';
import { before, describe, test } from 'node:test';
import { connect } from '../../src/client.ts';
import { silentLogger } from '../../src/observability/logger.ts';
import { type Run, runScript, type Started, startScript } from '../helpers.ts';

const BIN = new URL('../../bin/eventline.mjs', import.meta.url).pathname;

/** Runs the real command against an engine URL; resolves with its exit code and output. */
export function run(url: string, args: string[], input?: string): Promise<Run> {
  return runScript(BIN, args, { env: { ...process.env, EVENTLINE_URL: url }, input: input ?? '' });
}

/** Starts a long-running command (`tail`) against an engine URL: its output so far, and its exit. */
export function start(url: string, args: string[]): Started {
  return startScript(BIN, args, { env: { ...process.env, EVENTLINE_URL: url } });
}

export function jsonLines(s: string): Record<string, unknown>[] {
  return s
    .trim()
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

/** The CLI's behaviour, run as a real process against an engine URL. */
export function cliSuite(name: string, url: string): void {
  const cli = (args: string[], input?: string): Promise<Run> => run(url, args, input);
  before(async () => {
    // Against a long-lived broker, topics of an earlier run would still be there.
    const bus = await connect(url, { logger: silentLogger });
    for (const t of await bus.admin.listTopics()) if (t.startsWith('cli.')) await bus.admin.deleteTopic(t);
    await bus.close();
  });
  describe(`the eventline command on ${name}`, () => {
    test('topics create is idempotent; list and describe show the topic', async () => {
      const first = await cli(['topics', 'create', 'cli.orders', '--partitions', '3', '--retention', '1d']);
      assert.equal(first.code, 0, first.stderr);
      assert.match(first.stdout, /created topic cli\.orders/);
      const again = await cli(['topics', 'create', 'cli.orders', '--partitions', '3', '--json']);
      assert.deepEqual(jsonLines(again.stdout), [{ topic: 'cli.orders', result: 'exists' }]);
      const list = await cli(['topics', 'list', '--json']);
      assert.ok(jsonLines(list.stdout).some((l) => l.topic === 'cli.orders'));
      const describeHuman = await cli(['topics', 'describe', 'cli.orders']);
      assert.match(describeHuman.stdout, /partitions: 3 {3}cleanup: delete {3}retention: 1d/);
      assert.match(describeHuman.stdout, /PARTITION {2}START {2}END {2}RECORDS/);
      const [d] = jsonLines((await cli(['topics', 'describe', 'cli.orders', '--json'])).stdout);
      assert.equal((d!.partitions as unknown[]).length, 3);
      assert.equal((d!.config as { retentionMs: number }).retentionMs, 86_400_000);
    });

    test('produce reads lines with keys and headers; consume prints them with everything stored', async () => {
      await cli(['topics', 'create', 'cli.lines', '--partitions', '2']);
      const produced = await cli(
        ['produce', 'cli.lines', '--key-separator', ':', '--header', 'origin=cli', '--header', 'x=1=2'],
        'alice:hello\nbob:{"n":1}\nalice:again\n',
      );
      assert.equal(produced.code, 0, produced.stderr);
      assert.match(produced.stdout, /3 records written to cli\.lines/);
      const consumed = await cli(['consume', 'cli.lines', '--from-beginning', '--max', '3', '--json']);
      assert.equal(consumed.code, 0, consumed.stderr);
      const records = jsonLines(consumed.stdout);
      assert.equal(records.length, 3);
      const alice = records.filter((r) => r.key === 'alice').map((r) => r.value);
      assert.deepEqual(alice, ['hello', 'again'], "one key's records stay in order");
      for (const r of records) {
        assert.deepEqual(Object.keys(r).sort(), [
          'headers',
          'key',
          'offset',
          'partition',
          'timestamp',
          'topic',
          'value',
        ]);
        const headers = r.headers as Record<string, string>;
        assert.equal(headers.origin, 'cli');
        assert.equal(headers.x, '1=2');
        assert.equal(headers.ce_specversion, '1.0');
      }
      assert.match(consumed.stderr, /3 records consumed/);
      const human = await cli(['consume', 'cli.lines', '--from-beginning', '--max', '1', '--partition', '0']);
      assert.match(human.stdout, /^cli\.lines\/0@0 {2}\S+Z {2}key=\w+\n {2}headers: ce_id=/);
    });

    test('a fixed key and partition apply to every line; --timeout ends an idle consume', async () => {
      await cli(['topics', 'create', 'cli.keyed', '--partitions', '4']);
      await cli(['produce', 'cli.keyed', '--key', 'same', '--partition', '2'], 'a\nb\n');
      const res = await cli(['consume', 'cli.keyed', '--from-beginning', '--timeout', '1', '--json']);
      assert.equal(res.code, 0);
      const records = jsonLines(res.stdout);
      assert.deepEqual(
        records.map((r) => [r.partition, r.key, r.value]),
        [
          [2, 'same', 'a'],
          [2, 'same', 'b'],
        ],
      );
    });

    test('consume with a group commits what it printed; groups describe shows lag; reset-offsets rewinds', async () => {
      await cli(['topics', 'create', 'cli.group', '--partitions', '1']);
      await cli(['produce', 'cli.group'], 'one\ntwo\nthree\nfour\n');
      const first = await cli([
        'consume',
        'cli.group',
        '--group',
        'cli-g',
        '--from-beginning',
        '--max',
        '2',
        '--json',
      ]);
      assert.deepEqual(
        jsonLines(first.stdout).map((r) => r.value),
        ['one', 'two'],
      );
      const [d] = jsonLines((await cli(['groups', 'describe', 'cli-g', '--json'])).stdout);
      const [p] = d!.partitions as { committed: number; end: number; lag: number }[];
      assert.deepEqual([p!.committed, p!.end, p!.lag], [2, 4, 2], 'only what was printed is committed');
      const human = await cli(['groups', 'describe', 'cli-g']);
      assert.match(human.stdout, /state: Empty/);
      assert.match(human.stdout, /LAG {2}LAG TIME {2}OWNER/);
      assert.match(human.stdout, /cli\.group {2}0 {10}2 {10}4 {4}2 {4}\S+ +-/);
      const next = await cli(['consume', 'cli.group', '--group', 'cli-g', '--max', '2', '--json']);
      assert.deepEqual(
        jsonLines(next.stdout).map((r) => r.value),
        ['three', 'four'],
      );
      const dry = await cli([
        'groups',
        'reset-offsets',
        'cli-g',
        '--topic',
        'cli.group',
        '--to-offset',
        '1',
        '--dry-run',
      ]);
      assert.match(dry.stdout, /cli\.group\/0 -> 1 \(dry run\)/);
      const reset = await cli([
        'groups',
        'reset-offsets',
        'cli-g',
        '--topic',
        'cli.group:0',
        '--to-earliest',
        '--json',
      ]);
      assert.equal(reset.code, 0, reset.stderr);
      assert.deepEqual(jsonLines(reset.stdout), [
        { group: 'cli-g', topic: 'cli.group', partition: 0, offset: 0, dryRun: false },
      ]);
      const again = await cli(['consume', 'cli.group', '--group', 'cli-g', '--max', '4', '--json']);
      assert.equal(jsonLines(again.stdout).length, 4);
      assert.ok(jsonLines((await cli(['groups', 'list', '--json'])).stdout).some((g) => g.group === 'cli-g'));
    });

    test('reset-offsets is refused while the group has a live member', async () => {
      await cli(['topics', 'create', 'cli.live']);
      const bus = await connect(url, { logger: silentLogger });
      const sub = bus.subscribe({ group: 'cli-live', topics: ['cli.live'], handler: () => {} });
      await sub.ready();
      try {
        const res = await cli(['groups', 'reset-offsets', 'cli-live', '--topic', 'cli.live', '--to-latest']);
        assert.equal(res.code, 1);
        assert.match(
          res.stderr,
          /^eventline: error: consumer group cli-live has 1 live member\(s\).*\[EVENTLINE_ERR_GROUP_NOT_EMPTY\]\n$/,
        );
      } finally {
        await bus.close();
      }
    });

    test('errors are one clear line with exit 1; usage mistakes exit 2', async () => {
      const cases: [string[], number, RegExp, string?][] = [
        [
          ['topics', 'create', 'bad name'],
          1,
          /character " " is not allowed.*EVENTLINE_ERR_INVALID_TOPIC_NAME/,
        ],
        [
          ['topics', 'describe', 'cli.missing'],
          1,
          /topic cli\.missing does not exist.*EVENTLINE_ERR_UNKNOWN_TOPIC/,
        ],
        [['consume', 'cli.missing', '--max', '1'], 1, /does not exist/],
        [['frobnicate'], 2, /unknown command: frobnicate/],
        [['topics', 'create'], 2, /expected: eventline topics create NAME/],
        [['topics', 'create', 'x', '--partitions', 'many'], 2, /--partitions needs a whole number/],
        [['topics', 'list', '--colour'], 2, /Unknown option '--colour'/],
        [['groups', 'reset-offsets', 'g', '--topic', 'cli.orders'], 2, /exactly one of --to-earliest/],
        [['produce', 'cli.orders', '--key', 'k', '--key-separator', ':'], 2, /--key or --key-separator/],
        [
          ['topics', 'list', '--url', 'mysql://nope'],
          1,
          /must start with sqlite: or kafka:\/\/.*EVENTLINE_ERR_INVALID_URL/,
        ],
      ];
      for (const [args, code, message] of cases) {
        const res = await cli(args);
        assert.equal(res.code, code, `${args.join(' ')}: ${res.stderr}`);
        assert.match(res.stderr, message, args.join(' '));
        assert.equal(res.stderr.trim().split('\n').length, 1, `one line for: ${args.join(' ')}`);
      }
    });

    test('a bad produce line is reported after the good lines before it are written', async () => {
      await cli(['topics', 'create', 'cli.partial']);
      const res = await cli(
        ['produce', 'cli.partial', '--key-separator', ':'],
        'a:1\nb:2\nno separator here\nc:3\n',
      );
      assert.equal(res.code, 1);
      assert.match(res.stderr, /line 3 has no key separator ":"/);
      assert.match(res.stdout, /2 records written/);
      const consumed = await cli(['consume', 'cli.partial', '--from-beginning', '--timeout', '1', '--json']);
      assert.deepEqual(
        jsonLines(consumed.stdout).map((r) => r.value),
        ['1', '2'],
      );
    });

    test('help lists every command; version prints the package version', async () => {
      const help = await cli(['help']);
      assert.equal(help.code, 0);
      for (const c of [
        'topics create',
        'topics list',
        'topics describe',
        'topics delete',
        'produce',
        'consume',
        'groups list',
        'groups describe',
        'groups reset-offsets',
        'topics apply',
        'tail',
      ]) {
        assert.ok(help.stdout.includes(c), c);
      }
      const none = await cli([]);
      assert.equal(none.code, 2);
      assert.match((await cli(['--version'])).stdout, /^\d+\.\d+\.\d+\n$/);
    });

    test('topics delete removes the topic', async () => {
      await cli(['topics', 'create', 'cli.gone']);
      assert.equal((await cli(['topics', 'delete', 'cli.gone'])).code, 0);
      assert.equal((await cli(['topics', 'describe', 'cli.gone'])).code, 1);
    });
  });
}

/**
 * The operator commands (`topics apply`, `tail`, lag in `groups describe`, progress) run as real
 * processes against an engine URL: the same cases on the embedded engine and on Kafka.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { connect, type Eventline } from '../../src/client.ts';
import { bytes } from '../../src/codec.ts';
import { silentLogger } from '../../src/observability/logger.ts';
import { defineTopic } from '../../src/topic.ts';
import { deadLetters } from '../conformance/cases/dead-letters.ts';
import { unique, waitFor } from '../helpers.ts';
import { jsonLines, run, start } from './suite.ts';

export function operationsSuite(name: string, url: string): void {
  const cli = (args: string[]) => run(url, args);
  const dir = mkdtempSync(join(tmpdir(), 'eventline-ops-'));
  const prefix = unique('ops');
  let bus: Eventline;
  const file = (fileName: string, text: string): string => {
    const path = join(dir, fileName);
    writeFileSync(path, text);
    return path;
  };
  before(async () => {
    bus = await connect(url, { logger: silentLogger });
  });
  after(async () => {
    for (const t of await bus.admin.listTopics()) if (t.startsWith(prefix)) await bus.admin.deleteTopic(t);
    await bus.close();
    rmSync(dir, { recursive: true, force: true });
  });

  describe(`operator commands on ${name}`, () => {
    test('topics apply: a dry run first, --yes creates, then everything is unchanged', async () => {
      const [a, b, c] = [`${prefix}.plan-a`, `${prefix}.plan-b`, `${prefix}.plan-c`];
      const path = file(
        'plan.yaml',
        [
          'topics:',
          `  - name: ${a}`,
          '    partitions: 2',
          '    retention: 2h',
          '    key: userId',
          `  - name: ${b}`,
          '    partitions: 1',
          '    retention: 2h',
          `  - name: ${c}`,
          '    partitions: 2',
          '    cleanup: delete',
          '    maxMessageBytes: 512KiB',
          '',
        ].join('\n'),
      );
      const dry = await cli(['topics', 'apply', path]);
      assert.equal(dry.code, 0, dry.stderr);
      assert.match(dry.stdout, new RegExp(`^create +${a} +key userId +partitions 2, retention 2h$`, 'm'));
      assert.match(dry.stdout, new RegExp(`^create +${b} +partitions 1, retention 2h$`, 'm'));
      assert.match(
        dry.stdout,
        new RegExp(`^create +${c} +partitions 2, cleanup delete, maxMessageBytes 512KiB$`, 'm'),
      );
      assert.match(dry.stdout, /^plan: 3 to create, 0 to alter, 0 unchanged, 0 drifted/m);
      assert.match(dry.stdout, /^dry run: nothing was changed; apply with --yes$/m);
      const topics = await bus.admin.listTopics();
      assert.deepEqual(
        [a, b, c].filter((t) => topics.includes(t)),
        [],
        'a dry run creates nothing',
      );

      const applied = await cli(['topics', 'apply', path, '--yes', '--json']);
      assert.equal(applied.code, 0, applied.stderr);
      assert.deepEqual(
        jsonLines(applied.stdout).map((l) => [l.topic, l.action, l.applied, l.dryRun]),
        [
          [a, 'create', true, false],
          [b, 'create', true, false],
          [c, 'create', true, false],
        ],
      );
      assert.equal(jsonLines(applied.stdout)[0]!.key, 'userId', 'the key is carried through');
      const described = await bus.admin.describeTopic(c);
      assert.equal(described.partitions.length, 2);
      assert.equal(described.config.maxMessageBytes, 512 * 1024);

      for (const args of [[], ['--yes']]) {
        const again = await cli(['topics', 'apply', path, '--json', ...args]);
        assert.equal(again.code, 0, again.stderr);
        assert.deepEqual(
          jsonLines(again.stdout).map((l) => [l.action, l.applied, l.differences]),
          [
            ['unchanged', false, []],
            ['unchanged', false, []],
            ['unchanged', false, []],
          ],
          `a second apply ${args.join(' ')} changes nothing`,
        );
      }
    });

    test('topics apply: changes made behind its back are altered back or reported as drift', async () => {
      const [a, b, c] = [`${prefix}.drift-a`, `${prefix}.drift-b`, `${prefix}.drift-c`];
      const path = file(
        'drift.yaml',
        [
          'topics:',
          `  ${a}: { partitions: 2, key: orderId }`,
          `  ${b}: { partitions: 1, retention: 2h }`,
          `  ${c}: { partitions: 1 }`,
          '',
        ].join('\n'),
      );
      assert.equal((await cli(['topics', 'apply', path, '--yes'])).code, 0);
      // Someone grows a's partitions and shortens b's retention with the engine directly.
      await bus.engine.alterTopic(a, { partitions: 4 });
      await bus.engine.alterTopic(b, { retentionMs: 3_600_000 });

      const dry = await cli(['topics', 'apply', path]);
      assert.equal(dry.code, 0, dry.stderr);
      assert.match(
        dry.stdout,
        new RegExp(
          `^drift +${a} +key orderId +left alone: partitions declared 2, has 4 \\(partitions never shrink\\)$`,
          'm',
        ),
      );
      assert.match(dry.stdout, new RegExp(`^alter +${b} +retention 1h -> 2h$`, 'm'));
      assert.match(dry.stdout, new RegExp(`^unchanged +${c}$`, 'm'));
      assert.match(dry.stdout, /^plan: 0 to create, 1 to alter, 1 unchanged, 1 drifted/m);

      const applied = await cli(['topics', 'apply', path, '--yes', '--json']);
      assert.equal(applied.code, 0, applied.stderr);
      assert.deepEqual(
        jsonLines(applied.stdout).map((l) => [l.topic, l.action, l.applied, l.differences]),
        [
          [a, 'drift', false, [{ setting: 'partitions', declared: 2, actual: 4, applicable: false }]],
          [
            b,
            'alter',
            true,
            [{ setting: 'retentionMs', declared: 7_200_000, actual: 3_600_000, applicable: true }],
          ],
          [c, 'unchanged', false, []],
        ],
      );
      assert.equal((await bus.admin.describeTopic(b)).config.retentionMs, 7_200_000, 'retention restored');
      assert.equal((await bus.admin.describeTopic(a)).partitions.length, 4, 'partitions never shrink');

      const after = await cli(['topics', 'apply', path, '--json']);
      assert.deepEqual(
        jsonLines(after.stdout).map((l) => l.action),
        ['drift', 'unchanged', 'unchanged'],
      );
    });

    test('topics apply: replication is a note on an engine without it, and drift on Kafka', async () => {
      const t = `${prefix}.replicated`;
      const replicated = bus.engine.capabilities.replication;
      // One broker in the Kafka tests: replication 1 is what it can create.
      const created = file(
        'replicated.yaml',
        `topics:\n  ${t}: { partitions: 1, replication: ${replicated ? 1 : 3} }\n`,
      );
      const first = await cli(['topics', 'apply', created, '--yes', '--json']);
      assert.equal(first.code, 0, first.stderr);
      const [line] = jsonLines(first.stdout);
      assert.equal(line!.action, 'create');
      if (!replicated) {
        assert.deepEqual(line!.notes, [
          'replicationFactor 3 is not meaningful on this engine (it keeps one copy); kept, not compared',
        ]);
      }
      const wider = file('replicated-2.yaml', `topics:\n  ${t}: { partitions: 1, replication: 2 }\n`);
      const plan = await cli(['topics', 'apply', wider]);
      assert.equal(plan.code, 0, plan.stderr);
      if (replicated) {
        assert.match(
          plan.stdout,
          new RegExp(
            `^drift +${t} +left alone: replication declared 2, has 1 \\(replication changes need a partition reassignment\\)$`,
            'm',
          ),
        );
      } else {
        assert.match(plan.stdout, new RegExp(`^unchanged +${t}$`, 'm'));
        assert.match(plan.stdout, /^note: this engine keeps one copy of each record/m);
      }
    });

    test('topics apply: a bad file exits 2 naming the file, topic and field, and applies nothing', async () => {
      const good = `${prefix}.never`;
      const bad = file(
        'bad.yaml',
        [
          'topics:',
          `  - name: ${good}`,
          '    partitions: 1',
          `  - name: ${prefix}.bad`,
          '    partitions: 0',
          '    retention: 7 days',
          '    retension: 7d',
          '  - partitions: 2',
          '',
        ].join('\n'),
      );
      const res = await cli(['topics', 'apply', bad, '--yes']);
      assert.equal(res.code, 2, res.stderr);
      assert.match(res.stderr, /^eventline: error: .*bad\.yaml: 4 problems; nothing was applied:$/m);
      assert.match(
        res.stderr,
        new RegExp(`topic "${prefix}\\.bad", field "partitions": must be a positive integer, got 0`),
      );
      assert.match(res.stderr, /field "retention": cannot read "7 days" as a duration/);
      assert.match(
        res.stderr,
        /field "retension": unknown field; known fields: name, partitions, replication/,
      );
      assert.match(res.stderr, /topics\[2\], field "name": missing/);
      assert.equal(res.stdout, '');
      assert.ok(!(await bus.admin.listTopics()).includes(good), 'the valid entry was not applied either');

      const cases: [string, string, RegExp][] = [
        ['not-yaml.yaml', 'topics: [\n', /not-yaml\.yaml: not valid YAML: .*line 2/],
        ['no-topics.yaml', 'streams: []\n', /no-topics\.yaml: needs a top-level "topics:" list/],
        ['bad.json', '{"topics": [{"name": "x", "partitions": 1}', /bad\.json: not valid JSON/],
        [
          'empty.yaml',
          'topics: []\n',
          /empty\.yaml: 1 problem; nothing was applied:\n {2}declares no topics/,
        ],
      ];
      for (const [fileName, text, message] of cases) {
        const r = await cli(['topics', 'apply', file(fileName, text)]);
        assert.equal(r.code, 2, `${fileName}: ${r.stderr}`);
        assert.match(r.stderr, message, fileName);
      }
      const missing = await cli(['topics', 'apply', join(dir, 'missing.yaml')]);
      assert.equal(missing.code, 2);
      assert.match(missing.stderr, /cannot read .*missing\.yaml/);
    });

    test('topics apply reads JSON too', async () => {
      const t = `${prefix}.from-json`;
      const path = file('topics.json', JSON.stringify({ topics: [{ name: t, partitions: 2, key: 'id' }] }));
      const res = await cli(['topics', 'apply', path, '--yes', '--json']);
      assert.equal(res.code, 0, res.stderr);
      assert.deepEqual(
        jsonLines(res.stdout).map((l) => [l.topic, l.action, l.key]),
        [[t, 'create', 'id']],
      );
      assert.equal((await bus.admin.describeTopic(t)).partitions.length, 2);
    });

    test('tail follows two topics live, interleaved, and stops on SIGINT with exit code 0', async () => {
      const a = defineTopic(`${prefix}.tail-a`, { partitions: 2 });
      const b = defineTopic(`${prefix}.tail-b`);
      await bus.ensureTopics([a, b]);
      await bus.publish(a, { n: 0 }, { key: 'before' });
      const json = start(url, ['tail', a.name, b.name, '--json']);
      const human = start(url, ['tail', a.name, b.name]);
      try {
        for (const t of [json, human])
          await waitFor('tail to start following', () => t.stderr().includes('following'));
        const published = [
          await bus.publish(a, { n: 1 }, { key: 'k1' }),
          await bus.publish(b, { n: 2 }, { key: 'k2' }),
          await bus.publish(a, { n: 3 }, { key: 'k3' }),
        ];
        await waitFor(
          'three records from each tail',
          () => json.lines().length >= 3 && human.lines().length >= 3,
        );
        for (const t of [json, human]) t.child.kill('SIGINT');
        assert.equal(await json.exited, 0, json.stderr());
        assert.equal(await human.exited, 0, human.stderr());
        const records = jsonLines(json.stdout());
        assert.deepEqual(
          records.map((r) => [r.topic, r.partition, r.offset, r.key, r.value]).sort(),
          published
            .map((p, i) => [p.topic, p.partition, p.offset, `k${i + 1}`, JSON.stringify({ n: i + 1 })])
            .sort(),
          'each record published while it ran, once; none from before it started',
        );
        assert.deepEqual(
          human.lines().sort(),
          published
            .map((p, i) => `${p.topic}/${p.partition}@${p.offset}  key=k${i + 1}  {"n":${i + 1}}`)
            .sort(),
        );
        assert.match(json.stderr(), /3 records from 2 topics\n$/);
      } finally {
        json.child.kill('SIGKILL');
        human.child.kill('SIGKILL');
      }
    });

    test('tail --group reads from the beginning in a group and commits what it printed', async () => {
      const t = defineTopic(`${prefix}.tail-group`, { partitions: 2 });
      await bus.ensureTopics([t]);
      for (let i = 0; i < 4; i++) await bus.publish(t, { i }, { key: `key-${i}` });
      const group = `${prefix}-tail-group`;
      const tail = start(url, ['tail', t.name, '--group', group, '--from-beginning', '--json']);
      try {
        await waitFor('four records', () => tail.lines().length >= 4, 60_000);
        tail.child.kill('SIGINT');
        assert.equal(await tail.exited, 0, tail.stderr());
        assert.deepEqual(
          jsonLines(tail.stdout())
            .map((r) => r.key)
            .sort(),
          ['key-0', 'key-1', 'key-2', 'key-3'],
        );
        const [d] = jsonLines((await cli(['groups', 'describe', group, '--json'])).stdout);
        assert.equal(d!.lag, 0, 'everything printed was committed');
      } finally {
        tail.child.kill('SIGKILL');
      }
    });

    test('groups describe shows lag in records and in time, per partition and for the group', async () => {
      const t = defineTopic(`${prefix}.lag`, { partitions: 2, value: bytes() });
      await bus.ensureTopics([t]);
      const old = Date.now() - 120_000;
      for (const partition of [0, 0, 1, 1]) {
        await bus.publish(t, Buffer.from('x'), { partition, timestamp: old });
      }
      const group = `${prefix}-lag`;
      const reset = await cli([
        'groups',
        'reset-offsets',
        group,
        '--topic',
        t.name,
        '--to-offset',
        '1',
        '--json',
      ]);
      assert.equal(reset.code, 0, reset.stderr);
      assert.deepEqual(
        jsonLines(reset.stderr).map((l) => [l.progress, l.done, l.total]),
        [[`reset-offsets ${group} ${t.name}`, 2, 2]],
        'with --json, progress is one JSON line at the end',
      );

      const [behind] = jsonLines((await cli(['groups', 'describe', group, '--json'])).stdout);
      const partitions = behind!.partitions as { lag: number; lagMs: number }[];
      assert.deepEqual(
        partitions.map((p) => p.lag),
        [1, 1],
      );
      for (const p of partitions)
        assert.ok(p.lagMs >= 120_000, `lagMs ${p.lagMs}: the next record is 2 minutes old`);
      assert.equal(behind!.lag, 2);
      assert.ok((behind!.lagMs as number) >= 120_000);
      const human = await cli(['groups', 'describe', group]);
      assert.match(human.stdout, /lag: 2 records, 2m( \d+s)?\n/);
      assert.match(human.stdout, /LAG {2}LAG TIME {2}OWNER/);
      assert.match(human.stdout, new RegExp(`${t.name.replace(/\./g, '\\.')} +0 +1 +2 +1 +2m( \\d+s)? +-`));
      assert.match(human.stdout, /TOTAL +2 +2m/);

      await cli(['groups', 'reset-offsets', group, '--topic', t.name, '--to-latest']);
      const [caughtUp] = jsonLines((await cli(['groups', 'describe', group, '--json'])).stdout);
      assert.deepEqual(
        (caughtUp!.partitions as { lag: number; lagMs: number }[]).map((p) => [p.lag, p.lagMs]),
        [
          [0, 0],
          [0, 0],
        ],
      );
      assert.deepEqual([caughtUp!.lag, caughtUp!.lagMs], [0, 0]);
      assert.match((await cli(['groups', 'describe', group])).stdout, /lag: 0 records, 0s\n/);
    });

    test('schemas codegen --json prints one JSON object carrying the source', async () => {
      const schema = new URL('../../../../examples/schemas/task-created.avsc', import.meta.url).pathname;
      const res = await cli(['schemas', 'codegen', schema, '--json']);
      assert.equal(res.code, 0, res.stderr);
      const [line, ...rest] = jsonLines(res.stdout);
      assert.deepEqual(rest, []);
      assert.deepEqual([line!.files, line!.subjects], [[schema], []]);
      assert.match(line!.source as string, /export interface TaskCreatedEvent \{/);
    });

    test('dlq replay reports progress as plain lines on stderr when it is not a terminal', async () => {
      const t = defineTopic(`${prefix}.replayed`, { value: bytes() });
      await bus.ensureTopics([t]);
      const group = `${prefix}-replay`;
      const doomed = Array.from({ length: 30 }, (_, i) => ({
        key: `k${i}`,
        value: Buffer.from(`v${i}`),
        code: 'E_TEST',
        message: 'failed',
      }));
      const { dlqTopic } = await deadLetters(bus, t, group, doomed);
      // 10 a second: three batches, so it runs past the quiet first second.
      const res = await cli(['dlq', 'replay', dlqTopic, '--rate', '10']);
      assert.equal(res.code, 0, res.stderr);
      assert.match(res.stdout, /^replayed 30 dead letters/);
      const progress = res.stderr.split('\n').filter((l) => l.startsWith(`dlq replay ${dlqTopic}:`));
      assert.ok(progress.length >= 2, `progress lines:\n${res.stderr}`);
      assert.match(progress.at(-1)!, /: 30\/30 records scanned {2}100% {2}\d+\/s {2}in \d+\.\d s$/);
      for (const l of progress) assert.match(l, /^dlq replay \S+: \d+\/30 records scanned {2}\d+%/);
      assert.ok(!res.stderr.includes('\r'), 'no redrawing off a terminal');
    });
  });
}

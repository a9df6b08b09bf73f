import type { TopicPlan } from '../../client.ts';
import type { TopicConfig, TopicDifference, TopicSettings } from '../../topic.ts';
import { type Duration, formatDuration, formatSize, type Size } from '../../util/units.ts';
import { type Command, intOption } from '../main.ts';
import { table } from '../output.ts';
import { createProgress } from '../progress.ts';
import { type DeclaredTopic, readTopicsFile } from '../topics-file.ts';

/** A setting's value as people write it: `7d`, `1MiB`. */
function shown(setting: keyof TopicConfig, value: unknown): string {
  if (typeof value !== 'number' && value !== null) return String(value);
  if (setting === 'retentionMs' || setting === 'deleteRetentionMs' || setting === 'segmentMs') {
    // Days rather than weeks: retention is written in days (`7d`, `30d`).
    return value !== null && value > 0 && value % 86_400_000 === 0
      ? `${value / 86_400_000}d`
      : formatDuration(value);
  }
  if (setting === 'retentionBytes' || setting === 'maxMessageBytes' || setting === 'segmentBytes') {
    return formatSize(value);
  }
  return String(value);
}

/** Settings by the names the topics file uses, where they differ from the config's. */
const FILE_NAME: Partial<Record<keyof TopicConfig, string>> = {
  retentionMs: 'retention',
  deleteRetentionMs: 'deleteRetention',
  replicationFactor: 'replication',
  cleanupPolicy: 'cleanup',
};
const CONFIG_NAME: Partial<Record<keyof TopicSettings, keyof TopicConfig>> = {
  retention: 'retentionMs',
  deleteRetention: 'deleteRetentionMs',
};

/** Why a difference is left alone. */
const LEFT_ALONE: Partial<Record<keyof TopicConfig, string>> = {
  partitions: 'partitions never shrink',
  replicationFactor: 'replication changes need a partition reassignment',
  cleanupPolicy: 'the cleanup policy is not changed in place',
};

function differenceText(d: TopicDifference): string {
  const name = FILE_NAME[d.setting] ?? d.setting;
  return d.applicable
    ? `${name} ${shown(d.setting, d.actual)} -> ${shown(d.setting, d.declared)}`
    : `${name} declared ${shown(d.setting, d.declared)}, has ${shown(d.setting, d.actual)} (${LEFT_ALONE[d.setting] ?? 'cannot be applied'})`;
}

/** One line of the plan for a topic; `widths` of the name and key columns. */
function planLine(plan: TopicPlan, declared: DeclaredTopic, widths: [number, number]): string {
  const changes = plan.differences.filter((d) => d.applicable).map(differenceText);
  const kept = plan.differences.filter((d) => !d.applicable).map(differenceText);
  let detail = '';
  if (plan.action === 'create') {
    const config = declared.topic.config;
    detail = (Object.keys(declared.settings) as (keyof TopicSettings)[])
      .map((setting) => {
        const s = CONFIG_NAME[setting] ?? (setting as keyof TopicConfig);
        // As the file wrote it (`7d`, not the equal `1w`) when it wrote text.
        const written = declared.settings[setting];
        return `${FILE_NAME[s] ?? s} ${typeof written === 'string' ? written : shown(s, config[s])}`;
      })
      .join(', ');
  } else if (plan.action === 'alter') detail = changes.join(', ');
  else if (plan.action === 'drift') {
    detail = [...(changes.length > 0 ? [changes.join(', ')] : []), `left alone: ${kept.join(', ')}`].join(
      '; ',
    );
  }
  const action = !plan.applied
    ? plan.action
    : plan.action === 'create'
      ? 'created'
      : plan.action === 'alter'
        ? 'altered'
        : plan.action;
  const key = declared.key === undefined ? '' : `key ${declared.key}`;
  return [
    action.padEnd(9),
    declared.name.padEnd(widths[0]),
    ...(widths[1] > 0 ? [key.padEnd(widths[1])] : []),
    detail,
  ]
    .join('  ')
    .trimEnd();
}

export const commands: Command[] = [
  {
    words: ['topics', 'create'],
    usage: 'topics create NAME --partitions N [--retention 7d] [--compact]',
    summary: 'create a topic (does nothing if it exists)',
    positionals: 1,
    options: {
      partitions: { type: 'string', short: 'p' },
      retention: { type: 'string' },
      'retention-bytes': { type: 'string' },
      compact: { type: 'boolean' },
      'max-message-bytes': { type: 'string' },
      'replication-factor': { type: 'string' },
    },
    async run({ values, positionals, out, bus }) {
      const name = positionals[0]!;
      const settings: TopicSettings = {
        partitions: intOption(values, 'partitions', 1) ?? 1,
        ...(values.retention === undefined
          ? {}
          : { retention: values.retention === 'forever' ? 'forever' : (values.retention as Duration) }),
        ...(values['retention-bytes'] === undefined
          ? {}
          : { retentionBytes: values['retention-bytes'] as Size }),
        ...(values.compact ? { cleanupPolicy: 'compact' as const } : {}),
        ...(values['max-message-bytes'] === undefined
          ? {}
          : { maxMessageBytes: values['max-message-bytes'] as Size }),
        ...(values['replication-factor'] === undefined
          ? {}
          : { replicationFactor: intOption(values, 'replication-factor', 1)! }),
      };
      const result = await (await bus()).admin.createTopic(name, settings);
      out.record(
        { topic: name, result },
        result === 'created' ? `created topic ${name}` : `topic ${name} already exists`,
      );
      return 0;
    },
  },
  {
    words: ['topics', 'apply'],
    usage: 'topics apply FILE [--yes]',
    summary: 'plan topics declared in a YAML or JSON file: create, alter, unchanged, drift; --yes applies',
    positionals: 1,
    options: { yes: { type: 'boolean', short: 'y' } },
    async run({ values, positionals, out, bus }) {
      const file = positionals[0]!;
      // The whole file is checked before the engine is asked anything: a bad entry applies nothing.
      const declared = readTopicsFile(file);
      const client = await bus();
      const byName = new Map(declared.map((d) => [d.name, d]));
      let plans = await client.admin.plan(declared.map((d) => ({ name: d.name, config: d.topic.config })));
      const apply = values.yes === true;
      if (apply) {
        // Only what has something to apply; pure drift is left alone and only reported.
        const todo = plans.filter((p) => p.action === 'create' || p.differences.some((d) => d.applicable));
        const progress = createProgress({
          label: `topics apply ${file}`,
          unit: 'topics',
          total: todo.length,
          json: out.json,
        });
        const applied = new Map<string, TopicPlan>();
        try {
          for (const p of todo) {
            const [result] = await client.ensureTopics([byName.get(p.topic)!.topic], { alter: true });
            applied.set(p.topic, result!);
            progress.update(applied.size);
          }
        } catch (err) {
          progress.clear();
          throw err;
        }
        if (todo.length > 0) progress.finish();
        plans = plans.map((p) => applied.get(p.topic) ?? p);
      }
      const widths: [number, number] = [
        Math.max(...declared.map((d) => d.name.length)),
        Math.max(0, ...declared.map((d) => (d.key === undefined ? 0 : d.key.length + 4))),
      ];
      for (const plan of plans) {
        const d = byName.get(plan.topic)!;
        out.record(
          {
            topic: plan.topic,
            action: plan.action,
            ...(d.key === undefined ? {} : { key: d.key }),
            ...(d.description === undefined ? {} : { description: d.description }),
            differences: plan.differences,
            ...(plan.notes === undefined ? {} : { notes: plan.notes }),
            applied: plan.applied === true,
            dryRun: !apply,
          },
          planLine(plan, d, widths),
        );
      }
      const count = (action: TopicPlan['action'], applied?: boolean): number =>
        plans.filter((p) => p.action === action && (applied === undefined || p.applied === applied)).length;
      const drifted = `${count('drift')} drifted (left alone where it cannot be applied)`;
      out.info('');
      out.info(
        apply
          ? `applied: ${count('create', true)} created, ${count('alter', true) + count('drift', true)} altered, ${count('unchanged')} unchanged, ${drifted}`
          : `plan: ${count('create')} to create, ${count('alter')} to alter, ${count('unchanged')} unchanged, ${drifted}`,
      );
      if (plans.some((p) => p.notes !== undefined)) {
        out.info(
          'note: this engine keeps one copy of each record: replication settings are kept, not compared',
        );
      }
      if (!apply) out.info('dry run: nothing was changed; apply with --yes');
      return 0;
    },
  },
  {
    words: ['topics', 'list'],
    usage: 'topics list',
    summary: 'list topics',
    positionals: 0,
    async run({ out, bus }) {
      for (const name of await (await bus()).admin.listTopics()) out.record({ topic: name }, name);
      return 0;
    },
  },
  {
    words: ['topics', 'describe'],
    usage: 'topics describe NAME',
    summary: 'partitions, start and end offsets, settings',
    positionals: 1,
    async run({ positionals, out, bus }) {
      const d = await (await bus()).admin.describeTopic(positionals[0]!);
      const c = d.config;
      out.record(
        { topic: d.name, config: c, partitions: d.partitions },
        [
          `Topic: ${d.name}`,
          `  partitions: ${d.partitions.length}   cleanup: ${c.cleanupPolicy ?? '?'}   retention: ${formatDuration(c.retentionMs ?? null)}` +
            `   retention bytes: ${formatSize(c.retentionBytes ?? null)}   max message: ${formatSize(c.maxMessageBytes ?? null)}` +
            (c.replicationFactor ? `   replication: ${c.replicationFactor}` : ''),
          '',
          table(
            ['PARTITION', 'START', 'END', 'RECORDS'],
            d.partitions.map((p) => [p.partition, p.start, p.end, p.end - p.start]),
          ),
        ].join('\n'),
      );
      return 0;
    },
  },
  {
    words: ['topics', 'delete'],
    usage: 'topics delete NAME',
    summary: 'delete a topic and its records',
    positionals: 1,
    async run({ positionals, out, bus }) {
      await (await bus()).admin.deleteTopic(positionals[0]!);
      out.record({ topic: positionals[0], result: 'deleted' }, `deleted topic ${positionals[0]}`);
      return 0;
    },
  },
];

import type { TopicSettings } from '../../topic.ts';
import { type Duration, formatDuration, formatSize, type Size } from '../../util/units.ts';
import { type Command, intOption } from '../main.ts';
import { table } from '../output.ts';

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

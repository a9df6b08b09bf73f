import type { ResetTarget } from '../../client.ts';
import type { CommittedOffset } from '../../engine/types.ts';
import { formatDuration } from '../../util/units.ts';
import { type Command, intOption } from '../main.ts';
import { table, UsageError } from '../output.ts';
import { createProgress } from '../progress.ts';

export const commands: Command[] = [
  {
    words: ['groups', 'list'],
    usage: 'groups list',
    summary: 'list consumer groups',
    positionals: 0,
    async run({ out, bus }) {
      for (const g of await (await bus()).admin.listGroups()) out.record({ group: g }, g);
      return 0;
    },
  },
  {
    words: ['groups', 'describe'],
    usage: 'groups describe GROUP',
    summary: 'per partition: committed offset, end offset, lag in records and in time, owning member',
    positionals: 1,
    async run({ positionals, out, bus }) {
      const d = await (await bus()).admin.groupLag(positionals[0]!);
      // The group is as far behind as its most behind partition: the oldest unread record.
      const lag = d.partitions.reduce((n, p) => n + p.lag, 0);
      const lagMs = d.partitions.reduce((n, p) => Math.max(n, p.lagMs), 0);
      const ago = (ms: number): string => formatDuration(ms, { approximate: true });
      const owner = (id: string | null): string => {
        if (id === null) return '-';
        const m = d.members.find((x) => x.memberId === id);
        return m ? `${m.clientId}@${m.host}` : id;
      };
      out.record(
        { ...d, lag, lagMs },
        [
          `Group: ${d.group}   state: ${d.state}   generation: ${d.generation ?? '-'}   members: ${d.members.length}` +
            `   lag: ${lag} record${lag === 1 ? '' : 's'}, ${ago(lagMs)}`,
          '',
          table(
            ['TOPIC', 'PARTITION', 'COMMITTED', 'END', 'LAG', 'LAG TIME', 'OWNER'],
            [
              ...d.partitions.map((p) => [
                p.topic,
                p.partition,
                p.committed ?? '-',
                p.end,
                p.lag,
                ago(p.lagMs),
                owner(p.owner),
              ]),
              ...(d.partitions.length > 1 ? [['TOTAL', '', '', '', lag, ago(lagMs), '']] : []),
            ],
          ),
          ...(d.members.length > 0
            ? [
                '',
                table(
                  ['MEMBER', 'CLIENT', 'HOST', 'PARTITIONS', 'LAST HEARTBEAT'],
                  d.members.map((m) => [
                    m.memberId,
                    m.clientId,
                    m.host,
                    m.assignment.length,
                    m.sinceHeartbeatMs === undefined ? '-' : `${ago(m.sinceHeartbeatMs)} ago`,
                  ]),
                ),
              ]
            : []),
        ].join('\n'),
      );
      return 0;
    },
  },
  {
    words: ['groups', 'reset-offsets'],
    usage:
      'groups reset-offsets GROUP --topic T[:P,P] (--to-earliest|--to-latest|--to-datetime ISO|--to-offset N)',
    summary: 'move committed offsets (refused while the group has live members)',
    positionals: 1,
    options: {
      topic: { type: 'string', short: 't' },
      'to-earliest': { type: 'boolean' },
      'to-latest': { type: 'boolean' },
      'to-datetime': { type: 'string' },
      'to-offset': { type: 'string' },
      'dry-run': { type: 'boolean' },
      execute: { type: 'boolean' },
    },
    async run({ values, positionals, out, bus }) {
      const group = positionals[0]!;
      const spec = values.topic as string | undefined;
      if (spec === undefined) throw new UsageError('--topic is required');
      const [topic, parts] = spec.split(':') as [string, string | undefined];
      const partitions = parts?.split(',').map((p) => {
        if (!/^\d+$/.test(p)) throw new UsageError(`--topic ${spec}: partitions must be numbers`);
        return Number(p);
      });
      const targets: ResetTarget[] = [];
      if (values['to-earliest']) targets.push('earliest');
      if (values['to-latest']) targets.push('latest');
      if (values['to-datetime'] !== undefined) {
        const ms = Date.parse(values['to-datetime'] as string);
        if (!Number.isFinite(ms))
          throw new UsageError(`--to-datetime cannot read ${JSON.stringify(values['to-datetime'])}`);
        targets.push({ timestamp: ms });
      }
      if (values['to-offset'] !== undefined) targets.push({ offset: intOption(values, 'to-offset')! });
      if (targets.length !== 1) {
        throw new UsageError('give exactly one of --to-earliest, --to-latest, --to-datetime, --to-offset');
      }
      const dryRun = values['dry-run'] === true;
      const client = await bus();
      const progress = createProgress({
        label: `reset-offsets ${group} ${topic}`,
        unit: 'partitions',
        json: out.json,
      });
      let result: CommittedOffset[];
      try {
        result = await client.admin.resetOffsets(group, {
          topic,
          to: targets[0]!,
          dryRun,
          onProgress: (done, total) => progress.update(done, total),
          ...(partitions ? { partitions } : {}),
        });
      } catch (err) {
        progress.clear();
        throw err;
      }
      progress.finish();
      for (const o of result) {
        out.record(
          { group, ...o, dryRun },
          `${o.topic}/${o.partition} -> ${o.offset}${dryRun ? ' (dry run)' : ''}`,
        );
      }
      return 0;
    },
  },
];

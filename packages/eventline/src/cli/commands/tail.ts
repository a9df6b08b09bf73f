import { once } from 'node:events';
import type { Message } from '../../message.ts';
import type { SchemaRegistry } from '../../schema/types.ts';
import type { Command } from '../main.ts';
import { avroDecoder, showRecord, type ValueDecoder, valueFormatOption } from './consume.ts';
import { registryOf } from './schemas.ts';

export const commands: Command[] = [
  {
    words: ['tail'],
    usage: 'tail TOPIC... [--from-beginning] [--group G] [--value-format avro [--registry URL]]',
    summary: 'follow topics live, interleaved, one line per record, until Ctrl-C',
    positionals: [1, 1000],
    options: {
      'from-beginning': { type: 'boolean' },
      group: { type: 'string', short: 'g' },
      'value-format': { type: 'string' },
      registry: { type: 'string' },
    },
    async run({ values, positionals, out, bus, signal }) {
      const topics = [...new Set(positionals)];
      const format = valueFormatOption(values);
      const client = await bus();
      let registry: Promise<SchemaRegistry> | undefined;
      const decoders = new Map<string, ValueDecoder>();
      if (format === 'avro') {
        for (const t of topics)
          decoders.set(
            t,
            avroDecoder(t, () => (registry ??= registryOf({ values, bus }))),
          );
      }
      // Every topic is checked before following any: a typo is an error, not a silent wait.
      for (const t of topics) await client.admin.describeTopic(t);
      let printed = 0;
      const show = async (m: Message<Buffer, string>): Promise<void> => {
        const shown = await showRecord(out, m, decoders.get(m.topic));
        out.record(
          shown.data,
          `${m.topic}/${m.partition}@${m.offset}  key=${m.key ?? '(none)'}  ${shown.value}`,
        );
        printed++;
      };
      const fromBeginning = values['from-beginning'] === true;
      const what = `${topics.join(', ')}${fromBeginning ? ' from the beginning' : ''}`;
      if (values.group !== undefined) {
        const group = values.group as string;
        const sub = client.subscribe({ group, topics, fromBeginning, shutdownGrace: '100ms', handler: show });
        try {
          await sub.ready();
          out.note(`following ${what} in group ${group}; Ctrl-C stops`);
          if (!signal.aborted) await once(signal, 'abort');
        } finally {
          await sub.stop();
        }
      } else {
        // From the moment the command started rather than from each partition's end when its
        // follower gets there: a record published after this note is never missed.
        const from = fromBeginning ? ('earliest' as const) : { timestamp: Date.now() };
        out.note(`following ${what}; Ctrl-C stops`);
        await Promise.all(
          topics.map(async (topic) => {
            for await (const m of client.reader.follow(topic, { from, signal })) await show(m);
          }),
        );
      }
      out.note(
        `${printed} record${printed === 1 ? '' : 's'} from ${topics.length} topic${topics.length === 1 ? '' : 's'}`,
      );
      return 0;
    },
  },
];

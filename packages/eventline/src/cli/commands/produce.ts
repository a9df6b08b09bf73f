import { createInterface } from 'node:readline';
import type { BatchItem } from '../../client.ts';
import { bytes } from '../../codec.ts';
import { fail } from '../../errors.ts';
import { defineTopic } from '../../topic.ts';
import { type Command, intOption } from '../main.ts';
import { UsageError } from '../output.ts';

const CHUNK = 1000;

export const commands: Command[] = [
  {
    words: ['produce'],
    usage: 'produce TOPIC [--key K | --key-separator SEP] [--header k=v]... [--partition P]',
    summary: 'publish one record per line of stdin',
    positionals: 1,
    options: {
      key: { type: 'string', short: 'k' },
      'key-separator': { type: 'string' },
      header: { type: 'string', multiple: true, short: 'H' },
      partition: { type: 'string' },
    },
    async run({ values, positionals, out, bus }) {
      if (values.key !== undefined && values['key-separator'] !== undefined) {
        throw new UsageError('give --key or --key-separator, not both');
      }
      const separator = values['key-separator'] as string | undefined;
      if (separator === '') throw new UsageError('--key-separator cannot be empty');
      const headers: [string, string][] = ((values.header as string[] | undefined) ?? []).map((h) => {
        const at = h.indexOf('=');
        if (at <= 0) throw new UsageError(`--header needs name=value, got ${JSON.stringify(h)}`);
        return [h.slice(0, at), h.slice(at + 1)];
      });
      const partition = intOption(values, 'partition');
      const topic = defineTopic(positionals[0]!, { value: bytes() });
      const client = await bus();
      let written = 0;
      let lineNo = 0;
      let pending: BatchItem<Buffer>[] = [];
      const flush = async (): Promise<void> => {
        if (pending.length === 0) return;
        const batch = pending;
        pending = [];
        await client.publishBatch(topic, batch);
        written += batch.length;
      };
      try {
        for await (const line of createInterface({ input: process.stdin, crlfDelay: Infinity })) {
          lineNo++;
          let key: string | undefined = values.key as string | undefined;
          let value = line;
          if (separator !== undefined) {
            const at = line.indexOf(separator);
            if (at < 0) {
              // The lines before this one were fine: write them, then report the bad one.
              await flush();
              fail(
                'EVENTLINE_ERR_INVALID_ARGUMENT',
                `line ${lineNo} has no key separator ${JSON.stringify(separator)}; the lines before it were written, the rest were not read`,
              );
            }
            key = line.slice(0, at);
            value = line.slice(at + separator.length);
          }
          pending.push({
            value: Buffer.from(value),
            ...(key === undefined ? {} : { key }),
            ...(headers.length > 0 ? { headers } : {}),
            ...(partition === undefined ? {} : { partition }),
          });
          if (pending.length >= CHUNK) await flush();
        }
        await flush();
      } finally {
        // Whatever was written before a failure stays written; say how much.
        out.record(
          { topic: topic.name, written },
          `${written} record${written === 1 ? '' : 's'} written to ${topic.name}`,
        );
      }
      return 0;
    },
  },
];

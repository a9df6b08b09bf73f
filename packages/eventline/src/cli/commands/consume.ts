import type { Message } from '../../message.ts';
import { type Command, intOption } from '../main.ts';
import { type Output, renderBytes } from '../output.ts';

function print(out: Output, m: Message<Buffer, string>): void {
  const value = renderBytes(m.rawValue);
  const headers: Record<string, string> = {};
  for (const [name, v] of m.rawHeaders) headers[name] = renderBytes(v).text ?? '';
  out.record(
    {
      topic: m.topic,
      partition: m.partition,
      offset: m.offset,
      timestamp: new Date(m.timestamp).toISOString(),
      key: m.key,
      value: value.text,
      ...(value.encoding === 'base64' ? { valueEncoding: 'base64' } : {}),
      headers,
    },
    [
      `${m.topic}/${m.partition}@${m.offset}  ${new Date(m.timestamp).toISOString()}  key=${m.key ?? '(none)'}`,
      `  headers: ${Object.entries(headers)
        .map(([k, v]) => `${k}=${v}`)
        .join(', ')}`,
      `  ${value.text === null ? '(tombstone)' : value.encoding === 'base64' ? `base64:${value.text}` : value.text}`,
    ].join('\n'),
  );
}

export const commands: Command[] = [
  {
    words: ['consume'],
    usage: 'consume TOPIC [--group G] [--from-beginning] [--max N] [--timeout SECONDS]',
    summary: 'print records; with --group, join the group and commit',
    positionals: 1,
    options: {
      group: { type: 'string', short: 'g' },
      'from-beginning': { type: 'boolean' },
      max: { type: 'string' },
      timeout: { type: 'string' },
      partition: { type: 'string' },
    },
    async run({ values, positionals, out, bus, signal }) {
      const topic = positionals[0]!;
      const max = intOption(values, 'max', 1);
      const timeoutS = intOption(values, 'timeout', 1);
      const partition = intOption(values, 'partition');
      const client = await bus();
      // Validate the topic up front: a clear error beats waiting on nothing.
      await client.admin.describeTopic(topic);
      const stop = new AbortController();
      signal.addEventListener('abort', () => stop.abort(), { once: true });
      let idle: NodeJS.Timeout | undefined;
      const arm = (): void => {
        if (timeoutS === undefined) return;
        clearTimeout(idle);
        idle = setTimeout(() => stop.abort(), timeoutS * 1000);
      };
      arm();
      let printed = 0;
      try {
        if (values.group !== undefined) {
          const sub = client.subscribe({
            group: values.group as string,
            topics: [topic],
            fromBeginning: values['from-beginning'] === true,
            maxBatchSize: Math.min(max ?? 500, 500),
            shutdownGrace: '100ms',
            handler: async (m, ctx) => {
              if (max !== undefined && printed >= max) {
                // Past --max: hold the record until stop abandons it, so it is not committed.
                await new Promise((_, reject) =>
                  ctx.signal.addEventListener('abort', () => reject(ctx.signal.reason)),
                );
              }
              print(out, m);
              printed++;
              arm();
              if (max !== undefined && printed >= max) stop.abort();
            },
          });
          await new Promise<void>((resolve) => {
            if (stop.signal.aborted) resolve();
            stop.signal.addEventListener('abort', () => resolve(), { once: true });
          });
          await sub.stop();
        } else {
          for await (const m of client.reader.follow(topic, {
            from: values['from-beginning'] ? 'earliest' : 'latest',
            signal: stop.signal,
            ...(partition === undefined ? {} : { partitions: [partition] }),
          })) {
            print(out, m);
            printed++;
            arm();
            if (max !== undefined && printed >= max) break;
          }
        }
      } finally {
        clearTimeout(idle);
      }
      out.note(`${printed} record${printed === 1 ? '' : 's'} consumed from ${topic}`);
      return 0;
    },
  },
];

import type { Message } from '../../message.ts';
import { avro } from '../../schema/avro.ts';
import type { SchemaRegistry } from '../../schema/types.ts';
import { type Command, type CommandContext, intOption } from '../main.ts';
import { type Output, renderBytes, UsageError } from '../output.ts';
import { registryOf } from './schemas.ts';

/** Decodes an Avro value in the wire format, with the schema it was written with, into JSON data. */
export type ValueDecoder = (raw: Buffer) => Promise<unknown>;

export function avroDecoder(topic: string, registry: () => Promise<SchemaRegistry>): ValueDecoder {
  const codec = avro().bind({ topic, part: 'value', registry });
  return async (raw) => {
    await codec.prepareDecode?.(raw);
    return jsonSafe(codec.decode(raw));
  };
}

/** Avro values as JSON can carry them: bigints as decimal text, bytes as base64, dates as ISO text. */
function jsonSafe(v: unknown): unknown {
  if (typeof v === 'bigint') return v.toString();
  if (Buffer.isBuffer(v)) return v.toString('base64');
  if (v instanceof Date) return v.toISOString();
  if (Array.isArray(v)) return v.map(jsonSafe);
  if (typeof v === 'object' && v !== null) {
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, jsonSafe(x)]));
  }
  return v;
}

/** `--value-format`: `avro`, `raw` or not given; a usage error otherwise. */
export function valueFormatOption(values: CommandContext['values']): 'avro' | 'raw' | undefined {
  const format = values['value-format'] as string | undefined;
  if (format !== undefined && format !== 'avro' && format !== 'raw') {
    throw new UsageError(`--value-format must be avro or raw, got ${JSON.stringify(format)}`);
  }
  return format;
}

/** A record as `consume` and `tail` print it: the JSON line, and the value and headers as text. */
export interface ShownRecord {
  data: object;
  /** UTF-8 text, `base64:…` for bytes that are not text, `(tombstone)` for null, or the decoded JSON. */
  value: string;
  headers: Record<string, string>;
}

/** Formats a record; a value that does not decode is shown as bytes, with a note on stderr. */
export async function showRecord(
  out: Output,
  m: Message<Buffer, string>,
  decode?: ValueDecoder,
): Promise<ShownRecord> {
  let value = renderBytes(m.rawValue);
  let decoded: { data: unknown } | undefined;
  if (decode !== undefined && m.rawValue !== null) {
    try {
      decoded = { data: await decode(m.rawValue) };
      value = { text: JSON.stringify(decoded.data), encoding: 'utf8' };
    } catch (err) {
      out.note(`${m.topic}/${m.partition}@${m.offset}: ${(err as Error).message}; printed as bytes`);
    }
  }
  const headers: Record<string, string> = {};
  for (const [name, v] of m.rawHeaders) headers[name] = renderBytes(v).text ?? '';
  return {
    data: {
      topic: m.topic,
      partition: m.partition,
      offset: m.offset,
      timestamp: new Date(m.timestamp).toISOString(),
      key: m.key,
      value: decoded === undefined ? value.text : decoded.data,
      ...(decoded !== undefined ? { valueFormat: 'avro' } : {}),
      ...(value.encoding === 'base64' ? { valueEncoding: 'base64' } : {}),
      headers,
    },
    value:
      value.text === null ? '(tombstone)' : value.encoding === 'base64' ? `base64:${value.text}` : value.text,
    headers,
  };
}

async function print(out: Output, m: Message<Buffer, string>, decode?: ValueDecoder): Promise<void> {
  const shown = await showRecord(out, m, decode);
  out.record(
    shown.data,
    [
      `${m.topic}/${m.partition}@${m.offset}  ${new Date(m.timestamp).toISOString()}  key=${m.key ?? '(none)'}`,
      `  headers: ${Object.entries(shown.headers)
        .map(([k, v]) => `${k}=${v}`)
        .join(', ')}`,
      `  ${shown.value}`,
    ].join('\n'),
  );
}

export const commands: Command[] = [
  {
    words: ['consume'],
    usage:
      'consume TOPIC [--group G] [--from-beginning] [--max N] [--timeout SECONDS] [--value-format avro [--registry URL]]',
    summary: 'print records; with --group, join the group and commit; Avro values decoded as JSON',
    positionals: 1,
    options: {
      'value-format': { type: 'string' },
      registry: { type: 'string' },
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
      const format = valueFormatOption(values);
      let registry: Promise<SchemaRegistry> | undefined;
      const decode =
        format === 'avro' ? avroDecoder(topic, () => (registry ??= registryOf({ values, bus }))) : undefined;
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
              await print(out, m, decode);
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
            await print(out, m, decode);
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

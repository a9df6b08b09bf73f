import type { DeadLetter } from '../../runtime/dead-letter.ts';
import {
  type DeadLetterFilter,
  type DeadLetterSource,
  listDeadLetterTopics,
  type ReplayResult,
  readDeadLetters,
  replayDeadLetters,
} from '../../runtime/replay.ts';
import { parseDuration } from '../../util/units.ts';
import { type Command, type CommandContext, intOption } from '../main.ts';
import { renderBytes, table, UsageError } from '../output.ts';
import { createProgress } from '../progress.ts';

type Values = CommandContext['values'];

/** The filter options `dlq show` and `dlq replay` share. */
const FILTER_OPTIONS = {
  'error-code': { type: 'string', multiple: true },
  match: { type: 'string' },
  key: { type: 'string', short: 'k' },
  partition: { type: 'string' },
  offsets: { type: 'string' },
  since: { type: 'string' },
  until: { type: 'string' },
  limit: { type: 'string' },
  parking: { type: 'boolean' },
} as const;

/** `GROUP TOPIC`, or the name of a dead-letter topic as `dlq list` prints it. */
function sourceOf(positionals: string[], values: Values): DeadLetterSource<string> {
  const [first, second] = positionals as [string, string | undefined];
  if (second === undefined) {
    if (values.parking) throw new UsageError('--parking needs GROUP TOPIC, not a dead-letter topic name');
    return { dlqTopic: first };
  }
  return { group: first, topic: second, parkingLot: values.parking === true };
}

/** A time as ISO 8601 text, or as a duration back from now (`--since 1h`). */
function timeOption(values: Values, name: string): number | undefined {
  const raw = values[name] as string | undefined;
  if (raw === undefined) return undefined;
  if (/^\d+(\.\d+)?\s*[a-z]+$/i.test(raw)) {
    try {
      return Date.now() - parseDuration(raw, `--${name}`);
    } catch {
      // Not a duration: try it as a time below.
    }
  }
  const ms = Date.parse(raw);
  if (!Number.isFinite(ms))
    throw new UsageError(`--${name} needs an ISO 8601 time or a duration, got ${JSON.stringify(raw)}`);
  return ms;
}

function filterOf(values: Values): DeadLetterFilter {
  const filter: DeadLetterFilter = {};
  const codes = values['error-code'] as string[] | undefined;
  if (codes !== undefined && codes.length > 0) filter.errorCode = codes;
  const match = values.match as string | undefined;
  if (match !== undefined) {
    const re = /^\/(.*)\/([a-z]*)$/s.exec(match);
    try {
      filter.message = re === null ? match : new RegExp(re[1]!, re[2]);
    } catch (err) {
      throw new UsageError(`--match ${match}: ${(err as Error).message}`);
    }
  }
  if (values.key !== undefined) filter.key = values.key as string;
  const partition = intOption(values, 'partition');
  if (partition !== undefined) filter.partition = partition;
  const offsets = values.offsets as string | undefined;
  if (offsets !== undefined) {
    const m = /^(\d*)\.\.(\d*)$/.exec(offsets);
    if (m === null || (m[1] === '' && m[2] === '')) {
      throw new UsageError(
        `--offsets needs FROM..TO (either may be left out), got ${JSON.stringify(offsets)}`,
      );
    }
    filter.offsets = {
      ...(m[1] === '' ? {} : { from: Number(m[1]) }),
      ...(m[2] === '' ? {} : { to: Number(m[2]) }),
    };
  }
  const since = timeOption(values, 'since');
  if (since !== undefined) filter.since = since;
  const until = timeOption(values, 'until');
  if (until !== undefined) filter.until = until;
  return filter;
}

/** `--rate 100` or `--rate 100/s`. */
function rateOption(values: Values): number | undefined {
  const raw = values.rate as string | undefined;
  if (raw === undefined) return undefined;
  const m = /^(\d+(?:\.\d+)?)(?:\/s)?$/.exec(raw);
  const n = m === null ? Number.NaN : Number(m[1]);
  if (!(n > 0))
    throw new UsageError(`--rate needs records per second, like 100 or 100/s, got ${JSON.stringify(raw)}`);
  return n;
}

function keyText(key: Buffer | null): string | null {
  const r = renderBytes(key);
  return r.text === null ? null : r.encoding === 'base64' ? `base64:${r.text}` : r.text;
}

/** One dead letter as a JSON line. */
function deadLetterJson(d: DeadLetter & { replayed: boolean }, values: Values): object {
  const value = renderBytes(d.value);
  const headers: Record<string, string> = {};
  for (const [name, v] of d.headers) headers[name] = keyText(v) ?? '';
  return {
    dlqTopic: d.at.topic,
    dlqPartition: d.at.partition,
    dlqOffset: d.at.offset,
    topic: d.original.topic,
    partition: d.original.partition,
    offset: d.original.offset,
    timestamp: new Date(d.original.timestamp).toISOString(),
    key: keyText(d.key),
    group: d.group,
    attempts: d.attempts,
    firstFailure: d.firstFailure,
    lastFailure: d.lastFailure,
    errorCode: d.error.code,
    errorMessage: d.error.message,
    replays: d.replays,
    replayed: d.replayed,
    ...(values.stack ? { stack: d.error.stack } : {}),
    ...(values.value
      ? {
          value: value.text,
          ...(value.encoding === 'base64' ? { valueEncoding: 'base64' } : {}),
          headers,
        }
      : {}),
  };
}

function indent(text: string): string {
  return text
    .split('\n')
    .map((l) => `    ${l}`)
    .join('\n');
}

export const commands: Command[] = [
  {
    words: ['dlq', 'list'],
    usage: 'dlq list',
    summary: 'dead-letter topics and parking lots: dead letters not replayed yet, failure times, error codes',
    positionals: 0,
    async run({ out, bus }) {
      const topics = await listDeadLetterTopics(await bus());
      if (topics.length === 0) out.info('no dead-letter topics');
      else if (!out.json) {
        out.info(
          table(
            ['DEAD-LETTER TOPIC', 'GROUP', 'TOPIC', 'COUNT', 'OLDEST FAILURE', 'NEWEST FAILURE', 'ERRORS'],
            topics.map((t) => [
              t.dlqTopic,
              t.group,
              t.topic,
              t.count,
              t.oldestFailure ?? '-',
              t.newestFailure ?? '-',
              Object.entries(t.errorCodes)
                .sort((a, b) => b[1] - a[1])
                .map(([code, n]) => `${code} x${n}`)
                .join(', ') || '-',
            ]),
          ),
        );
      } else for (const t of topics) out.record(t, '');
      return 0;
    },
  },
  {
    words: ['dlq', 'show'],
    usage: 'dlq show (GROUP TOPIC | DLQ_TOPIC) [FILTERS] [--all] [--value] [--stack]',
    summary: 'dead letters not replayed yet (--all: replayed too): origin, key, attempts, error',
    positionals: [1, 2],
    options: {
      ...FILTER_OPTIONS,
      all: { type: 'boolean' },
      value: { type: 'boolean' },
      stack: { type: 'boolean' },
    },
    async run({ values, positionals, out, bus }) {
      const limit = intOption(values, 'limit', 1) ?? 100;
      const source = sourceOf(positionals, values);
      const found = await readDeadLetters(await bus(), source, {
        limit: limit + 1,
        filter: filterOf(values),
        includeReplayed: values.all === true,
      });
      const shown = found.slice(0, limit);
      if (out.json) {
        for (const d of shown) out.record(deadLetterJson(d, values), '');
      } else if (shown.length === 0) {
        out.info('no dead letters');
      } else {
        out.info(
          table(
            ['ORIGIN', 'TIMESTAMP', 'KEY', 'ATTEMPTS', 'FIRST FAILURE', 'LAST FAILURE', 'REPLAYS', 'ERROR'],
            shown.map((d) => [
              `${d.original.topic}/${d.original.partition}@${d.original.offset}${d.replayed ? ' (replayed)' : ''}`,
              new Date(d.original.timestamp).toISOString(),
              keyText(d.key) ?? '-',
              d.attempts,
              d.firstFailure,
              d.lastFailure,
              d.replays,
              `${d.error.code}: ${d.error.message.split('\n')[0]}`,
            ]),
          ),
        );
        if (values.value || values.stack) {
          for (const d of shown) {
            out.info('');
            out.info(`${d.original.topic}/${d.original.partition}@${d.original.offset}:`);
            if (values.value) {
              const v = renderBytes(d.value);
              const text =
                v.text === null ? '(tombstone)' : v.encoding === 'base64' ? `base64:${v.text}` : v.text;
              out.info(`  value: ${text}`);
              const headers = d.headers.map(([name, h]) => `${name}=${keyText(h)}`).join(', ');
              out.info(`  headers: ${headers || '(none)'}`);
            }
            if (values.stack) out.info(`  stack:\n${indent(d.error.stack || '(none)')}`);
          }
        }
      }
      if (found.length > limit) out.note(`more dead letters than the ${limit} shown; use --limit`);
      return 0;
    },
  },
  {
    words: ['dlq', 'replay'],
    usage: 'dlq replay (GROUP TOPIC | DLQ_TOPIC) [FILTERS] [--to T] [--rate N/s] [--dry-run]',
    summary: 'publish dead letters again, byte for byte, to their topic or --to; never one twice',
    positionals: [1, 2],
    options: {
      ...FILTER_OPTIONS,
      to: { type: 'string' },
      rate: { type: 'string' },
      'dry-run': { type: 'boolean' },
    },
    async run({ values, positionals, out, bus, signal }) {
      const limit = intOption(values, 'limit', 1);
      const rate = rateOption(values);
      const dryRun = values['dry-run'] === true;
      const source = sourceOf(positionals, values);
      const filter = filterOf(values);
      const client = await bus();
      const progress = createProgress({
        label: `dlq replay ${positionals.join(' ')}`,
        unit: 'records scanned',
        json: out.json,
      });
      let result: ReplayResult;
      try {
        result = await replayDeadLetters(client, {
          ...source,
          filter,
          dryRun,
          signal,
          ...(values.to === undefined ? {} : { to: values.to as string }),
          ...(limit === undefined ? {} : { limit }),
          ...(rate === undefined ? {} : { rate }),
          onProgress: (p) => progress.update(p.scanned, p.toScan),
        });
      } catch (err) {
        progress.clear();
        throw err;
      }
      progress.finish(result.stopped ? 'stopped' : undefined);
      const where = result.targets.map((t) => `${t.topic}/${t.partition} x${t.count}`).join(', ');
      const verb = dryRun ? 'would replay' : 'replayed';
      out.record(
        result,
        [
          `${verb} ${result.replayed} dead letter${result.replayed === 1 ? '' : 's'} from ${result.dlqTopic}${
            where === '' ? '' : ` to ${where}`
          }`,
          ...(result.skipped > 0 ? [`${result.skipped} left in place (filter or --limit)`] : []),
          ...(result.invalid > 0 ? [`${result.invalid} records that are not dead letters ignored`] : []),
          ...(result.stopped ? ['stopped by a signal before the end'] : []),
        ].join('\n'),
      );
      return 0;
    },
  },
];

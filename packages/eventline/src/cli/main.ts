import { type ParseArgsConfig, parseArgs } from 'node:util';
import type { Eventline } from '../client.ts';
import { createOutput, describeError, type Output, UsageError } from './output.ts';

type Options = NonNullable<ParseArgsConfig['options']>;
type Values = Record<string, string | boolean | string[] | boolean[] | undefined>;

export interface CommandContext {
  values: Values;
  positionals: string[];
  out: Output;
  /** Connects on first use, to --url, EVENTLINE_URL or the default. */
  bus(): Promise<Eventline>;
  /** Aborted on SIGINT/SIGTERM, so long-running commands can finish cleanly. */
  signal: AbortSignal;
}

export interface Command {
  words: string[];
  usage: string;
  summary: string;
  options?: Options;
  /** Exact count, or [min, max]. */
  positionals: number | [number, number];
  run(ctx: CommandContext): Promise<number | undefined>;
}

const GLOBAL: Options = {
  url: { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
};

async function commands(): Promise<Command[]> {
  const [topics, produce, consume, groups, schemas, dlq, metrics, tail] = await Promise.all([
    import('./commands/topics.ts'),
    import('./commands/produce.ts'),
    import('./commands/consume.ts'),
    import('./commands/groups.ts'),
    import('./commands/schemas.ts'),
    import('./commands/dlq.ts'),
    import('./commands/metrics.ts'),
    import('./commands/tail.ts'),
  ]);
  return [
    ...topics.commands,
    ...produce.commands,
    ...consume.commands,
    ...tail.commands,
    ...groups.commands,
    ...schemas.commands,
    ...dlq.commands,
    ...metrics.commands,
  ];
}

function help(all: Command[]): string {
  const lines = all.map((c) => `  ${c.usage.padEnd(62)} ${c.summary}`);
  return [
    'eventline: topics, records, consumer groups and schemas on the embedded engine or Kafka',
    '',
    'Usage: eventline <command> [options]',
    '',
    'Commands:',
    ...lines,
    '',
    'Options for every command:',
    '  --url URL     engine URL (default: EVENTLINE_URL, else sqlite:.eventline/events.db)',
    '  --json        one JSON object per line, for scripts',
    '  -h, --help    this text',
    '',
    'Exit codes: 0 success, 1 failure, 2 usage error. Documentation: docs/cli.md',
  ].join('\n');
}

/** Runs the CLI; returns the exit code. */
export async function main(argv: string[]): Promise<number> {
  const json = argv.includes('--json');
  const out = createOutput(json);
  let bus: Eventline | undefined;
  const abort = new AbortController();
  const onSignal = (): void => abort.abort();
  // A reader that went away (`eventline tail … | head`) stops the command like Ctrl-C does.
  const onStdoutError = (err: NodeJS.ErrnoException): void => {
    if (err.code === 'EPIPE') abort.abort();
    else throw err;
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  process.stdout.on('error', onStdoutError);
  try {
    const all = await commands();
    const words = commandWords(argv, valueFlags(all));
    if (words[0]?.word === 'version' || (words.length === 0 && argv.includes('--version'))) {
      const pkg = (await import('../../package.json', { with: { type: 'json' } })).default as {
        version: string;
      };
      out.record({ version: pkg.version }, pkg.version);
      return 0;
    }
    if (words.length === 0 || words[0]?.word === 'help') {
      const asked = words[0]?.word === 'help' || argv.includes('--help') || argv.includes('-h');
      (asked ? process.stdout : process.stderr).write(`${help(all)}\n`);
      return asked ? 0 : 2;
    }
    const command = all
      .filter((c) => c.words.every((w, i) => words[i]?.word === w))
      .sort((a, b) => b.words.length - a.words.length)[0];
    if (command === undefined) {
      const named = words.slice(0, 2).map((w) => w.word);
      throw new UsageError(`unknown command: ${named.join(' ')}`);
    }
    // Drop the command words wherever they stand; what is left are options and positionals.
    const drop = new Set(words.slice(0, command.words.length).map((w) => w.index));
    const args = argv.filter((_, i) => !drop.has(i));
    const { values, positionals } = parseArgs({
      args,
      options: { ...GLOBAL, ...command.options },
      allowPositionals: true,
      strict: true,
    });
    if (values.help) {
      process.stdout.write(`Usage: eventline ${command.usage}\n${command.summary}\n`);
      return 0;
    }
    const [min, max] =
      typeof command.positionals === 'number'
        ? [command.positionals, command.positionals]
        : command.positionals;
    if (positionals.length < min || positionals.length > max) {
      throw new UsageError(`expected: eventline ${command.usage}`);
    }
    const ctx: CommandContext = {
      values: values as Values,
      positionals,
      out,
      signal: abort.signal,
      bus: async () => {
        if (bus === undefined) {
          const { connect } = await import('../client.ts');
          bus = await connect(values.url as string | undefined, { clientId: 'eventline-cli' });
        }
        return bus;
      },
    };
    return (await command.run(ctx)) ?? 0;
  } catch (err) {
    const { line, code } = describeError(err);
    process.stderr.write(`${line}\n`);
    return code;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    // The stdout listener stays: a closed pipe may report a failed write after main returns.
    await bus?.close().catch(() => {});
  }
}

/**
 * `--name` and `-n` of every command's options that take a value. One set serves all commands:
 * no name is a flag in one command and takes a value in another.
 */
function valueFlags(all: Command[]): Set<string> {
  const flags = new Set<string>();
  for (const options of [GLOBAL, ...all.map((c) => c.options ?? {})]) {
    for (const [name, o] of Object.entries(options)) {
      if (o.type !== 'string') continue;
      flags.add(`--${name}`);
      if (o.short !== undefined) flags.add(`-${o.short}`);
    }
  }
  return flags;
}

/**
 * The words of the command line that are not options (`topics create NAME`) with their places,
 * skipping option values, so `eventline --registry URL schemas list` finds `schemas list`.
 */
function commandWords(argv: string[], valueFlags: Set<string>): { word: string; index: number }[] {
  const words: { word: string; index: number }[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (valueFlags.has(a)) i++;
    else if (!a.startsWith('-')) words.push({ word: a, index: i });
  }
  return words;
}

/** Reads a whole-number option; usage error naming the flag when it is not one. */
export function intOption(values: Values, name: string, min = 0): number | undefined {
  const raw = values[name];
  if (raw === undefined) return undefined;
  const n = Number(raw);
  if (typeof raw !== 'string' || !/^\d+$/.test(raw) || n < min) {
    throw new UsageError(
      `--${name} needs a whole number${min > 0 ? ` of at least ${min}` : ''}, got ${JSON.stringify(raw)}`,
    );
  }
  return n;
}

import { isUtf8 } from 'node:buffer';
import { isEventlineError } from '../errors.ts';

/** A usage mistake: printed as one line, exit code 2. */
export class UsageError extends Error {
  override name = 'UsageError';
}

/** Input that cannot be used, such as a file that does not parse or declares something invalid: exit code 2. */
export class BadInputError extends Error {
  override name = 'BadInputError';
}

export interface Output {
  json: boolean;
  /** Writes one record: a JSON line with --json, else the human text. */
  record(data: object, human: string): void;
  /** Human-only lines (headings, tables); nothing with --json. */
  info(line: string): void;
  /** Progress and notes: always on stderr so stdout stays data. */
  note(line: string): void;
}

export function createOutput(json: boolean): Output {
  return {
    json,
    record: (data, human) => {
      process.stdout.write(`${json ? JSON.stringify(data) : human}\n`);
    },
    info: (line) => {
      if (!json) process.stdout.write(`${line}\n`);
    },
    note: (line) => {
      process.stderr.write(`${line}\n`);
    },
  };
}

/** Formats rows as aligned columns. */
export function table(header: string[], rows: (string | number)[][]): string {
  const all = [header, ...rows.map((r) => r.map(String))];
  const widths = header.map((_, i) => Math.max(...all.map((r) => (r[i] ?? '').length)));
  return all
    .map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  '))
    .join('\n');
}

/** One clear line for an error, and the exit code it deserves. */
export function describeError(err: unknown): { line: string; code: number } {
  if (err instanceof UsageError)
    return { line: `eventline: usage: ${err.message} (see: eventline help)`, code: 2 };
  if (err instanceof BadInputError) return { line: `eventline: error: ${err.message}`, code: 2 };
  if (isEventlineError(err)) return { line: `eventline: error: ${err.message} [${err.code}]`, code: 1 };
  const e = err as { code?: string; message?: string };
  if (
    e?.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' ||
    e?.code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE' ||
    e?.code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL'
  ) {
    return { line: `eventline: usage: ${e.message} (see: eventline help)`, code: 2 };
  }
  return { line: `eventline: error: ${e?.message ?? String(err)}`, code: 1 };
}

/** Renders bytes for people and JSON: UTF-8 text when valid, else base64 (and says so). */
export function renderBytes(buf: Buffer | null): { text: string | null; encoding: 'utf8' | 'base64' } {
  if (buf === null) return { text: null, encoding: 'utf8' };
  if (isUtf8(buf)) return { text: buf.toString('utf8'), encoding: 'utf8' };
  return { text: buf.toString('base64'), encoding: 'base64' };
}

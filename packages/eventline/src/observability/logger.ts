import { createRequire } from 'node:module';
import type { DestinationStream, Logger as PinoLogger } from 'pino';
import { fail } from '../errors.ts';

/**
 * The logging interface Eventline writes to. It matches pino's calling convention
 * (`logger.warn({ topic }, 'message')`), so a pino logger can be passed as it is.
 */
export interface Logger {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

const LEVELS = ['debug', 'info', 'warn', 'error', 'silent'] as const;
export type LogLevel = (typeof LEVELS)[number];

/** Options of {@link createLogger}. */
export interface LoggerOptions {
  /** The lowest level written. Default: EVENTLINE_LOG_LEVEL, else `'warn'`. */
  level?: LogLevel;
  /** Where the JSON lines go (any pino destination, or an object with `write(line)`). Default: stderr. */
  destination?: DestinationStream;
}

/**
 * Fields whose values are secrets wherever they appear (up to four levels deep): SASL and
 * registry passwords, HTTP `authorization` headers, tokens.
 */
const SECRET_KEYS = ['password', 'authorization', 'secret', 'token'];
const REDACT_PATHS = SECRET_KEYS.flatMap((k) => [k, `*.${k}`, `*.*.${k}`, `*.*.*.${k}`]);
const CENSOR = '[redacted]';

let stderr: DestinationStream | undefined;

// pino is loaded when a line is first written at an enabled level: most processes never write one
// (the default level is warn), and loading it costs 15-25 ms of a service's start.
type PinoModule = typeof import('pino');
let pinoModule: PinoModule | undefined;
function loadPino(): PinoModule {
  pinoModule ??= createRequire(import.meta.url)('pino') as PinoModule;
  return pinoModule;
}

/**
 * The default logger: pino, one JSON object per line on stderr (`level` as a name, `time` in ISO
 * 8601, `msg`, then the fields), at `level` and above: default EVENTLINE_LOG_LEVEL, else `warn`.
 * Secrets are never written: fields named `password`, `authorization`, `secret` or `token` are
 * replaced with `[redacted]`, and credentials inside strings (`scheme://user:password@host`,
 * `password=` query parameters, `Basic`/`Bearer` tokens) are masked, in messages and errors too.
 *
 * Throws EVENTLINE_ERR_INVALID_ARGUMENT for a level (or EVENTLINE_LOG_LEVEL) that is not one of
 * debug, info, warn, error, silent.
 */
export function createLogger(options: LogLevel | LoggerOptions = {}): Logger {
  const { level, destination } = typeof options === 'string' ? { level: options } : options;
  const min = checkLevel(level ?? levelFromEnv(), level === undefined ? 'EVENTLINE_LOG_LEVEL' : 'level');
  let made: PinoLogger | undefined;
  const instance = (): PinoLogger => {
    made ??= makePino(min, destination);
    return made;
  };
  const at = (name: Exclude<LogLevel, 'silent'>): ((obj: object, msg?: string) => void) =>
    LEVELS.indexOf(name) < LEVELS.indexOf(min as LogLevel)
      ? () => {}
      : (obj, msg) => {
          instance()[name](obj, msg);
        };
  return { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
}

function makePino(level: string, destination: DestinationStream | undefined): PinoLogger {
  const pino = loadPino().pino;
  return pino(
    {
      name: 'eventline',
      level,
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: { paths: REDACT_PATHS, censor: CENSOR },
      // Errors are serialized (and scrubbed) by the `log` formatter, which runs first.
      serializers: { err: (v: unknown) => v },
      formatters: {
        level: (label) => ({ level: label }),
        log: (fields) => scrubFields(fields),
      },
      hooks: {
        logMethod(args, method) {
          for (let i = 0; i < args.length; i++) {
            if (typeof args[i] === 'string') args[i] = scrubText(args[i] as string);
          }
          method.apply(this, args);
        },
      },
    },
    destination ?? stderrDestination(),
  );
}

/** One synchronous stderr stream for every default logger: a line is written before the process can exit. */
function stderrDestination(): DestinationStream {
  stderr ??= loadPino().pino.destination({ fd: 2, sync: true });
  return stderr;
}

function levelFromEnv(): string {
  const raw = process.env.EVENTLINE_LOG_LEVEL;
  return raw === undefined || raw.trim() === '' ? 'warn' : raw.trim().toLowerCase();
}

function checkLevel(level: string, where: string): LogLevel {
  if (!(LEVELS as readonly string[]).includes(level)) {
    fail(
      'EVENTLINE_ERR_INVALID_ARGUMENT',
      `${where} must be one of ${LEVELS.join(', ')}; got ${JSON.stringify(level)}`,
    );
  }
  return level as LogLevel;
}

// Up to the last @ of the word: a password may hold a `/` or an `@` that was not percent-encoded.
const URL_CREDENTIALS = /(\/\/[^\s:@/]*):\S*@/g;
const PASSWORD_PARAM = /([?&;]password=)[^&;\s"']*/gi;
const AUTH_TOKEN = /\b(Basic|Bearer) [A-Za-z0-9+/=._~-]{6,}/g;

/** Masks credentials inside a string: URL user info passwords, password parameters, auth tokens. */
function scrubText(text: string): string {
  if (!text.includes('//') && !/password=|Basic |Bearer /i.test(text)) return text;
  return text
    .replace(URL_CREDENTIALS, '$1:***@')
    .replace(PASSWORD_PARAM, '$1***')
    .replace(AUTH_TOKEN, `$1 ${CENSOR}`);
}

/** The logged fields with errors serialized and every string scrubbed; the caller's objects stay untouched. */
function scrubFields(fields: Record<string, unknown>): Record<string, unknown> {
  return scrub(fields, 0) as Record<string, unknown>;
}

function scrub(value: unknown, depth: number): unknown {
  if (typeof value === 'string') return scrubText(value);
  if (value === null || typeof value !== 'object' || depth > 6) return value;
  if (value instanceof Error) return scrub(loadPino().pino.stdSerializers.err(value), depth + 1);
  if (Buffer.isBuffer(value) || ArrayBuffer.isView(value) || value instanceof Date) return value;
  // Copied only when something changed: the caller's objects are never modified.
  if (Array.isArray(value)) {
    let out: unknown[] | undefined;
    for (let i = 0; i < value.length; i++) {
      const v = scrub(value[i], depth + 1);
      if (v === value[i]) continue;
      out ??= value.slice();
      out[i] = v;
    }
    return out ?? value;
  }
  let out: Record<string, unknown> | undefined;
  for (const [k, v] of Object.entries(value)) {
    const s = scrub(v, depth + 1);
    if (s === v) continue;
    out ??= { ...value };
    out[k] = s;
  }
  return out ?? value;
}

/** A logger that drops everything. */
export const silentLogger: Logger = { debug() {}, info() {}, warn() {}, error() {} };

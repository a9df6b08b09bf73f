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

const LEVELS = { debug: 20, info: 30, warn: 40, error: 50, silent: 100 } as const;
export type LogLevel = keyof typeof LEVELS;

function serialize(obj: object): object {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(obj)) {
    if (v instanceof Error) {
      out[k] = {
        type: v.name,
        message: v.message,
        ...('code' in v ? { code: (v as { code: unknown }).code } : {}),
      };
    } else out[k] = v;
  }
  return out;
}

/**
 * The default logger: one JSON object per line on stderr, at `level` and above (default `warn`,
 * overridden by EVENTLINE_LOG_LEVEL).
 */
export function createLogger(
  level: LogLevel = (process.env.EVENTLINE_LOG_LEVEL as LogLevel) ?? 'warn',
): Logger {
  const min = LEVELS[level] ?? LEVELS.warn;
  const write =
    (name: Exclude<LogLevel, 'silent'>) =>
    (obj: object, msg?: string): void => {
      if (LEVELS[name] < min) return;
      process.stderr.write(
        `${JSON.stringify({ level: name, time: new Date().toISOString(), msg, ...serialize(obj) })}\n`,
      );
    };
  return { debug: write('debug'), info: write('info'), warn: write('warn'), error: write('error') };
}

/** A logger that drops everything. */
export const silentLogger: Logger = { debug() {}, info() {}, warn() {}, error() {} };

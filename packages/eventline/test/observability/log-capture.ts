import { createLogger, type Logger } from '../../src/observability/logger.ts';

/** A parsed log line: pino's JSON with Eventline's fields. */
export type LogLine = Record<string, unknown> & { level: string; msg: string };

/** The default (pino) logger at `debug`, writing into memory: every raw line and its parsed form. */
export function captureLogs(): { logger: Logger; raw: string[]; lines: LogLine[] } {
  const raw: string[] = [];
  const lines: LogLine[] = [];
  const logger = createLogger({
    level: 'debug',
    destination: {
      write(line: string) {
        raw.push(line);
        lines.push(JSON.parse(line) as LogLine);
      },
    },
  });
  return { logger, raw, lines };
}

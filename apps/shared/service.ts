/**
 * Running a service as a process: `runMain(start)` in each `*-main.ts`.
 */
import { createLogger, type Eventline, type Logger, type LogLevel, stopOnSignals } from 'eventline';

/** A started service: its name, the base URL it listens on, and how to stop it. */
export interface RunningService {
  name: string;
  url: string;
  /** Stops taking requests, finishes in-flight work, closes the database and the engine. */
  close(): Promise<void>;
}

/**
 * The services' own log: JSON lines on stderr at `LOG_LEVEL` (default `info`), with the service's
 * name on every line. Eventline's own logger stays at `EVENTLINE_LOG_LEVEL` (default `warn`).
 */
export function serviceLogger(service: string, level?: LogLevel): Logger {
  const base = createLogger(level ?? ((process.env.LOG_LEVEL as LogLevel | undefined) || 'info'));
  return {
    debug: (obj, msg) => base.debug({ service, ...obj }, msg),
    info: (obj, msg) => base.info({ service, ...obj }, msg),
    warn: (obj, msg) => base.warn({ service, ...obj }, msg),
    error: (obj, msg) => base.error({ service, ...obj }, msg),
  };
}

/**
 * Starts a service from the environment and keeps it running: prints one JSON line
 * `{"service":name,"url":url}` on stdout once it listens (what `npm start` and the tests wait for),
 * and closes it on SIGINT or SIGTERM (a second signal exits at once). A start that fails prints the
 * reason on stderr and exits with code 1.
 */
export async function runMain(start: () => Promise<RunningService>): Promise<void> {
  let service: RunningService;
  try {
    service = await start();
  } catch (err) {
    process.stderr.write(
      `${JSON.stringify({ level: 'error', msg: 'start failed', error: (err as Error).message })}\n`,
    );
    process.exit(1);
  }
  stopOnSignals([service], { timeout: '30s' });
  process.stdout.write(`${JSON.stringify({ service: service.name, url: service.url })}\n`);
}

/**
 * What `npm start` (apps/start.ts) needs from a system: `apps/<system>/src/setup.ts` exports these
 * as functions named `setup`, `seed` and `tryIt`.
 */
export interface SystemSetup {
  /** Creates the system's topics (and registers its schemas) once, before its services start. */
  setup(bus: Eventline): Promise<string[]>;
  /** Seed data, once the services listen (`urls` by service name); returns lines to print. */
  seed?(urls: Readonly<Record<string, string>>): Promise<string[]>;
  /** Commands a newcomer can try, printed at the end. */
  tryIt?(urls: Readonly<Record<string, string>>): string[];
}

/**
 * Starting a service (`startService`: what it opened is closed again on failure and by `close()`)
 * and running it as a process: `runMain(start)` in each `*-main.ts`.
 */
import { connect, createLogger, type Eventline, type Logger, type LogLevel, stopOnSignals } from 'eventline';
import { openDatabase, type ServiceDatabase } from './db.ts';

/** A started service: its name, the base URL it listens on, and how to stop it. */
export interface RunningService {
  name: string;
  url: string;
  /** Stops taking requests, finishes in-flight work, closes the database and the engine. */
  close(): Promise<void>;
}

/** Where a service starting up adds a close step for each thing it opens. */
export interface Closer {
  /** Adds a step; on close, steps run last added first. */
  add(step: () => Promise<void> | void): void;
}

/**
 * Starts a service with `start`, which adds to `closer` a step closing each thing right after it
 * opens it. When `start` throws, what it had opened is closed and the error rethrown. Otherwise the
 * service gets a `close()` that runs every step once, last added first, going on when one fails and
 * rethrowing the first failure; later calls return the same promise.
 */
export async function startService<S extends object>(
  start: (closer: Closer) => Promise<S>,
): Promise<S & { close(): Promise<void> }> {
  const steps: (() => Promise<void> | void)[] = [];
  const closeAll = async (): Promise<void> => {
    let failure: { err: unknown } | undefined;
    for (const step of steps) {
      try {
        await step();
      } catch (err) {
        failure ??= { err };
      }
    }
    if (failure) throw failure.err;
  };
  try {
    const service = await start({ add: (step) => void steps.unshift(step) });
    let closing: Promise<void> | undefined;
    return Object.assign(service, { close: () => (closing ??= closeAll()) });
  } catch (err) {
    await closeAll().catch(() => {});
    throw err;
  }
}

/**
 * A service's Eventline client: `client` itself when the caller passed one (it stays open when the
 * service closes), else a new client of that engine URL named `clientId`, closed with the service.
 */
export async function serviceBus(
  closer: Closer,
  clientId: string,
  client: Eventline | string,
): Promise<Eventline> {
  if (typeof client !== 'string') return client;
  const bus = await connect(client, { clientId });
  closer.add(() => bus.close());
  return bus;
}

/** `service`'s own database (see {@link openDatabase}), closed with the service. */
export async function serviceDatabase(
  closer: Closer,
  service: string,
  url: string | undefined,
): Promise<ServiceDatabase> {
  const db = await openDatabase(service, url);
  closer.add(() => db.close());
  return db;
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

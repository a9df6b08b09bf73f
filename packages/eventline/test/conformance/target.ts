import { type ConnectOptions, connect, Eventline } from '../../src/client.ts';
import type { Engine } from '../../src/engine/types.ts';
import { silentLogger } from '../../src/observability/logger.ts';

/**
 * An engine the conformance suite runs against. `shared` says whether other processes can open
 * the same engine: the multi-process cases (SIGKILL of consumers and producers, balance across
 * processes) need it. An in-memory database is private to its process by definition, so those
 * cases are not registered for it; every other case runs on every target.
 */
export interface ConformanceTarget {
  name: string;
  url: string;
  shared: boolean;
  /** A client for a case; closed by the suite after the case. */
  connect(options?: ConnectOptions): Promise<Eventline>;
  close(): Promise<void>;
}

export interface TargetDescriptor {
  name: string;
  shared: boolean;
  open(): Promise<ConformanceTarget>;
}

/** A target over a URL every client connects to on its own (a file, a Kafka cluster). */
export function urlTarget(
  name: string,
  url: string,
  cleanup: () => Promise<void> = async () => {},
): TargetDescriptor {
  return {
    name,
    shared: true,
    open: async () => ({
      name,
      url,
      shared: true,
      connect: (options) => connect(url, { logger: silentLogger, ...options }),
      close: cleanup,
    }),
  };
}

/** The in-memory target: every client of a run shares one engine (one in-memory database). */
export function memoryTarget(): TargetDescriptor {
  return {
    name: 'embedded (memory)',
    shared: false,
    open: async () => {
      const first = await connect('sqlite::memory:', { logger: silentLogger });
      const engine = first.engine;
      // Clients of the suite must not close the one engine they share.
      const shared: Engine = new Proxy(engine, {
        get(target, prop, receiver) {
          if (prop === 'close') return async () => {};
          const v = Reflect.get(target, prop, receiver);
          return typeof v === 'function' ? v.bind(target) : v;
        },
      });
      return {
        name: 'embedded (memory)',
        url: 'sqlite::memory:',
        shared: false,
        connect: async (options) => new Eventline(shared, { logger: silentLogger, ...options }),
        close: () => first.close(),
      };
    },
  };
}

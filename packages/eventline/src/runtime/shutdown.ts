import type { Logger } from '../observability/logger.ts';
import { type Duration, parseDuration } from '../util/units.ts';

/** Something that can be shut down: a subscription (`stop`) or a client (`close`). */
export type Stoppable = { stop(): Promise<void> } | { close(): Promise<void> };

export interface ShutdownOptions {
  /** Default `['SIGTERM', 'SIGINT']`. */
  signals?: readonly NodeJS.Signals[];
  /** After this long the process exits anyway, with code 1. Default `'30s'`. */
  timeout?: Duration;
  /** Exit the process once everything stopped. Default true. */
  exit?: boolean;
  logger?: Logger;
}

/**
 * Wires SIGTERM and SIGINT to an orderly shutdown: each target is stopped or closed in the order
 * given (subscriptions finish their in-flight work and commit; clients close), then the process
 * exits with code 0. A second signal exits at once with code 130. Returns a function that removes
 * the handlers.
 */
export function stopOnSignals(targets: readonly Stoppable[], options: ShutdownOptions = {}): () => void {
  const signals = options.signals ?? ['SIGTERM', 'SIGINT'];
  const timeoutMs = parseDuration(options.timeout ?? '30s', 'timeout');
  let shuttingDown = false;
  const onSignal = (signal: NodeJS.Signals): void => {
    if (shuttingDown) {
      process.exit(130);
    }
    shuttingDown = true;
    options.logger?.info({ signal }, 'shutting down');
    const force = setTimeout(() => {
      options.logger?.error({ signal, timeoutMs }, 'shutdown timed out');
      process.exit(1);
    }, timeoutMs);
    force.unref();
    void (async () => {
      for (const t of targets) {
        try {
          await ('stop' in t ? t.stop() : t.close());
        } catch (err) {
          options.logger?.error({ err }, 'error during shutdown');
        }
      }
      clearTimeout(force);
      dispose();
      if (options.exit !== false) process.exit(0);
    })();
  };
  for (const s of signals) process.on(s, onSignal);
  const dispose = (): void => {
    for (const s of signals) process.off(s, onSignal);
  };
  return dispose;
}

import type { TopicPartition } from '../engine/types.ts';
import type { ErrorInfo } from '../runtime/subscription.ts';
import type { Logger } from './logger.ts';

/**
 * The log lines of the consumer runtime, in one place so their levels, messages and fields stay
 * stable (docs/operations.md#logs lists them). Field names: `group`, `memberId`, `topic`,
 * `partition`, `offset`, `attempt`, `retryInMs`, `deadLetter`, `errorCode`, `err`.
 */

/** The stable code of an error: an EventlineError's code, or a driver's string `code` when it has one. */
export function errorCodeOf(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null | undefined)?.code;
  return typeof code === 'string' ? code : undefined;
}

/**
 * The default `onError` of a subscription. A record that will be tried again: `info` (one line
 * per retry, with `attempt` and `retryInMs`). A record set aside in its dead-letter (or parking
 * lot) topic, or dropped after its last attempt: `warn`. Anything else (the engine failed to
 * join, fetch or commit): `error`.
 */
export function logDeliveryError(logger: Logger, err: Error, info: ErrorInfo): void {
  const errorCode = errorCodeOf(err);
  const fields = { ...info, ...(errorCode === undefined ? {} : { errorCode }), err };
  if (info.offset === undefined) logger.error(fields, 'subscription error');
  else if (info.deadLetter !== undefined) logger.warn(fields, 'record sent to the dead-letter topic');
  else if (info.dropped === true) logger.warn(fields, 'record dropped after its last attempt');
  else if (info.retryInMs !== undefined) logger.info(fields, 'delivery failed; will retry');
  else logger.error(fields, 'delivery failed');
}

/** A member joined its group (`info`). */
export function logJoined(logger: Logger, group: string, memberId: string, topics: readonly string[]): void {
  logger.info({ group, memberId, topics }, 'joined consumer group');
}

/**
 * Partitions given to this member or taken away in a rebalance (`info`), or lost because the
 * member missed its session timeout (`warn`). `partitions` lists `topic/partition` names.
 */
export function logPartitions(
  logger: Logger,
  change: 'assigned' | 'revoked' | 'lost',
  group: string,
  memberId: string,
  tps: readonly TopicPartition[],
): void {
  const fields = {
    group,
    memberId,
    topics: [...new Set(tps.map((tp) => tp.topic))],
    partitions: tps.map((tp) => `${tp.topic}/${tp.partition}`),
  };
  if (change === 'lost') logger.warn(fields, 'partitions lost: the session timed out');
  else logger.info(fields, `partitions ${change}`);
}

/** The engine answered again after failed fetches (`info`); the failures themselves were logged as errors. */
export function logRecovered(logger: Logger, group: string, memberId: string, failures: number): void {
  logger.info({ group, memberId, failures }, 'engine reachable again');
}

/** A member left its group on stop (`info`). */
export function logLeft(logger: Logger, group: string, memberId: string): void {
  logger.info({ group, memberId }, 'left consumer group');
}

/**
 * The fallback lookups of a view that is not ready yet, logged per burst rather than per call: the
 * first lookup at `info`, then (still not ready) at most one `warn` a minute with the count since
 * the last line, and one `info` when the view becomes ready, with the total.
 */
export class FallbackLog {
  readonly #logger: Logger;
  readonly #topic: string;
  #total = 0;
  #unreported = 0;
  #loggedAt: number | undefined;

  constructor(logger: Logger, topic: string) {
    this.#logger = logger;
    this.#topic = topic;
  }

  used(): void {
    this.#total++;
    this.#unreported++;
    const now = Date.now();
    if (this.#loggedAt !== undefined && now - this.#loggedAt < 60_000) return;
    const fields = { topic: this.#topic, fallbackUses: this.#unreported };
    if (this.#loggedAt === undefined) {
      this.#logger.info(fields, 'view not ready: getOrLoad answers from the fallback loader');
    } else this.#logger.warn(fields, 'view still not ready: getOrLoad answers from the fallback loader');
    this.#loggedAt = now;
    this.#unreported = 0;
  }

  ready(): void {
    if (this.#total > 0) {
      this.#logger.info(
        { topic: this.#topic, fallbackUses: this.#total },
        'view ready: fallback lookups end',
      );
    }
  }
}

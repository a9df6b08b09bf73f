import { EventlineError } from '../errors.ts';
import { type DedupStore, redactConnectionString } from './dedup.ts';

/** The few commands the store sends; a client from `redis`'s `createClient()` has them. */
export interface RedisDedupClient {
  exists(key: string): Promise<number>;
  mGet(keys: string[]): Promise<unknown[]>;
  set(
    key: string,
    value: string,
    options: { condition: 'NX'; expiration: { type: 'PX'; value: number } },
  ): Promise<unknown>;
}

export type RedisDedupStoreOptions =
  /** A `redis://` or `rediss://` URL; the store connects and closes its own client. */
  | { url: string }
  /** A connected client the application owns; `close()` leaves it open. */
  | { client: RedisDedupClient };

const PREFIX = 'eventline:dedup:';

/**
 * The key of a mark: `eventline:dedup:<group>:<id>`. `%` and `:` in the group are percent-encoded,
 * so that no group and id pair can produce another pair's key.
 */
export function redisDedupKey(group: string, id: string): string {
  return `${PREFIX}${group.replace(/[%:]/g, (c) => (c === '%' ? '%25' : '%3A'))}:${id}`;
}

/**
 * A dedup store in Redis, for services on Kafka that share marks across instances. A mark is a key
 * `eventline:dedup:<group>:<id>` set with `SET … NX PX ttl`, so Redis expires it by itself and
 * marking twice keeps the first mark. Batches are pipelined: `MGET` for lookups, one `SET` per id
 * sent together. A mark is as durable as the server's persistence settings make it (AOF with
 * `appendfsync everysec` loses at most a second on a server crash).
 *
 * `redis` (npm, v5 or later) is loaded only when this is called.
 *
 * @throws EVENTLINE_ERR_ENGINE_UNAVAILABLE when the server cannot be reached or the `redis` package
 * is missing.
 */
export async function redisDedupStore(options: RedisDedupStoreOptions): Promise<DedupStore> {
  if ('client' in options) return new RedisStore(options.client, 'redis (application client)', undefined);
  const description = redactConnectionString(options.url);
  let client: RedisDedupClient & { close(): Promise<void>; destroy(): void };
  try {
    const { createClient } = await import('redis');
    const created = createClient({ url: options.url });
    // Reconnection is the client's business; an error event without a listener would crash the process.
    created.on('error', () => {});
    await created.connect();
    client = created;
  } catch (err) {
    throw new EventlineError(
      'EVENTLINE_ERR_ENGINE_UNAVAILABLE',
      `redis dedup store ${description}: cannot connect`,
      {
        cause: err,
      },
    );
  }
  return new RedisStore(client, description, client);
}

class RedisStore implements DedupStore {
  readonly description: string;
  readonly #client: RedisDedupClient;
  readonly #owned: { close(): Promise<void> } | undefined;

  constructor(client: RedisDedupClient, description: string, owned: { close(): Promise<void> } | undefined) {
    this.#client = client;
    this.description = description;
    this.#owned = owned;
  }

  async has(group: string, id: string): Promise<boolean> {
    return (await this.#client.exists(redisDedupKey(group, id))) > 0;
  }

  async hasMany(group: string, ids: readonly string[]): Promise<Set<string>> {
    const values = await this.#client.mGet(ids.map((id) => redisDedupKey(group, id)));
    const found = new Set<string>();
    values.forEach((v, i) => {
      if (v !== null) found.add(ids[i]!);
    });
    return found;
  }

  async mark(group: string, id: string, ttlMs: number): Promise<void> {
    await this.#client.set(redisDedupKey(group, id), '1', {
      condition: 'NX',
      expiration: { type: 'PX', value: Math.max(1, Math.ceil(ttlMs)) },
    });
  }

  async markMany(group: string, ids: readonly string[], ttlMs: number): Promise<void> {
    // Commands issued in one tick travel in one pipelined write.
    await Promise.all(ids.map((id) => this.mark(group, id, ttlMs)));
  }

  async close(): Promise<void> {
    await this.#owned?.close();
  }
}

import { fail } from '../errors.ts';

export type EngineUrl =
  | { kind: 'sqlite'; path: string }
  | { kind: 'kafka'; brokers: string[]; username?: string; password?: string; tls: boolean };

/** The URL used when neither an argument nor EVENTLINE_URL gives one. */
export const DEFAULT_URL = 'sqlite:.eventline/events.db';

/**
 * Parses an engine URL:
 * - `sqlite:PATH` (relative or absolute; `sqlite:///abs/path` also works), `sqlite::memory:`;
 * - `kafka://host:port[,host:port...]`, `kafkas://…` for TLS, with optional `user:password@`.
 */
export function parseEngineUrl(url: string): EngineUrl {
  if (typeof url !== 'string' || url.trim() === '') {
    fail(
      'EVENTLINE_ERR_INVALID_URL',
      'the engine URL is empty (examples: sqlite:.eventline/events.db, kafka://127.0.0.1:9092)',
    );
  }
  const u = url.trim();
  if (u.startsWith('sqlite:')) {
    let path = u.slice('sqlite:'.length);
    if (path === ':memory:') return { kind: 'sqlite', path };
    if (path.startsWith('//')) path = path.slice(2);
    if (path === '') fail('EVENTLINE_ERR_INVALID_URL', `engine URL ${u} names no database file`);
    return { kind: 'sqlite', path };
  }
  const kafka = /^(kafkas?):\/\/(?:([^:@/]*)(?::([^@/]*))?@)?([^/?#]+)\/?$/.exec(u);
  if (kafka) {
    const brokers = kafka[4]!.split(',').map((b) => b.trim());
    for (const b of brokers) {
      if (!/^[^:\s]+:\d{1,5}$/.test(b) && !/^\[[0-9a-fA-F:]+\]:\d{1,5}$/.test(b)) {
        fail(
          'EVENTLINE_ERR_INVALID_URL',
          `broker address ${JSON.stringify(b)} in ${redactUrl(u)} is not host:port`,
        );
      }
    }
    return {
      kind: 'kafka',
      brokers,
      tls: kafka[1] === 'kafkas',
      ...(kafka[2] ? { username: decodeURIComponent(kafka[2]) } : {}),
      ...(kafka[3] ? { password: decodeURIComponent(kafka[3]) } : {}),
    };
  }
  return fail(
    'EVENTLINE_ERR_INVALID_URL',
    `cannot use engine URL ${JSON.stringify(redactUrl(u))}: it must start with sqlite: or kafka:// (examples: sqlite:.eventline/events.db, sqlite::memory:, kafka://127.0.0.1:9092)`,
  );
}

/** The URL with any password replaced, for logs and error messages. */
export function redactUrl(url: string): string {
  // Up to the last @: a password may hold a `/` or an `@` that was not percent-encoded.
  return url.replace(/\/\/([^:@/\s]*):\S*@/, '//$1:***@');
}

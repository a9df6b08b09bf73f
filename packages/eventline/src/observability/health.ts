/**
 * Health: liveness and readiness of a service built on Eventline, as data (`bus.health()`) and as a
 * node:http handler (`healthHandler(bus)`). Liveness only says the client is open: it never asks the
 * engine, so a broker outage makes a service unready, never restarted. Readiness needs every check:
 * the engine answers, every subscription is a member of its group, every view is caught up, no
 * outbox is stuck.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Engine } from '../engine/types.ts';
import { EventlineError, fail, isEventlineError } from '../errors.ts';
import type { Outbox, OutboxBacklog } from '../patterns/outbox.ts';
import type { View } from '../patterns/view.ts';
import type { Subscription } from '../runtime/subscription.ts';
import { type Duration, formatDuration, parseDuration } from '../util/units.ts';

/** `ok`: ready. `degraded`: live and the engine answers, but a component is not ready. `down`: closed, or the engine does not answer. */
export type HealthStatus = 'ok' | 'degraded' | 'down';

export type HealthCheckKind = 'client' | 'engine' | 'subscription' | 'responder' | 'view' | 'outbox';

/** One component of a service, as `bus.health()` found it. */
export interface HealthCheck {
  /** `client`, `engine`, `subscription:<group>`, `responder:<group>`, `view:<topic>`, `outbox:<name>`. */
  name: string;
  kind: HealthCheckKind;
  ok: boolean;
  /** What was found, in words; when not ok, why. */
  detail: string;
  /** Since when (ISO 8601) the component has been in the state the check describes. */
  since: string;
  /** The error behind a failing check: its Eventline code when it has one, and its message. */
  error?: { code?: string; message: string };
}

export interface HealthReport {
  status: HealthStatus;
  /** The client is open. A restart is the remedy when this is false. */
  live: boolean;
  /** Every check is ok. */
  ready: boolean;
  /** When the report was made (ISO 8601). */
  checkedAt: string;
  checks: HealthCheck[];
}

export interface HealthOptions {
  /**
   * How long the engine probe (listing topics: a metadata request on Kafka, a read on the embedded
   * engine) and each outbox's backlog query may take before the check fails. Default `'2s'`.
   */
  timeout?: Duration;
  /**
   * Results of the engine probe and of the outbox queries are reused this long, so a prober calling
   * often does not reach the engine or the database each time. Default `'1s'`.
   */
  cacheFor?: Duration;
  /** An outbox whose oldest unsent event is older than this is stuck. Default `'60s'`. */
  outboxMaxAge?: Duration;
}

/** What a monitor reads from its client. @internal */
export interface HealthSources {
  readonly engine: Engine;
  closed(): boolean;
  subscriptions(): Iterable<Subscription>;
  isResponder(sub: Subscription): boolean;
  views(): Iterable<View<unknown, unknown>>;
  outboxes(): Iterable<Outbox>;
}

interface Settings {
  timeoutMs: number;
  cacheMs: number;
  outboxMaxAgeMs: number;
}

/** Checks durations once, so a bad option fails where it is given. */
function settingsOf(options: HealthOptions): Settings {
  if (options === null || typeof options !== 'object') {
    fail('EVENTLINE_ERR_INVALID_ARGUMENT', 'health: options must be an object');
  }
  const timeoutMs = parseDuration(options.timeout ?? '2s', 'health timeout');
  if (timeoutMs <= 0) fail('EVENTLINE_ERR_INVALID_ARGUMENT', 'health: timeout must be longer than 0');
  return {
    timeoutMs,
    cacheMs: parseDuration(options.cacheFor ?? '1s', 'health cacheFor'),
    outboxMaxAgeMs: parseDuration(options.outboxMaxAge ?? '60s', 'health outboxMaxAge'),
  };
}

interface ProbeResult {
  /** When the result was known (ms since the epoch). */
  at: number;
  ok: boolean;
  /** Round trip of a successful probe. */
  ms: number;
  error?: Error;
}

/** The health of one client; `Eventline.health()` keeps one. @internal */
export class HealthMonitor {
  readonly #sources: HealthSources;
  readonly #openedAt = Date.now();
  #closedAt: number | undefined;
  /** The engine call in flight: one at a time, however many reports wait on it. */
  #probe: Promise<void> | undefined;
  #lastProbe: ProbeResult | undefined;
  #engineOk: boolean | undefined;
  #engineSince = Date.now();
  /** Each outbox's last backlog query: reused while in flight, and for `cacheFor` once answered. */
  readonly #backlogs = new WeakMap<
    Outbox,
    { at: number; answered: boolean; backlog: Promise<OutboxBacklog> }
  >();

  constructor(sources: HealthSources) {
    this.#sources = sources;
  }

  /** The liveness check alone: no engine call, no I/O. */
  liveness(): HealthCheck {
    if (this.#sources.closed()) {
      this.#closedAt ??= Date.now();
      return {
        name: 'client',
        kind: 'client',
        ok: false,
        detail: 'the Eventline client is closed',
        since: iso(this.#closedAt),
      };
    }
    return { name: 'client', kind: 'client', ok: true, detail: 'open', since: iso(this.#openedAt) };
  }

  async report(options: HealthOptions = {}): Promise<HealthReport> {
    const settings = settingsOf(options);
    const client = this.liveness();
    const outboxes = [...this.#sources.outboxes()];
    const [engine, outboxChecks] = await Promise.all([
      this.#engineCheck(settings, client.ok),
      Promise.all(outboxes.map((o) => this.#outboxCheck(o, settings))),
    ]);
    const checks: HealthCheck[] = [client, engine];
    const names = new Map<string, number>();
    const named = (check: HealthCheck): HealthCheck => {
      // Two subscriptions of one group in one client: tell them apart.
      const n = (names.get(check.name) ?? 0) + 1;
      names.set(check.name, n);
      return n === 1 ? check : { ...check, name: `${check.name} (${n})` };
    };
    for (const sub of this.#sources.subscriptions()) {
      checks.push(
        named(subscriptionCheck(sub, this.#sources.isResponder(sub) ? 'responder' : 'subscription')),
      );
    }
    for (const view of this.#sources.views()) {
      const check = viewCheck(view);
      if (check !== undefined) checks.push(named(check));
    }
    for (const check of outboxChecks) checks.push(named(check));
    const ready = checks.every((c) => c.ok);
    return {
      status: ready ? 'ok' : !client.ok || !engine.ok ? 'down' : 'degraded',
      live: client.ok,
      ready,
      checkedAt: iso(Date.now()),
      checks,
    };
  }

  async #engineCheck(settings: Settings, open: boolean): Promise<HealthCheck> {
    const engine = this.#sources.engine;
    const base = { name: 'engine', kind: 'engine' as const };
    if (!open) {
      return { ...base, ok: false, detail: 'not asked: the client is closed', since: iso(this.#closedAt!) };
    }
    const last = this.#lastProbe;
    if (last === undefined || Date.now() - last.at >= settings.cacheMs) {
      this.#probe ??= this.#callEngine();
      const answered = await within(
        this.#probe.then(() => true),
        settings.timeoutMs,
      );
      if (!answered) {
        // The next report after `cacheFor` asks again instead of waiting on this call (a Kafka
        // request can hang for its whole request timeout after the brokers came back).
        this.#probe = undefined;
        this.#record({
          at: Date.now(),
          ok: false,
          ms: 0,
          error: new EventlineError(
            'EVENTLINE_ERR_TIMEOUT',
            `no answer within ${formatDuration(settings.timeoutMs, { approximate: true })}`,
          ),
        });
      }
    }
    const result = this.#lastProbe!;
    if (result.ok) {
      return {
        ...base,
        ok: true,
        detail: `the ${engine.kind} engine at ${engine.displayUrl} answered in ${Math.round(result.ms)} ms`,
        since: iso(this.#engineSince),
      };
    }
    return {
      ...base,
      ok: false,
      detail: `the ${engine.kind} engine at ${engine.displayUrl} does not answer: ${result.error!.message}`,
      since: iso(this.#engineSince),
      error: errorOf(result.error!),
    };
  }

  /** Asks the engine for its topics: a cheap call that needs the engine (a metadata request on Kafka). */
  async #callEngine(): Promise<void> {
    const started = performance.now();
    try {
      await this.#sources.engine.listTopics();
      // An answer that comes after a report gave up waiting still counts: the engine is back.
      this.#record({ at: Date.now(), ok: true, ms: performance.now() - started });
    } catch (err) {
      this.#record({ at: Date.now(), ok: false, ms: 0, error: asError(err) });
    } finally {
      this.#probe = undefined;
    }
  }

  #record(result: ProbeResult): void {
    // A late answer of an older probe must not overwrite a newer result.
    if (this.#lastProbe !== undefined && this.#lastProbe.at > result.at) return;
    this.#lastProbe = result;
    if (this.#engineOk !== result.ok) {
      this.#engineOk = result.ok;
      this.#engineSince = result.at;
    }
  }

  async #outboxCheck(outbox: Outbox, settings: Settings): Promise<HealthCheck> {
    const base = { name: `outbox:${outbox.name}`, kind: 'outbox' as const };
    const relay = outbox.relayState();
    let cached = this.#backlogs.get(outbox);
    if (cached === undefined || (cached.answered && Date.now() - cached.at >= settings.cacheMs)) {
      const query = { at: Date.now(), answered: false, backlog: outbox.backlog() };
      query.backlog.then(
        () => {
          query.answered = true;
          query.at = Date.now();
        },
        // A failure is not kept: the next report asks again.
        () => {
          if (this.#backlogs.get(outbox) === query) this.#backlogs.delete(outbox);
        },
      );
      this.#backlogs.set(outbox, query);
      cached = query;
    }
    let backlog: OutboxBacklog | undefined;
    let readError: Error | undefined;
    try {
      backlog = await within(cached.backlog, settings.timeoutMs);
      if (backlog === undefined) {
        readError = new EventlineError(
          'EVENTLINE_ERR_TIMEOUT',
          `no answer within ${formatDuration(settings.timeoutMs, { approximate: true })}`,
        );
      }
    } catch (err) {
      readError = asError(err);
    }
    const relayWords = RELAY_WORDS[relay.status];
    const failing =
      relay.failingSince === undefined
        ? ''
        : `; publishing fails since ${iso(relay.failingSince)}: ${relay.error?.message ?? 'unknown error'}`;
    if (readError !== undefined || backlog === undefined) {
      const error = readError ?? new Error('no backlog');
      return {
        ...base,
        ok: false,
        detail: `the outbox table (${outbox.description}) cannot be read: ${error.message}; ${relayWords}`,
        since: iso(Date.now()),
        error: errorOf(error),
      };
    }
    const waiting = `${backlog.count} unsent event(s)${
      backlog.count > 0
        ? `, the oldest ${formatDuration(backlog.oldestAgeMs, { approximate: true })} old`
        : ''
    }`;
    if (relay.status === 'ended') {
      return {
        ...base,
        ok: false,
        detail: `${relayWords}; ${waiting}`,
        since: iso(relay.since),
        ...(relay.error === undefined ? {} : { error: errorOf(relay.error) }),
      };
    }
    if (backlog.count > 0 && backlog.oldestAgeMs > settings.outboxMaxAgeMs) {
      const limit = formatDuration(settings.outboxMaxAgeMs, { approximate: true });
      return {
        ...base,
        ok: false,
        detail: `stuck: ${waiting} (limit ${limit}); ${relayWords}${failing}`,
        // When the oldest event crossed the limit.
        since: iso(Date.now() - (backlog.oldestAgeMs - settings.outboxMaxAgeMs)),
        ...(relay.error === undefined || relay.failingSince === undefined
          ? {}
          : { error: errorOf(relay.error) }),
      };
    }
    return { ...base, ok: true, detail: `${waiting}; ${relayWords}${failing}`, since: iso(relay.since) };
  }
}

const RELAY_WORDS = {
  running: 'its relay runs in this process',
  standby: 'its relay waits on standby (another process holds the lease)',
  off: 'no relay runs in this process',
  stopping: 'its relay is stopping',
  ended: 'its relay ended: the Eventline client was closed under it',
} as const;

function subscriptionCheck(sub: Subscription, kind: 'subscription' | 'responder'): HealthCheck {
  const s = sub.state();
  const base = { name: `${kind}:${sub.group}`, kind };
  const group = `group ${sub.group}`;
  const failing = (what: string): HealthCheck => ({
    ...base,
    ok: false,
    detail: `${what} fails since ${iso(s.failingSince!)}: ${s.error?.message ?? 'unknown error'}`,
    since: iso(s.failingSince!),
    ...(s.error === undefined ? {} : { error: errorOf(s.error) }),
  });
  switch (s.status) {
    case 'starting':
      if (s.failingSince !== undefined) return failing(`joining ${group}`);
      return { ...base, ok: false, detail: `joining ${group}`, since: iso(s.since) };
    case 'running':
      if (s.failingSince !== undefined) return failing(`reading records for ${group}`);
      return {
        ...base,
        ok: true,
        detail:
          s.partitions > 0
            ? `a member of ${group} with ${s.partitions} partition(s)`
            : `a member of ${group} with no partition now (the group has more members than partitions, or is rebalancing)`,
        since: iso(s.since),
      };
    case 'stopping':
      return {
        ...base,
        ok: false,
        detail: `stopping: finishing in-flight work in ${group}`,
        since: iso(s.since),
      };
    case 'stopped':
      return { ...base, ok: false, detail: `stopped (${group})`, since: iso(s.since) };
    case 'failed':
      return {
        ...base,
        ok: false,
        detail: `failed in ${group}: ${s.error?.message ?? 'unknown error'}; it will not try again`,
        since: iso(s.since),
        ...(s.error === undefined ? {} : { error: errorOf(s.error) }),
      };
  }
}

/** The check of a view; none for a view that was closed on purpose. */
function viewCheck(view: View<unknown, unknown>): HealthCheck | undefined {
  const s = view.state();
  if (s.status === 'closed') return undefined;
  const base = { name: `view:${view.topic}`, kind: 'view' as const };
  const stats = view.stats();
  if (s.status === 'failed') {
    return {
      ...base,
      ok: false,
      detail: `failed: ${s.error?.message ?? 'unknown error'}; it no longer follows the topic`,
      since: iso(s.since),
      ...(s.error === undefined ? {} : { error: errorOf(s.error) }),
    };
  }
  if (s.failingSince !== undefined) {
    return {
      ...base,
      ok: false,
      detail: `reading the topic fails since ${iso(s.failingSince)}: ${s.error?.message ?? 'unknown error'}`,
      since: iso(s.failingSince),
      ...(s.error === undefined ? {} : { error: errorOf(s.error) }),
    };
  }
  if (s.status === 'loading') {
    return {
      ...base,
      ok: false,
      detail: `not caught up yet: ${stats.size} key(s) loaded so far`,
      since: iso(s.since),
    };
  }
  const newest =
    stats.stalenessMs === undefined
      ? 'no record applied yet'
      : `the newest record applied is ${formatDuration(stats.stalenessMs, { approximate: true })} old`;
  return { ...base, ok: true, detail: `caught up: ${stats.size} key(s), ${newest}`, since: iso(s.since) };
}

/** Resolves with the promise's value, or undefined once `ms` passed first. */
function within<T>(promise: Promise<T>, ms: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<undefined>((resolve) => {
    timer = setTimeout(resolve, ms, undefined);
  });
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

function asError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}

function errorOf(err: Error): { code?: string; message: string } {
  return isEventlineError(err) ? { code: err.code, message: err.message } : { message: err.message };
}

// ---- HTTP ----------------------------------------------------------------------------------------

/** What `healthHandler` needs from a client (an `Eventline`). */
export interface HealthTarget {
  health(options?: HealthOptions): Promise<HealthReport>;
  /** The liveness check alone, without I/O. */
  liveness(): HealthCheck;
}

export interface HealthHandlerOptions extends HealthOptions {
  /** Where the endpoints are: `<path>` (the full report), `<path>/live`, `<path>/ready`. Default `'/health'`. */
  path?: string;
}

/**
 * A node:http handler `(req, res, next?)` serving, as JSON:
 * - `GET <path>/live`: 200 while the client is open, else 503. Never asks the engine.
 * - `GET <path>/ready`: 200 when every check is ok, else 503 with the failing checks.
 * - `GET <path>`: the full `HealthReport`; 200 when ready, else 503.
 *
 * HEAD is answered too. Another path goes to `next()` when given (Express, Connect), else gets 404;
 * another method gets 405. Mount it on any node:http server; on Fastify, call it with `req.raw` and
 * `reply.raw` after `reply.hijack()`. Throws EVENTLINE_ERR_INVALID_ARGUMENT for a bad option.
 */
export function healthHandler(
  bus: HealthTarget,
  options: HealthHandlerOptions = {},
): (req: IncomingMessage, res: ServerResponse, next?: (err?: unknown) => void) => void {
  const { path = '/health', ...healthOptions } = options;
  settingsOf(healthOptions);
  if (typeof path !== 'string' || !path.startsWith('/')) {
    fail('EVENTLINE_ERR_INVALID_ARGUMENT', `healthHandler: path must start with "/", got ${String(path)}`);
  }
  const root = path.length > 1 && path.endsWith('/') ? path.slice(0, -1) : path;
  const join = (end: string): string => (root === '/' ? `/${end}` : `${root}/${end}`);
  const endpoints = { [root]: 'report', [join('live')]: 'live', [join('ready')]: 'ready' } as Record<
    string,
    'report' | 'live' | 'ready'
  >;
  return (req, res, next) => {
    const url = req.url ?? '/';
    const q = url.indexOf('?');
    let pathname = q < 0 ? url : url.slice(0, q);
    if (pathname.length > 1 && pathname.endsWith('/')) pathname = pathname.slice(0, -1);
    const endpoint = Object.hasOwn(endpoints, pathname) ? endpoints[pathname] : undefined;
    if (endpoint === undefined) {
      if (next !== undefined) return next();
      return send(req, res, 404, {
        error: `no such endpoint: ${pathname}`,
        endpoints: Object.keys(endpoints),
      });
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('allow', 'GET, HEAD');
      return send(req, res, 405, { error: `method ${req.method} is not allowed; use GET` });
    }
    if (endpoint === 'live') {
      const check = bus.liveness();
      return send(req, res, check.ok ? 200 : 503, {
        status: check.ok ? 'ok' : 'down',
        live: check.ok,
        checkedAt: iso(Date.now()),
        checks: [check],
      });
    }
    bus.health(healthOptions).then(
      (report) => {
        if (endpoint === 'report') return send(req, res, report.ready ? 200 : 503, report);
        send(req, res, report.ready ? 200 : 503, {
          status: report.status,
          ready: report.ready,
          checkedAt: report.checkedAt,
          failing: report.checks.filter((c) => !c.ok),
        });
      },
      (err: unknown) =>
        send(req, res, 500, { error: `health could not be checked: ${asError(err).message}` }),
    );
  };
}

function send(req: IncomingMessage, res: ServerResponse, status: number, body: unknown): void {
  const text = `${JSON.stringify(body)}\n`;
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(text),
    'cache-control': 'no-store',
  });
  res.end(req.method === 'HEAD' ? undefined : text);
}

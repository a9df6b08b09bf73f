/**
 * The matching service's copy of the question service's lists. Each list lives in an Eventline view
 * of its topic (compacted, one key), so validating a match request is a Map lookup in memory with
 * no HTTP call. Until a view is ready and holds its list (the seed's "no cached data yet"), lookups
 * go to the question service's HTTP endpoints instead; each such lookup is a cache miss and a
 * fallback use in the metrics, and the first of a burst is logged.
 */
import type { Eventline, Logger, View, ViewReadyOptions } from 'eventline';
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import {
  type CatalogueTopics,
  DIFFICULTIES_KEY,
  type DifficultiesUpdated,
  type ListName,
  TOPICS_KEY,
  type TopicsUpdated,
} from './events.ts';

/** A list and where it came from. */
export interface ListLookup {
  items: readonly string[];
  source: 'view' | 'http';
  /** The publication's version (from the view); undefined for a list read over HTTP. */
  version: number | undefined;
}

/** Why a match request's topic or difficulty was refused. */
export interface ListProblem {
  field: 'topic' | 'difficulty';
  message: string;
}

export interface Validation {
  ok: boolean;
  problems: ListProblem[];
  /** Where each list came from. */
  sources: { topics: 'view' | 'http'; difficulties: 'view' | 'http' };
}

export interface CatalogueListsOptions {
  bus: Eventline;
  topics: CatalogueTopics;
  /** Base URL of the question service (`http://127.0.0.1:8001`), asked while a view has no list. */
  questionServiceUrl: string;
  /** Where the metrics go: the client's registry, so `/metrics` serves Eventline's and ours together. */
  registry: Registry;
  logger: Logger;
  /** How long a fallback request may take. Default 2000 ms. */
  fallbackTimeoutMs?: number;
}

/** The question service did not answer a fallback lookup: the list cannot be known now. */
export class ListUnavailableError extends Error {
  readonly list: ListName;
  constructor(list: ListName, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'ListUnavailableError';
    this.list = list;
  }
}

const PATHS: Record<ListName, string> = { topics: '/api/topics', difficulties: '/api/difficulty' };

/**
 * Both lists, from views with an HTTP fallback. Starts the views at once; they become ready in the
 * background (`ready()` waits for it).
 */
export class CatalogueLists {
  readonly topicsView: View<TopicsUpdated, string>;
  readonly difficultiesView: View<DifficultiesUpdated, string>;
  readonly #baseUrl: string;
  readonly #timeoutMs: number;
  readonly #logger: Logger;
  readonly #registry: Registry;
  readonly #metricNames: string[] = [];
  readonly #hits: Record<ListName, Counter.Internal>;
  readonly #misses: Record<ListName, Counter.Internal>;
  readonly #fallbacks: Counter<'list' | 'outcome'>;
  readonly #fallbackSeconds: Histogram<'list'>;
  /** Values the fallback loader made (read over HTTP), to tell them from the view's own. */
  readonly #loaded = new WeakSet<object>();
  /** Fallback uses of each list since its view last answered: non-zero while a burst lasts. */
  readonly #burst: Record<ListName, number> = { topics: 0, difficulties: 0 };

  constructor(options: CatalogueListsOptions) {
    const { bus, topics, registry, logger } = options;
    this.#baseUrl = options.questionServiceUrl.replace(/\/+$/, '');
    this.#timeoutMs = options.fallbackTimeoutMs ?? 2000;
    this.#logger = logger;
    this.#registry = registry;
    const onError = (err: Error, info: object): void => logger.warn({ err, ...info }, 'matching: view error');
    // Before a view is ready, `getOrLoad` asks these loaders, and Eventline counts each use
    // (eventline_view_fallback_total) beside ours.
    this.topicsView = bus.view(topics.topics, {
      onError,
      fallback: async () =>
        this.#mark({ topics: await this.fetchOverHttp('topics'), timestamp: new Date(), version: 0 }),
    });
    this.difficultiesView = bus.view(topics.difficulties, {
      onError,
      fallback: async () =>
        this.#mark({
          difficulties: await this.fetchOverHttp('difficulties'),
          timestamp: new Date(),
          version: 0,
        }),
    });
    for (const view of [this.topicsView, this.difficultiesView]) {
      view.ready().then(
        () => logger.info({ topic: view.topic, entries: view.size }, 'matching: view ready'),
        (err: unknown) => logger.error({ err, topic: view.topic }, 'matching: view could not start'),
      );
    }

    const registers = [registry];
    const hits = this.#metric(
      new Counter({
        name: 'matching_cache_hits_total',
        help: 'List lookups answered from the view, by list',
        labelNames: ['list'],
        registers,
      }),
    );
    const misses = this.#metric(
      new Counter({
        name: 'matching_cache_misses_total',
        help: 'List lookups the view could not answer (not ready, or no list published yet), by list',
        labelNames: ['list'],
        registers,
      }),
    );
    this.#hits = { topics: hits.labels('topics'), difficulties: hits.labels('difficulties') };
    this.#misses = { topics: misses.labels('topics'), difficulties: misses.labels('difficulties') };
    this.#fallbacks = this.#metric(
      new Counter({
        name: 'matching_http_fallback_total',
        help: "List lookups made over HTTP to the question service, by list and outcome ('ok' or 'error')",
        labelNames: ['list', 'outcome'],
        registers,
      }),
    );
    this.#fallbackSeconds = this.#metric(
      new Histogram({
        name: 'matching_http_fallback_duration_seconds',
        help: 'Time taken by HTTP fallback lookups, by list',
        labelNames: ['list'],
        buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
        registers,
      }),
    );
    const views = [this.topicsView, this.difficultiesView];
    this.#metric(
      new Gauge({
        name: 'matching_view_lag_records',
        help: 'Records of a list topic the view has not applied yet (its consumer lag), by topic',
        labelNames: ['topic'],
        registers,
        async collect() {
          for (const v of views) {
            try {
              this.set({ topic: v.topic }, await v.lag());
            } catch {
              // The engine cannot be asked now: keep the last value rather than fail the scrape.
            }
          }
        },
      }),
    );
  }

  /** Resolves once both views have read what their topics held when they started. */
  async ready(options?: ViewReadyOptions): Promise<void> {
    await Promise.all([this.topicsView.ready(options), this.difficultiesView.ready(options)]);
  }

  /** True when both lists are answered from the views, with no HTTP call. */
  get fromViews(): boolean {
    return this.#fromView('topics') !== undefined && this.#fromView('difficulties') !== undefined;
  }

  /**
   * A list: from its view when the view is ready and holds it (a cache hit), else from the question
   * service (a miss and a fallback use). Throws {@link ListUnavailableError} when it must fall back
   * and the question service does not answer.
   */
  async list(name: ListName): Promise<ListLookup> {
    const held = this.#fromView(name);
    if (held !== undefined) {
      this.#hits[name].inc();
      if (this.#burst[name] > 0) {
        this.#logger.info(
          { list: name, fallbacks: this.#burst[name] },
          'matching: the view answers again; HTTP fallback over',
        );
        this.#burst[name] = 0;
      }
      return held;
    }
    this.#misses[name].inc();
    const view = name === 'topics' ? this.topicsView : this.difficultiesView;
    if (!view.isReady) {
      const value =
        name === 'topics'
          ? await this.topicsView.getOrLoad(TOPICS_KEY)
          : await this.difficultiesView.getOrLoad(DIFFICULTIES_KEY);
      if (value !== undefined) {
        if (this.#loaded.has(value)) return { items: itemsOf(value), source: 'http', version: undefined };
        return { items: itemsOf(value), source: 'view', version: Number(value.version) };
      }
    }
    // The view is ready but nothing has been published to its topic yet.
    return { items: await this.fetchOverHttp(name), source: 'http', version: undefined };
  }

  /**
   * Checks a match request's topic and difficulty against the lists. Throws
   * {@link ListUnavailableError} when a list cannot be had.
   */
  async validate(topic: string, difficulty: string): Promise<Validation> {
    const [topics, difficulties] = await Promise.all([this.list('topics'), this.list('difficulties')]);
    const problems: ListProblem[] = [];
    if (!topics.items.includes(topic)) {
      problems.push({ field: 'topic', message: unknownMessage('topic', topic, topics.items) });
    }
    if (!difficulties.items.includes(difficulty)) {
      problems.push({
        field: 'difficulty',
        message: unknownMessage('difficulty', difficulty, difficulties.items),
      });
    }
    return {
      ok: problems.length === 0,
      problems,
      sources: { topics: topics.source, difficulties: difficulties.source },
    };
  }

  /**
   * Reads a list from the question service's HTTP endpoint, counted as a fallback use. Public so the
   * benchmark can time this path beside the view's.
   */
  async fetchOverHttp(name: ListName): Promise<string[]> {
    const url = `${this.#baseUrl}${PATHS[name]}`;
    if (this.#burst[name]++ === 0) {
      this.#logger.warn(
        { list: name, url, reason: this.#whyNotView(name) },
        'matching: the view cannot answer yet; validating against the question service over HTTP',
      );
    }
    const stop = this.#fallbackSeconds.startTimer({ list: name });
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(this.#timeoutMs) });
      if (!res.ok) throw new Error(`GET ${url} answered HTTP ${res.status}`);
      const body: unknown = await res.json();
      if (!Array.isArray(body) || !body.every((x) => typeof x === 'string')) {
        throw new Error(`GET ${url} did not answer a JSON array of strings`);
      }
      this.#fallbacks.inc({ list: name, outcome: 'ok' });
      return body;
    } catch (err) {
      this.#fallbacks.inc({ list: name, outcome: 'error' });
      const reason = err instanceof Error ? err.message : String(err);
      throw new ListUnavailableError(
        name,
        `the ${name} list is not in the matching service's view (${this.#whyNotView(name)}) and the question service did not answer: ${reason}`,
        { cause: err },
      );
    } finally {
      stop();
    }
  }

  /** Closes the views and takes this object's metrics out of the registry. */
  async close(): Promise<void> {
    await Promise.all([this.topicsView.close(), this.difficultiesView.close()]);
    for (const name of this.#metricNames) this.#registry.removeSingleMetric(name);
  }

  #fromView(name: ListName): ListLookup | undefined {
    const view = name === 'topics' ? this.topicsView : this.difficultiesView;
    if (!view.isReady) return undefined;
    const v =
      name === 'topics' ? this.topicsView.get(TOPICS_KEY) : this.difficultiesView.get(DIFFICULTIES_KEY);
    return v === undefined ? undefined : { items: itemsOf(v), source: 'view', version: Number(v.version) };
  }

  #whyNotView(name: ListName): string {
    const view = name === 'topics' ? this.topicsView : this.difficultiesView;
    return view.isReady
      ? `nothing has been published to ${view.topic} yet`
      : `the view of ${view.topic} is not ready`;
  }

  #mark<T extends object>(value: T): T {
    this.#loaded.add(value);
    return value;
  }

  #metric<M extends object>(metric: M): M {
    this.#metricNames.push((metric as unknown as { name: string }).name);
    return metric;
  }
}

function itemsOf(v: TopicsUpdated | DifficultiesUpdated): string[] {
  return 'topics' in v ? v.topics : v.difficulties;
}

function unknownMessage(field: 'topic' | 'difficulty', value: string, known: readonly string[]): string {
  const list = known.length === 0 ? 'there are none' : known.map((k) => JSON.stringify(k)).join(', ');
  return `unknown ${field} ${JSON.stringify(value)}; known ${field === 'topic' ? 'topics' : 'difficulties'}: ${list}`;
}

/**
 * The matching service of seed 000. It keeps the question service's lists of topics and
 * difficulties in Eventline views (see lists.ts) and validates match requests against them without
 * an HTTP call; while a view cannot answer it asks the question service over HTTP, and says so in
 * its log and metrics. Valid requests are queued in its own database and paired: two users, same
 * topic and difficulty.
 */
import type { Eventline, Logger } from 'eventline';
import type { FastifyInstance } from 'fastify';
import { Counter, Gauge } from 'prom-client';
import {
  buildApp,
  commonConfig,
  envDuration,
  envOptional,
  envPort,
  HttpError,
  listen,
  objectBody,
  type RunningService,
  requireString,
  type ServiceDatabase,
  serveMetrics,
  serviceBus,
  serviceDatabase,
  serviceLogger,
  startService,
} from '../../shared/index.ts';
import { type CatalogueTopicNames, type CatalogueTopics, catalogueTopics } from './events.ts';
import { CatalogueLists, ListUnavailableError } from './lists.ts';
import { cancelRequest, enqueue, getRequest, migrate, queueLength } from './match-queue.ts';

export const MATCHING_SERVICE = 'matching-service';

export interface MatchingServiceConfig {
  /** Default `HOST`, else 127.0.0.1. */
  host?: string;
  /** Default `MATCHING_SERVICE_PORT`, else 8002; 0 picks a free port. */
  port?: number;
  /** The engine, when no `bus` is given. Default `EVENTLINE_URL`, else the embedded default. */
  eventlineUrl?: string;
  /** An Eventline client to use (it stays open on close). Default: one connected to `eventlineUrl`. */
  bus?: Eventline;
  /** Default `DATABASE_URL`, else SQLite at `.eventline/apps/matching-service.db`. */
  databaseUrl?: string | undefined;
  /**
   * Where the fallback goes. Default `QUESTION_SERVICE_URL`, else `http://127.0.0.1:<port>` with the
   * question service's port, `QUESTION_SERVICE_PORT` (8001 when unset).
   */
  questionServiceUrl?: string;
  /** How long a fallback request may take. Default `QUESTION_SERVICE_TIMEOUT`, else 2 s. */
  fallbackTimeoutMs?: number;
  /** Topic names; default `TOPIC_TOPICS_UPDATED` / `TOPIC_DIFFICULTIES_UPDATED`, else the seed's. */
  topicNames?: CatalogueTopicNames;
  logger?: Logger;
}

export interface MatchingService extends RunningService {
  readonly bus: Eventline;
  readonly topics: CatalogueTopics;
  readonly lists: CatalogueLists;
  readonly db: ServiceDatabase;
  readonly app: FastifyInstance;
}

const FIELD_LIMITS = { user: 100, topic: 100, difficulty: 50 } as const;

/**
 * Starts the matching service: connects (unless given a client), declares the list topics (so its
 * views can start before the question service ever ran), starts the views without waiting for
 * them, opens its database, and listens. Throws when the engine or the database cannot be reached,
 * and for a malformed setting (naming the variable).
 */
export async function startMatchingService(config: MatchingServiceConfig = {}): Promise<MatchingService> {
  const env = commonConfig('MATCHING_SERVICE_PORT', 8002);
  const questionServiceUrl =
    config.questionServiceUrl ??
    envOptional('QUESTION_SERVICE_URL') ??
    `http://127.0.0.1:${envPort('QUESTION_SERVICE_PORT', 8001)}`;
  const fallbackTimeoutMs = config.fallbackTimeoutMs ?? envDuration('QUESTION_SERVICE_TIMEOUT', '2s');
  const logger = config.logger ?? serviceLogger(MATCHING_SERVICE);
  return startService(async (closer) => {
    const bus = await serviceBus(
      closer,
      MATCHING_SERVICE,
      config.bus ?? config.eventlineUrl ?? env.eventlineUrl,
    );
    const topics = catalogueTopics(config.topicNames);
    await bus.ensureTopics([topics.topics, topics.difficulties]);
    const registry = bus.metrics.registry;
    const lists = new CatalogueLists({
      bus,
      topics,
      questionServiceUrl,
      fallbackTimeoutMs,
      registry,
      logger,
    });
    closer.add(() => lists.close());

    const databaseUrl = 'databaseUrl' in config ? config.databaseUrl : env.databaseUrl;
    const db = await serviceDatabase(closer, MATCHING_SERVICE, databaseUrl);
    await migrate(db);

    const outcomes = new Counter({
      name: 'matching_requests_total',
      help: 'Match requests, by outcome (matched, queued, rejected, conflict, unavailable)',
      labelNames: ['outcome'],
      registers: [registry],
    });
    const waiting = new Gauge({
      name: 'matching_queue_waiting',
      help: 'Match requests waiting for a partner',
      registers: [registry],
      async collect() {
        try {
          this.set(await queueLength(db));
        } catch {
          // The database cannot be read now: keep the last value rather than fail the scrape.
        }
      },
    });
    closer.add(() => {
      for (const m of [outcomes, waiting])
        registry.removeSingleMetric((m as unknown as { name: string }).name);
    });

    const app = buildApp({
      onServerError: (err, route) => logger.error({ err, route }, 'matching service: request failed'),
    });
    app.post('/api/match', async (request, reply) => {
      const body = objectBody(request.body);
      const input = {
        user: requireString(body, 'user', { max: FIELD_LIMITS.user }),
        topic: requireString(body, 'topic', { max: FIELD_LIMITS.topic }),
        difficulty: requireString(body, 'difficulty', { max: FIELD_LIMITS.difficulty }),
      };
      let validation: Awaited<ReturnType<CatalogueLists['validate']>>;
      try {
        validation = await lists.validate(input.topic, input.difficulty);
      } catch (err) {
        if (!(err instanceof ListUnavailableError)) throw err;
        outcomes.inc({ outcome: 'unavailable' });
        throw new HttpError(503, `cannot validate the request now: ${err.message}`, {
          code: 'LISTS_UNAVAILABLE',
        });
      }
      if (!validation.ok) {
        outcomes.inc({ outcome: 'rejected' });
        throw new HttpError(400, validation.problems.map((p) => p.message).join('; '), {
          field: validation.problems[0]!.field,
          code: 'UNKNOWN_LIST_ITEM',
        });
      }
      let result: Awaited<ReturnType<typeof enqueue>>;
      try {
        result = await enqueue(db, input);
      } catch (err) {
        if (err instanceof HttpError && err.statusCode === 409) outcomes.inc({ outcome: 'conflict' });
        throw err;
      }
      outcomes.inc({ outcome: result.status });
      if (result.status === 'matched') {
        logger.info({ match: result.match }, 'matching service: paired');
      }
      return reply
        .status(result.status === 'matched' ? 200 : 202)
        .send({ ...result, validatedFrom: validation.sources });
    });
    app.get('/api/match/requests/:id', async (request) => {
      const { id } = request.params as { id: string };
      const found = await getRequest(db, id);
      if (found === undefined) throw new HttpError(404, `no match request with id ${id}`, { field: 'id' });
      return found.match === undefined ? { request: found.request } : found;
    });
    app.delete('/api/match/requests/:id', async (request, reply) => {
      const { id } = request.params as { id: string };
      const outcome = await cancelRequest(db, id);
      if (outcome === 'missing') throw new HttpError(404, `no match request with id ${id}`, { field: 'id' });
      if (outcome === 'matched') {
        throw new HttpError(409, `match request ${id} is already paired; it cannot be cancelled`, {
          field: 'id',
          code: 'ALREADY_MATCHED',
        });
      }
      return reply.status(204).send();
    });
    app.get('/api/lists', async () => {
      const [topicsList, difficultiesList] = await Promise.all([
        lists.list('topics'),
        lists.list('difficulties'),
      ]);
      return { topics: topicsList, difficulties: difficultiesList };
    });
    app.get('/health', async () => ({
      service: MATCHING_SERVICE,
      // The service answers either way; `fromViews` false means validations go over HTTP.
      fromViews: lists.fromViews,
      eventline: await bus.health(),
    }));
    serveMetrics(app, bus);
    closer.add(() => app.close());

    const url = await listen(app, config.host ?? env.host, config.port ?? env.port);
    logger.info(
      { url, questionServiceUrl },
      `matching service: listening (HTTP fallback to the question service at ${questionServiceUrl})`,
    );
    return { name: MATCHING_SERVICE, url, bus, topics, lists, db, app };
  });
}

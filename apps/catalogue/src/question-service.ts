/**
 * The question service of seed 000: questions (each with a topic and a difficulty) in its own
 * database, over HTTP; `GET /api/topics` and `GET /api/difficulty` answer the distinct lists.
 * Whenever a change alters a list, the full list is published to `topics.updated` or
 * `difficulties.updated` (Avro, the seed's schemas) through the transactional outbox, so the change
 * and its event commit together; the seed published from a signal after the save and could lose
 * the event. At start-up it registers the schemas and publishes both lists.
 */
import type { Eventline, Logger, PublishResult } from 'eventline';
import type { FastifyInstance } from 'fastify';
import { Counter, Gauge, Histogram } from 'prom-client';
import {
  badRequest,
  buildApp,
  commonConfig,
  HttpError,
  listen,
  type OutboxSql,
  objectBody,
  type RunningService,
  requireString,
  type ServiceDatabase,
  type ServiceOutbox,
  serveMetrics,
  serviceBus,
  serviceDatabase,
  serviceLogger,
  startService,
} from '../../shared/index.ts';
import {
  type CatalogueTopicNames,
  type CatalogueTopics,
  catalogueTopics,
  type RegisteredSchema,
  registerSchemas,
} from './events.ts';
import {
  countQuestions,
  deleteQuestion,
  distinctDifficulties,
  distinctTopics,
  getQuestion,
  insertQuestion,
  type ListPublication,
  listQuestions,
  lockLists,
  migrate,
  publishLists,
  type QuestionInput,
  updateQuestion,
} from './questions.ts';
import { SEED_QUESTIONS } from './seed-data.ts';

export const QUESTION_SERVICE = 'question-service';

export interface QuestionServiceConfig {
  /** Default `HOST`, else 127.0.0.1. */
  host?: string;
  /** Default `QUESTION_SERVICE_PORT`, else 8001; 0 picks a free port. */
  port?: number;
  /** The engine, when no `bus` is given. Default `EVENTLINE_URL`, else the embedded default. */
  eventlineUrl?: string;
  /** An Eventline client to use (it stays open on close). Default: one connected to `eventlineUrl`. */
  bus?: Eventline;
  /** Default `DATABASE_URL`, else SQLite at `.eventline/apps/question-service.db`. */
  databaseUrl?: string | undefined;
  /** Topic names; default `TOPIC_TOPICS_UPDATED` / `TOPIC_DIFFICULTIES_UPDATED`, else the seed's. */
  topicNames?: CatalogueTopicNames;
  /** Load the seed questions into an empty database. Default true. */
  seed?: boolean;
  logger?: Logger;
}

export interface QuestionService extends RunningService {
  readonly bus: Eventline;
  readonly topics: CatalogueTopics;
  readonly db: ServiceDatabase;
  readonly outbox: ServiceOutbox;
  /** The schemas registered at start-up. */
  readonly schemas: RegisteredSchema[];
  readonly app: FastifyInstance;
}

const TEXT_LIMITS = { title: 200, description: 5000, topic: 100, difficulty: 50 } as const;

/**
 * Starts the question service: connects (unless given a client), declares the topics, registers the
 * schemas, opens its database (loading the seed questions when it is empty), publishes both lists,
 * and listens. Throws when the engine, the registry or the database cannot be reached, and for a
 * malformed setting (naming the variable).
 */
export async function startQuestionService(config: QuestionServiceConfig = {}): Promise<QuestionService> {
  const env = commonConfig('QUESTION_SERVICE_PORT', 8001);
  const logger = config.logger ?? serviceLogger(QUESTION_SERVICE);
  return startService(async (closer) => {
    const bus = await serviceBus(
      closer,
      QUESTION_SERVICE,
      config.bus ?? config.eventlineUrl ?? env.eventlineUrl,
    );
    const topics = catalogueTopics(config.topicNames);
    await bus.ensureTopics([topics.topics, topics.difficulties]);
    const schemas = await registerSchemas(bus, topics);
    logger.info({ schemas }, 'question service: schemas registered');

    const metrics = questionMetrics(bus, schemas);
    closer.add(() => metrics.remove());

    const databaseUrl = 'databaseUrl' in config ? config.databaseUrl : env.databaseUrl;
    const db = await serviceDatabase(closer, QUESTION_SERVICE, databaseUrl);
    await migrate(db);
    const outbox = await db.createOutbox(bus, {
      name: QUESTION_SERVICE,
      onPublished: (results) => metrics.published(results),
      onError: (err, info) => {
        metrics.failed(info.topic);
        logger.warn({ err, ...info }, 'question service: publishing the lists failed; the outbox retries');
      },
    });

    // The seed published the current lists at start-up; so do we, with the seed questions if the
    // database is new, in one transaction.
    const initial = await outbox.transaction(async (tx) => {
      await lockLists(tx, db.kind);
      let seeded = 0;
      if (config.seed !== false && (await countQuestions(tx)) === 0) {
        for (const q of SEED_QUESTIONS) await insertQuestion(tx, q);
        seeded = SEED_QUESTIONS.length;
      }
      return { seeded, published: await publishLists(tx, topics, { force: true }) };
    });
    metrics.changed(initial.published);
    logger.info(
      { seeded: initial.seeded, lists: summary(initial.published), database: db.description },
      'question service: lists published at start-up',
    );

    /**
     * Runs a change to the questions and publishes the lists it altered, all in one transaction.
     * `fn` answers undefined or false when it changed nothing (no such question).
     */
    const change = async <T>(fn: (tx: OutboxSql) => Promise<T>): Promise<T> => {
      const { result, published } = await outbox.transaction(async (tx) => {
        await lockLists(tx, db.kind);
        const result = await fn(tx);
        const changed = result !== undefined && result !== false;
        return { result, published: changed ? await publishLists(tx, topics) : [] };
      });
      if (published.length > 0) {
        metrics.changed(published);
        logger.info({ lists: summary(published) }, 'question service: lists changed');
      }
      return result;
    };

    const app = buildApp({
      onServerError: (err, route) => logger.error({ err, route }, 'question service: request failed'),
    });
    app.get('/api/topics', async () => distinctTopics(db));
    app.get('/api/difficulty', async () => distinctDifficulties(db));
    app.get('/api/questions', async (request) => {
      const query = request.query as Record<string, unknown>;
      return listQuestions(db, {
        topic: optionalQueryString(query, 'topic'),
        difficulty: optionalQueryString(query, 'difficulty'),
      });
    });
    app.get('/api/questions/:id', async (request) => {
      const id = idParam(request.params);
      return (await getQuestion(db, id)) ?? notFound(id);
    });
    app.post('/api/questions', async (request, reply) => {
      const input = questionInput(objectBody(request.body), 'all');
      const question = await change((tx) => insertQuestion(tx, input as QuestionInput));
      return reply.status(201).header('location', `/api/questions/${question.id}`).send(question);
    });
    const update = (mode: 'all' | 'some') => async (request: { params: unknown; body: unknown }) => {
      const id = idParam(request.params);
      const input = questionInput(objectBody(request.body), mode);
      return (await change((tx) => updateQuestion(tx, id, input))) ?? notFound(id);
    };
    app.put('/api/questions/:id', update('all'));
    app.patch('/api/questions/:id', update('some'));
    app.delete('/api/questions/:id', async (request, reply) => {
      const id = idParam(request.params);
      if (!(await change((tx) => deleteQuestion(tx, id)))) notFound(id);
      return reply.status(204).send();
    });
    app.get('/health', async (_request, reply) => {
      const report = await bus.health();
      return reply.status(report.ready ? 200 : 503).send({ service: QUESTION_SERVICE, ...report });
    });
    serveMetrics(app, bus);
    closer.add(() => app.close());

    const url = await listen(app, config.host ?? env.host, config.port ?? env.port);
    logger.info({ url }, 'question service: listening');
    return { name: QUESTION_SERVICE, url, bus, topics, db, outbox, schemas, app };
  });
}

function summary(published: readonly ListPublication[]): Record<string, unknown> {
  return Object.fromEntries(published.map((p) => [p.list, { version: p.version, items: p.items }]));
}

function notFound(id: number): never {
  throw new HttpError(404, `no question with id ${id}`, { field: 'id' });
}

function idParam(params: unknown): number {
  const raw = (params as { id?: string }).id ?? '';
  const id = Number(raw);
  if (!/^\d+$/.test(raw) || !Number.isSafeInteger(id) || id < 1) {
    throw badRequest('id', `id must be a positive whole number, got "${raw}"`);
  }
  return id;
}

function optionalQueryString(query: Record<string, unknown>, name: string): string | undefined {
  const v = query[name];
  if (v === undefined) return undefined;
  if (typeof v !== 'string') throw badRequest(name, `${name} must be given once`);
  return v;
}

/**
 * A question's fields from a request body. `all`: title, topic and difficulty are required (create,
 * replace); `some`: any of them, at least one (patch).
 */
function questionInput(body: Record<string, unknown>, mode: 'all' | 'some'): Partial<QuestionInput> {
  const known = Object.keys(TEXT_LIMITS);
  const unknown = Object.keys(body).filter((k) => !known.includes(k));
  if (unknown.length > 0) {
    throw badRequest(unknown[0]!, `unknown field ${unknown[0]}; a question has ${known.join(', ')}`);
  }
  const out: Partial<QuestionInput> = {};
  for (const field of ['title', 'topic', 'difficulty'] as const) {
    if (mode === 'all' || body[field] !== undefined) {
      out[field] = requireString(body, field, { max: TEXT_LIMITS[field] });
    }
  }
  if (mode === 'all') out.description = '';
  if (body.description !== undefined && body.description !== null) {
    if (typeof body.description !== 'string') throw badRequest('description', 'description must be a string');
    if (body.description.length > TEXT_LIMITS.description) {
      throw badRequest('description', `description must be at most ${TEXT_LIMITS.description} characters`);
    }
    out.description = body.description;
  }
  if (Object.keys(out).length === 0) {
    throw badRequest('body', `give at least one of ${known.join(', ')}`);
  }
  return out;
}

/** The service's own metrics, in the client's registry beside Eventline's. */
function questionMetrics(bus: Eventline, schemas: readonly RegisteredSchema[]) {
  const registers = [bus.metrics.registry];
  const changes = new Counter({
    name: 'question_service_list_changes_total',
    help: 'List publications written to the outbox (a change of the list, or the start-up publication), by list',
    labelNames: ['list'],
    registers,
  });
  const latency = new Histogram({
    name: 'question_service_publish_latency_seconds',
    help: 'Time from a list change being written to its event being durable on the engine (outbox included), by topic',
    labelNames: ['topic'],
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 30],
    registers,
  });
  const failures = new Counter({
    name: 'question_service_publish_failures_total',
    help: 'Failed attempts of the outbox relay to publish the lists (it retries), by topic',
    labelNames: ['topic'],
    registers,
  });
  const registered = new Gauge({
    name: 'question_service_schema_registered',
    help: 'Schemas registered at start-up: 1 per subject, with its registry id and version',
    labelNames: ['subject', 'id', 'version'],
    registers,
  });
  for (const s of schemas)
    registered.set({ subject: s.subject, id: String(s.id), version: String(s.version) }, 1);
  return {
    changed(published: readonly ListPublication[]): void {
      for (const p of published) changes.inc({ list: p.list });
    },
    published(results: readonly PublishResult[]): void {
      const now = Date.now();
      for (const r of results) latency.observe({ topic: r.topic }, Math.max(0, now - r.timestamp) / 1000);
    },
    failed(topic: string | undefined): void {
      failures.inc({ topic: topic ?? '' });
    },
    remove(): void {
      for (const m of [changes, latency, failures, registered]) {
        bus.metrics.registry.removeSingleMetric((m as unknown as { name: string }).name);
      }
    },
  };
}

/**
 * The seed's `setup_kafka` management command, for deployments that prepare the engine before the
 * services start:
 *
 *   node apps/catalogue/src/setup.ts                          topics, schemas, then the current lists
 *   node apps/catalogue/src/setup.ts --register-schemas-only  register the two Avro schemas
 *   node apps/catalogue/src/setup.ts --publish-only           publish the lists from the question database
 *
 * It reads the same environment as the question service (EVENTLINE_URL, EVENTLINE_REGISTRY_URL,
 * DATABASE_URL, TOPIC_TOPICS_UPDATED, TOPIC_DIFFICULTIES_UPDATED); `--url` overrides EVENTLINE_URL.
 * Lists are published through the question database's outbox, as the service publishes them, and
 * the command waits until they are on the engine. Exit code 0 when done, 1 on failure, 2 for bad
 * arguments.
 *
 * It also exports what `npm start` (apps/start.ts) asks of each system: `setup` (topics and
 * schemas, before the services start), `seed` and `tryIt`.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { connect, type Eventline } from 'eventline';
import { commonConfig, openDatabase } from '../../shared/index.ts';
import {
  type CatalogueTopicNames,
  catalogueTopics,
  type RegisteredSchema,
  registerSchemas,
} from './events.ts';
import { QUESTION_SERVICE } from './question-service.ts';
import { type ListPublication, lockLists, migrate, publishLists } from './questions.ts';

export interface SetupOptions {
  /** Register the schemas and stop. */
  registerSchemasOnly?: boolean;
  /** Publish the lists and stop (no schema registration; the codec registers on first use). */
  publishOnly?: boolean;
  /** An Eventline client to use (it stays open). Default: one connected to `eventlineUrl`. */
  bus?: Eventline;
  /** Default `EVENTLINE_URL`, else the embedded default. */
  eventlineUrl?: string;
  /** The question service's database. Default `DATABASE_URL`, else its SQLite file. */
  databaseUrl?: string | undefined;
  topicNames?: CatalogueTopicNames;
  /** How long to wait for the outbox to publish the lists. Default 30 s. */
  timeoutMs?: number;
  /** Progress lines. Default: stdout. */
  say?: (line: string) => void;
}

export interface SetupResult {
  schemas: RegisteredSchema[];
  published: ListPublication[];
}

/**
 * Runs the setup. Throws when the engine, registry or database cannot be reached, when the two
 * flags are combined, and when the lists are not published within `timeoutMs`.
 */
export async function runSetup(options: SetupOptions = {}): Promise<SetupResult> {
  if (options.registerSchemasOnly && options.publishOnly) {
    throw new Error('--register-schemas-only and --publish-only cannot be combined; give neither to do both');
  }
  const say = options.say ?? ((line: string) => process.stdout.write(`${line}\n`));
  const env = commonConfig('QUESTION_SERVICE_PORT', 8001);
  const bus =
    options.bus ?? (await connect(options.eventlineUrl ?? env.eventlineUrl, { clientId: 'catalogue-setup' }));
  const result: SetupResult = { schemas: [], published: [] };
  try {
    const topics = catalogueTopics(options.topicNames);
    if (!options.registerSchemasOnly) {
      for (const plan of await bus.ensureTopics([topics.topics, topics.difficulties])) {
        say(`topic ${plan.topic}: ${plan.action}`);
      }
    }
    if (!options.publishOnly) {
      result.schemas = await registerSchemas(bus, topics);
      const registry = (await bus.registry()).description;
      for (const s of result.schemas)
        say(`schema ${s.subject}: id ${s.id}, version ${s.version} (${registry})`);
    }
    if (!options.registerSchemasOnly) {
      const db = await openDatabase(
        QUESTION_SERVICE,
        'databaseUrl' in options ? options.databaseUrl : env.databaseUrl,
      );
      try {
        await migrate(db);
        const outbox = await db.createOutbox(bus, { name: 'catalogue-setup' });
        result.published = await outbox.transaction(async (tx) => {
          await lockLists(tx, db.kind);
          return publishLists(tx, topics, { force: true });
        });
        // A question service running on the same database may hold the relay lease: then its relay
        // publishes these events. Either way, wait until none is left.
        const deadline = Date.now() + (options.timeoutMs ?? 30_000);
        for (;;) {
          const backlog = await outbox.backlog();
          if (backlog.count === 0) break;
          if (Date.now() > deadline) {
            throw new Error(
              `the lists were written to the outbox of ${db.description} but ${backlog.count} event(s) are still unpublished after ${options.timeoutMs ?? 30_000} ms; is the engine reachable?`,
            );
          }
          await sleep(50);
        }
        for (const p of result.published) {
          const topic = p.list === 'topics' ? topics.topics.name : topics.difficulties.name;
          say(`published ${topic}: version ${p.version}, ${p.items.length} item(s): ${p.items.join(', ')}`);
        }
      } finally {
        await db.close();
      }
    }
    return result;
  } finally {
    if (options.bus === undefined) await bus.close();
  }
}

// ---- npm start (apps/start.ts) ---------------------------------------------------------------------

/** `npm start`, before the services start: the list topics and their schemas. */
export async function setup(bus: Eventline): Promise<string[]> {
  const topics = catalogueTopics();
  const plans = await bus.ensureTopics([topics.topics, topics.difficulties]);
  const schemas = await registerSchemas(bus, topics);
  return [
    `seed 000 topics: ${plans.map((p) => `${p.topic} (${p.action === 'create' ? 'created' : p.action})`).join(', ')}`,
    `seed 000 schemas: ${schemas.map((s) => `${s.subject} (id ${s.id}, version ${s.version})`).join(', ')}`,
  ];
}

/** `npm start`, once the services listen: the lists the question service holds (it loads its seed questions itself). */
export async function seed(urls: Readonly<Record<string, string>>): Promise<string[]> {
  const qs = urls[QUESTION_SERVICE];
  if (!qs) return [];
  const [topics, difficulties] = await Promise.all(
    ['/api/topics', '/api/difficulty'].map(
      async (path) => (await (await fetch(`${qs}${path}`)).json()) as string[],
    ),
  );
  return [`seed 000: topics ${topics!.join(', ')}; difficulties ${difficulties!.join(', ')}`];
}

/** `npm start`, at the end: commands to try. */
export function tryIt(urls: Readonly<Record<string, string>>): string[] {
  const qs = urls[QUESTION_SERVICE];
  const ms = urls['matching-service'];
  if (!qs || !ms) return [];
  const json = '-H "Content-Type: application/json"';
  return [
    '# seed 000: the lists the question service serves (and publishes to topics.updated, difficulties.updated)',
    `curl ${qs}/api/topics`,
    `curl ${qs}/api/difficulty`,
    '# two users ask the matching service for a partner: validated from its views, no HTTP call; the second is paired',
    `curl -X POST ${ms}/api/match ${json} -d '{"user": "alice", "topic": "Arrays", "difficulty": "easy"}'`,
    `curl -X POST ${ms}/api/match ${json} -d '{"user": "bob", "topic": "Arrays", "difficulty": "easy"}'`,
    '# a topic nobody has a question in is refused; add a question in it and it is accepted a moment later',
    `curl -X POST ${ms}/api/match ${json} -d '{"user": "carol", "topic": "Graphs", "difficulty": "medium"}'`,
    `curl -X POST ${qs}/api/questions ${json} -d '{"title": "Breadth-first search", "topic": "Graphs", "difficulty": "medium"}'`,
    '# cache hits and misses, HTTP fallbacks, the views: the seed\'s "key metrics"',
    `curl -s ${ms}/metrics | grep -E '^(matching_|eventline_view)'`,
    "# the published lists and their schemas (the seed's debug commands)",
    'npx eventline consume topics.updated --from-beginning --value-format avro',
    'npx eventline schemas list',
  ];
}

if (import.meta.main) {
  let values: { 'register-schemas-only'?: boolean; 'publish-only'?: boolean; url?: string; help?: boolean };
  try {
    ({ values } = parseArgs({
      options: {
        'register-schemas-only': { type: 'boolean' },
        'publish-only': { type: 'boolean' },
        url: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (err) {
    process.stderr.write(
      `setup: ${(err as Error).message}\nusage: setup.ts [--register-schemas-only | --publish-only] [--url URL]\n`,
    );
    process.exit(2);
  }
  if (values.help) {
    process.stdout.write('usage: setup.ts [--register-schemas-only | --publish-only] [--url URL]\n');
    process.exit(0);
  }
  if (values['register-schemas-only'] && values['publish-only']) {
    process.stderr.write(
      'setup: --register-schemas-only and --publish-only cannot be combined; give neither to do both\n',
    );
    process.exit(2);
  }
  try {
    await runSetup({
      registerSchemasOnly: values['register-schemas-only'] ?? false,
      publishOnly: values['publish-only'] ?? false,
      ...(values.url === undefined ? {} : { eventlineUrl: values.url }),
    });
  } catch (err) {
    process.stderr.write(`setup: ${(err as Error).message}\n`);
    process.exit(1);
  }
}

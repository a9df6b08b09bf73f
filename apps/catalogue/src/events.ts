/**
 * The two topics of seed 000: the question service publishes the full list of topics and the full
 * list of difficulties whenever either changes; the matching service keeps both in views. Each
 * topic is compacted and holds one key, so the log keeps just the latest list and a view that
 * starts late reads one record.
 */
import { avro, defineTopic, type Eventline, subjectName, type Topic } from 'eventline';
import {
  type DifficultiesUpdated,
  DifficultiesUpdatedSchema,
  type TopicsUpdated,
  TopicsUpdatedSchema,
} from './schemas.ts';

export type { DifficultiesUpdated, TopicsUpdated } from './schemas.ts';

/** The two lists the question service publishes. */
export type ListName = 'topics' | 'difficulties';

export const DEFAULT_TOPICS_UPDATED = 'topics.updated';
export const DEFAULT_DIFFICULTIES_UPDATED = 'difficulties.updated';

/** The record key of the topics list on its topic (each topic holds only this key). */
export const TOPICS_KEY = 'topics';
/** The record key of the difficulties list on its topic. */
export const DIFFICULTIES_KEY = 'difficulties';

/** The two list topics, as one service declares them. */
export interface CatalogueTopics {
  topics: Topic<TopicsUpdated, string>;
  difficulties: Topic<DifficultiesUpdated, string>;
}

export interface CatalogueTopicNames {
  /** Default `TOPIC_TOPICS_UPDATED`, else `topics.updated`. */
  topics?: string | undefined;
  /** Default `TOPIC_DIFFICULTIES_UPDATED`, else `difficulties.updated`. */
  difficulties?: string | undefined;
}

/**
 * Declares the list topics: one partition (one key each), compacted, values in Avro with the
 * seed's schemas under the subjects `<topic>-value`. Names come from `names`, then the environment
 * (`TOPIC_TOPICS_UPDATED`, `TOPIC_DIFFICULTIES_UPDATED`), then the seed's defaults.
 *
 * Throws EVENTLINE_ERR_INVALID_TOPIC_NAME for a name Kafka would refuse.
 */
export function catalogueTopics(names: CatalogueTopicNames = {}): CatalogueTopics {
  const common = { partitions: 1, cleanupPolicy: 'compact', retention: 'forever' } as const;
  return {
    topics: defineTopic(names.topics ?? process.env.TOPIC_TOPICS_UPDATED ?? DEFAULT_TOPICS_UPDATED, {
      ...common,
      key: () => TOPICS_KEY,
      value: avro<TopicsUpdated>(TopicsUpdatedSchema),
    }),
    difficulties: defineTopic(
      names.difficulties ?? process.env.TOPIC_DIFFICULTIES_UPDATED ?? DEFAULT_DIFFICULTIES_UPDATED,
      { ...common, key: () => DIFFICULTIES_KEY, value: avro<DifficultiesUpdated>(DifficultiesUpdatedSchema) },
    ),
  };
}

/** A schema as the registry holds it after `registerSchemas`. */
export interface RegisteredSchema {
  subject: string;
  id: number;
  version: number;
}

/**
 * Registers both value schemas in the connection's registry (the built-in one, or
 * `EVENTLINE_REGISTRY_URL`), as the seed's `setup_kafka --register-schemas-only` did. Registering
 * the same schema again returns its existing id and version.
 *
 * Throws EVENTLINE_ERR_SCHEMA_INCOMPATIBLE when the subject holds a schema this one cannot replace.
 */
export async function registerSchemas(bus: Eventline, topics: CatalogueTopics): Promise<RegisteredSchema[]> {
  const registry = await bus.registry();
  const out: RegisteredSchema[] = [];
  for (const [topic, schema] of [
    [topics.topics.name, TopicsUpdatedSchema],
    [topics.difficulties.name, DifficultiesUpdatedSchema],
  ] as const) {
    const subject = subjectName('topic', topic, 'value', schema);
    const { id, version } = await registry.register(subject, { schema: JSON.stringify(schema) });
    out.push({ subject, id, version });
  }
  return out;
}

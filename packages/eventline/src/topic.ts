import { type Codec, json, string } from './codec.ts';
import { EventlineError, fail } from './errors.ts';
import { type Duration, parseDuration, parseSize, type Size } from './util/units.ts';

export type CleanupPolicy = 'delete' | 'compact';
export type Compression = 'producer' | 'none' | 'gzip' | 'snappy' | 'lz4' | 'zstd';

const COMPRESSIONS: readonly Compression[] = ['producer', 'none', 'gzip', 'snappy', 'lz4', 'zstd'];

/** A topic's settings, normalised. `null` means "no limit" (Kafka's `-1`) or "the broker's default". */
export interface TopicConfig {
  partitions: number;
  /** Kafka only; the embedded engine keeps one copy. `null`: the broker's default. */
  replicationFactor: number | null;
  /** Records older than this are deleted (`retention.ms`); `null` keeps them forever. */
  retentionMs: number | null;
  /** Each partition is trimmed to this many bytes, oldest first (`retention.bytes`); `null`: no limit. */
  retentionBytes: number | null;
  /** `compact` keeps the last record per key (`cleanup.policy`). */
  cleanupPolicy: CleanupPolicy;
  /** How long a tombstone (null value) survives compaction (`delete.retention.ms`). */
  deleteRetentionMs: number;
  /** The largest record accepted, key + value + headers (`max.message.bytes`). */
  maxMessageBytes: number;
  /** Kafka only (`compression.type`); the embedded engine stores records uncompressed. */
  compression: Compression;
  /** Kafka only (`min.insync.replicas`). `null`: the broker's default. */
  minInsyncReplicas: number | null;
  /** Kafka only (`segment.ms`): how long a segment stays open. `null`: the broker's default. */
  segmentMs: number | null;
  /** Kafka only (`segment.bytes`, at least 1 MiB on Kafka 4). `null`: the broker's default. */
  segmentBytes: number | null;
  /** Compact once this share of the log is new since the last compaction (`min.cleanable.dirty.ratio`). */
  minCleanableDirtyRatio: number;
  /**
   * Embedded engine only: `false` commits this topic's records without waiting for the disk (the
   * next fsync'd commit or checkpoint covers them). A process crash loses nothing; an OS crash or
   * power loss may lose the last ones. For request and reply topics, whose records are worthless
   * once the waiting process is gone. Kafka does not fsync per record either; it replicates.
   */
  fsync: boolean;
}

export interface TopicSpec extends TopicConfig {
  name: string;
}

export const DEFAULT_TOPIC_CONFIG: Readonly<TopicConfig> = Object.freeze({
  partitions: 1,
  replicationFactor: null,
  retentionMs: 7 * 86_400_000,
  retentionBytes: null,
  cleanupPolicy: 'delete',
  deleteRetentionMs: 86_400_000,
  maxMessageBytes: 1024 * 1024,
  compression: 'producer',
  minInsyncReplicas: null,
  segmentMs: null,
  segmentBytes: null,
  minCleanableDirtyRatio: 0.5,
  fsync: true,
});

/** A topic's settings as people write them. Every setting has Kafka's meaning; docs/topics.md maps the names. */
export interface TopicSettings {
  /** Default 1. Can grow later, never shrink. */
  partitions?: number;
  /** Kafka only. Default: the broker's `default.replication.factor`. */
  replicationFactor?: number;
  /** Default `'7d'`. `'forever'` keeps records until they are compacted or trimmed by size. */
  retention?: Duration | 'forever';
  /** Default: no limit. */
  retentionBytes?: Size;
  /** Default `'delete'`. */
  cleanupPolicy?: CleanupPolicy;
  /** Default `'1d'`. */
  deleteRetention?: Duration;
  /** Default `'1MiB'`. */
  maxMessageBytes?: Size;
  /** Kafka only. Default `'producer'` (keep what the producer sent). */
  compression?: Compression;
  /** Kafka only. */
  minInsyncReplicas?: number;
  /** Kafka only: roll a segment after this long (`segment.ms`). Retention and compaction act on whole segments. */
  segmentMs?: Duration;
  /** Kafka only: roll a segment at this size (`segment.bytes`; Kafka 4 requires at least 1 MiB). */
  segmentBytes?: Size;
  /** Default 0.5: compact when at least this share of a partition arrived since the last compaction. */
  minCleanableDirtyRatio?: number;
  /** Embedded engine only. Default true: a publish resolves once its records are fsync'd. */
  fsync?: boolean;
}

/** Options of {@link defineTopic}: settings plus codecs, key derivation and the event type. */
export interface TopicOptions<V, K> extends TopicSettings {
  /** Derives the record key from the value when `publish` is given no key. */
  key?: (value: V) => K | null | undefined;
  /** Key codec. Default: UTF-8 strings. */
  keyCodec?: Codec<K>;
  /** Value codec. Default: JSON. */
  value?: Codec<V>;
  /** CloudEvents `ce_type` written on every record. Default: the topic name. */
  type?: string;
}

/** A topic declared in code: its name, settings, codecs and key derivation. */
export interface Topic<V = unknown, K = string> {
  readonly name: string;
  readonly config: Readonly<TopicConfig>;
  readonly value: Codec<V>;
  readonly keyCodec: Codec<K>;
  readonly keyOf: ((value: V) => K | null | undefined) | undefined;
  readonly type: string;
}

const LEGAL_NAME = /^[a-zA-Z0-9._-]+$/;
export const MAX_TOPIC_NAME_LENGTH = 249;

/** Checks a name against Kafka's rules; throws EVENTLINE_ERR_INVALID_TOPIC_NAME saying which rule. */
export function validateTopicName(name: unknown): asserts name is string {
  const bad = (why: string): never =>
    fail('EVENTLINE_ERR_INVALID_TOPIC_NAME', `invalid topic name ${JSON.stringify(name)}: ${why}`, {
      details: { topic: name },
    });
  if (typeof name !== 'string' || name.length === 0) bad('it must be a non-empty string');
  const s = name as string;
  if (s === '.' || s === '..') bad("'.' and '..' are not allowed");
  if (s.length > MAX_TOPIC_NAME_LENGTH) bad(`it is ${s.length} characters long; the limit is 249`);
  if (!LEGAL_NAME.test(s)) {
    const ch = [...s].find((c) => !LEGAL_NAME.test(c));
    bad(`character ${JSON.stringify(ch)} is not allowed; use only ASCII letters, digits, '.', '_' and '-'`);
  }
}

function positiveInt(value: unknown, field: string, topic: string): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1) {
    fail(
      'EVENTLINE_ERR_INVALID_TOPIC_CONFIG',
      `topic ${topic}: ${field} must be a positive integer, got ${JSON.stringify(value)}`,
      {
        details: { topic, setting: field },
      },
    );
  }
  return value;
}

/** Validates and normalises topic options into a full config. */
export function normalizeTopicConfig(name: string, options: TopicSettings = {}): TopicConfig {
  try {
    const config: TopicConfig = {
      partitions: positiveInt(options.partitions ?? DEFAULT_TOPIC_CONFIG.partitions, 'partitions', name),
      replicationFactor:
        options.replicationFactor === undefined
          ? null
          : positiveInt(options.replicationFactor, 'replicationFactor', name),
      retentionMs:
        options.retention === 'forever'
          ? null
          : options.retention === undefined
            ? DEFAULT_TOPIC_CONFIG.retentionMs
            : parseDuration(options.retention, `topic ${name}: retention`),
      retentionBytes:
        options.retentionBytes === undefined
          ? null
          : parseSize(options.retentionBytes, `topic ${name}: retentionBytes`),
      cleanupPolicy: options.cleanupPolicy ?? 'delete',
      deleteRetentionMs:
        options.deleteRetention === undefined
          ? DEFAULT_TOPIC_CONFIG.deleteRetentionMs
          : parseDuration(options.deleteRetention, `topic ${name}: deleteRetention`),
      maxMessageBytes:
        options.maxMessageBytes === undefined
          ? DEFAULT_TOPIC_CONFIG.maxMessageBytes
          : parseSize(options.maxMessageBytes, `topic ${name}: maxMessageBytes`),
      compression: options.compression ?? 'producer',
      minInsyncReplicas:
        options.minInsyncReplicas === undefined
          ? null
          : positiveInt(options.minInsyncReplicas, 'minInsyncReplicas', name),
      segmentMs:
        options.segmentMs === undefined ? null : parseDuration(options.segmentMs, `topic ${name}: segmentMs`),
      segmentBytes:
        options.segmentBytes === undefined
          ? null
          : parseSize(options.segmentBytes, `topic ${name}: segmentBytes`),
      minCleanableDirtyRatio: options.minCleanableDirtyRatio ?? DEFAULT_TOPIC_CONFIG.minCleanableDirtyRatio,
      fsync: options.fsync ?? true,
    };
    if (typeof config.fsync !== 'boolean') {
      fail('EVENTLINE_ERR_INVALID_TOPIC_CONFIG', `topic ${name}: fsync must be true or false`);
    }
    const ratio = config.minCleanableDirtyRatio;
    if (typeof ratio !== 'number' || !(ratio >= 0 && ratio <= 1)) {
      fail(
        'EVENTLINE_ERR_INVALID_TOPIC_CONFIG',
        `topic ${name}: minCleanableDirtyRatio must be between 0 and 1`,
      );
    }
    if (config.cleanupPolicy !== 'delete' && config.cleanupPolicy !== 'compact') {
      fail(
        'EVENTLINE_ERR_INVALID_TOPIC_CONFIG',
        `topic ${name}: cleanupPolicy must be 'delete' or 'compact', got ${JSON.stringify(config.cleanupPolicy)}`,
      );
    }
    if (!COMPRESSIONS.includes(config.compression)) {
      fail(
        'EVENTLINE_ERR_INVALID_TOPIC_CONFIG',
        `topic ${name}: unknown compression ${JSON.stringify(config.compression)}; use one of ${COMPRESSIONS.join(', ')}`,
      );
    }
    if (config.maxMessageBytes < 64) {
      fail('EVENTLINE_ERR_INVALID_TOPIC_CONFIG', `topic ${name}: maxMessageBytes must be at least 64 bytes`);
    }
    return config;
  } catch (err) {
    if (err instanceof EventlineError && err.code === 'EVENTLINE_ERR_INVALID_ARGUMENT') {
      throw new EventlineError('EVENTLINE_ERR_INVALID_TOPIC_CONFIG', err.message, {
        details: { topic: name },
      });
    }
    throw err;
  }
}

/**
 * Declares a topic in code. The name is checked at once (EVENTLINE_ERR_INVALID_TOPIC_NAME), and so
 * are the settings (EVENTLINE_ERR_INVALID_TOPIC_CONFIG). Nothing is created until
 * `bus.ensureTopics([...])`.
 *
 * @example
 * const orders = defineTopic<Order>('orders', { partitions: 3, key: (o) => o.customerId });
 */
export function defineTopic<V = unknown, K = string>(
  name: string,
  options: TopicOptions<V, K> = {},
): Topic<V, K> {
  validateTopicName(name);
  const config = normalizeTopicConfig(name, options);
  return Object.freeze({
    name,
    config: Object.freeze(config),
    value: options.value ?? (json() as Codec<V>),
    keyCodec: options.keyCodec ?? (string() as unknown as Codec<K>),
    keyOf: options.key,
    type: options.type ?? name,
  });
}

/** Settings that differ between a declaration and what the engine has. */
export interface TopicDifference {
  setting: keyof TopicConfig;
  declared: unknown;
  actual: unknown;
  /** True when applying the declared value is allowed (partitions may grow, never shrink). */
  applicable: boolean;
}

/**
 * Compares a declared config with an existing one. Settings the engine does not keep (reported as
 * `undefined` in `actual`) are not compared.
 */
export function diffTopicConfig(declared: TopicConfig, actual: Partial<TopicConfig>): TopicDifference[] {
  const out: TopicDifference[] = [];
  for (const setting of Object.keys(declared) as (keyof TopicConfig)[]) {
    const want = declared[setting];
    const have = actual[setting];
    if (have === undefined || want === have) continue;
    // A setting left to the broker's default is not drift.
    if (want === null) continue;
    if (setting === 'compression' && want === 'producer') continue;
    const applicable =
      setting === 'partitions'
        ? (want as number) > (have as number)
        : setting !== 'replicationFactor' && setting !== 'cleanupPolicy';
    out.push({ setting, declared: want, actual: have, applicable });
  }
  return out;
}

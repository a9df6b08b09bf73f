/**
 * Eventline's public API. Everything exported here is supported; anything else is internal.
 */
export {
  Admin,
  type BatchItem,
  type ConnectOptions,
  connect,
  type EncodedRecord,
  type EncodeOptions,
  type EnsureTopicsOptions,
  Eventline,
  type FollowOptions,
  type HeadersInput,
  type PublishBatchOptions,
  type PublishOptions,
  type PublishResult,
  Reader,
  type ReadFrom,
  type ReadOptions,
  type RegistryOptions,
  type ResetOffsetsOptions,
  type ResetTarget,
  type TopicAction,
  type TopicPlan,
} from './client.ts';
export {
  type BoundCodec,
  bytes,
  type Codec,
  type CodecScope,
  type JsonCodecOptions,
  json,
  string,
} from './codec.ts';
export type { EmbeddedEngineOptions } from './engine/embedded/engine.ts';
export type { KafkaEngineOptions } from './engine/kafka/engine.ts';
export type {
  CommittedOffset,
  Engine,
  GroupDescription,
  GroupMemberInfo,
  GroupPartitionInfo,
  GroupState,
  Header,
  PartitionOffsets,
  TopicDescription,
  TopicPartition,
} from './engine/types.ts';
export { DEFAULT_URL, parseEngineUrl, redactUrl } from './engine/url.ts';
export {
  ERROR_CODES,
  type ErrorCode,
  EventlineError,
  type EventlineErrorOptions,
  isEventlineError,
} from './errors.ts';
export type { Message } from './message.ts';
export {
  type HealthCheck,
  type HealthCheckKind,
  type HealthHandlerOptions,
  type HealthOptions,
  type HealthReport,
  type HealthStatus,
  type HealthTarget,
  healthHandler,
} from './observability/health.ts';
export type { GroupLag, PartitionLag } from './observability/lag.ts';
export {
  createLogger,
  type Logger,
  type LoggerOptions,
  type LogLevel,
  silentLogger,
} from './observability/logger.ts';
export {
  EventlineMetrics,
  type LagSample,
  type MetricsOptions,
  type MetricsSource,
  metricsHandler,
  type OutboxSample,
  type ViewSample,
} from './observability/metrics.ts';
export { murmur2, partitionForKey } from './partitioner.ts';
export {
  createOutbox,
  type Outbox,
  type OutboxBacklog,
  type OutboxEntry,
  type OutboxErrorInfo,
  type OutboxOptions,
  type OutboxRelayState,
  type OutboxRelayStatus,
  type OutboxTransaction,
  type PostgresDatabase,
  type PostgresOutboxTransaction,
  type SqliteOutboxTransaction,
} from './patterns/outbox.ts';
export {
  createRequester,
  REQUEST_HEADERS,
  type Requester,
  type RequesterOptions,
  type RequesterStats,
  type RequestOptions,
  type Responder,
  type ResponderContext,
  type ResponderStats,
  type RespondOptions,
  respond,
} from './patterns/request-reply.ts';
export {
  createView,
  type View,
  type ViewChange,
  type ViewErrorInfo,
  type ViewOptions,
  type ViewPersistOptions,
  type ViewReadyOptions,
  type ViewState,
  type ViewStats,
  type ViewStatus,
} from './patterns/view.ts';
export {
  type DeadLetter,
  DLQ_HEADERS,
  deadLetterTopic,
  parkingLotTopic,
  parseDeadLetter,
  REPLAYS_HEADER,
} from './runtime/dead-letter.ts';
export {
  type DedupOptions,
  type DedupStore,
  type ProcessOnceResult,
  type TransactionalDedupStore,
  withBatchDedup,
  withDedup,
} from './runtime/dedup.ts';
export {
  type PostgresDedupStore,
  type PostgresDedupStoreOptions,
  postgresDedupStore,
} from './runtime/dedup-postgres.ts';
export {
  type RedisDedupClient,
  type RedisDedupStoreOptions,
  redisDedupStore,
} from './runtime/dedup-redis.ts';
export {
  type SqliteDedupStore,
  type SqliteDedupStoreOptions,
  sqliteDedupStore,
} from './runtime/dedup-sqlite.ts';
export {
  type DeadLetterFilter,
  type DeadLetterSource,
  type DeadLetterTopicInfo,
  type ListedDeadLetter,
  listDeadLetterTopics,
  type ReadDeadLettersOptions,
  type ReplayOptions,
  type ReplayProgress,
  type ReplayResult,
  readDeadLetters,
  replayDeadLetters,
} from './runtime/replay.ts';
export { isRetryable, NonRetryableError, type RetryOptions } from './runtime/retry.ts';
export { type ShutdownOptions, type Stoppable, stopOnSignals } from './runtime/shutdown.ts';
export type {
  ErrorInfo,
  HandlerContext,
  MessageOf,
  SeekTarget,
  SubscribeOptions,
  Subscription,
  SubscriptionState,
  SubscriptionStatus,
  TopicInput,
} from './runtime/subscription.ts';
export {
  type AvroCodec,
  type AvroOptions,
  avro,
  avroFile,
  type SubjectStrategy,
  subjectName,
} from './schema/avro.ts';
export type { SchemaMismatch } from './schema/avro-types.ts';
export { generateTypes } from './schema/codegen.ts';
export { checkCompatibility, checkReaderWriter, type Incompatibility } from './schema/compatibility.ts';
export { type HttpRegistryOptions, httpRegistry } from './schema/http-registry.ts';
export type { InferAvro, InferAvroInput } from './schema/infer.ts';
export { openRegistry, type RegistryOpenOptions } from './schema/registry.ts';
export { type RegistryServer, type RegistryServerOptions, startRegistryServer } from './schema/server.ts';
export {
  COMPATIBILITY_LEVELS,
  type CompatibilityLevel,
  type CompatibilityResult,
  REGISTRY_MODES,
  type RegistryMode,
  type SchemaById,
  type SchemaInput,
  type SchemaReference,
  type SchemaRegistry,
  type SchemaType,
  type SubjectVersion,
} from './schema/types.ts';
export {
  type CleanupPolicy,
  type Compression,
  DEFAULT_TOPIC_CONFIG,
  defineTopic,
  type Topic,
  type TopicConfig,
  type TopicDifference,
  type TopicOptions,
  type TopicSettings,
  validateTopicName,
} from './topic.ts';
export {
  type Duration,
  type FormatDurationOptions,
  formatDuration,
  formatSize,
  parseDuration,
  parseSize,
  type Size,
} from './util/units.ts';

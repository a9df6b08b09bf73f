/**
 * The engine contract: the small set of operations every engine implements, written from the
 * semantics of a partitioned log with consumer groups. Everything else (codecs, partitioning,
 * CloudEvents headers, the consumer runtime, the CLI) is built once above it.
 *
 * Offsets are plain numbers: dense per partition, starting at 0, and safe up to 2^53.
 */
import type { TopicConfig, TopicSpec } from '../topic.ts';

/** A header as stored: Kafka headers are ordered, may repeat, and carry bytes. */
export type Header = readonly [name: string, value: Buffer];

export interface TopicPartition {
  topic: string;
  partition: number;
}

/** A record on its way in. The partition was chosen above the engine. */
export interface AppendRecord {
  partition: number;
  key: Buffer | null;
  /** `null` is a tombstone on a compacted topic. */
  value: Buffer | null;
  headers: readonly Header[];
  /** Milliseconds since the epoch. */
  timestamp: number;
}

export interface AppendOptions {
  /** Default true. */
  atomic?: boolean;
}

export interface AppendResult {
  partition: number;
  offset: number;
}

/** A record as stored. Buffers may be views into a larger fetched block: copy them to keep them. */
export interface StoredRecord {
  topic: string;
  partition: number;
  offset: number;
  timestamp: number;
  key: Buffer | null;
  value: Buffer | null;
  headers: readonly Header[];
  /**
   * Optional: the first header of this name as Latin-1 text, read without decoding the others
   * (the embedded engine decodes headers lazily). Callers fall back to `headers`.
   */
  headerText?(name: string): string | undefined;
  /**
   * Optional: where the value of the first header of this name is stored: the bytes it is in
   * (returned; undefined when there is no such header) and its place in them, `span[0]` to
   * `span[1]`. Lets a consumer read one header of a whole batch without a copy or a string per
   * record. The bytes are the engine's own: read them, never change them.
   */
  locateHeader?(name: string, span: Int32Array): Uint8Array | undefined;
}

export interface PartitionOffsets {
  partition: number;
  /** The first offset still stored (the log start). */
  start: number;
  /** The offset the next record will get (the high watermark). */
  end: number;
}

export interface TopicDescription {
  name: string;
  /** Settings as the engine keeps them; those it does not keep are absent. */
  config: Partial<TopicConfig>;
  partitions: PartitionOffsets[];
}

export interface FetchOptions {
  /** Upper bound on records returned. */
  maxRecords: number;
  /** Soft upper bound on bytes returned; at least one record is returned when one exists. */
  maxBytes?: number;
}

export interface CommittedOffset extends TopicPartition {
  /** The next offset the group will read. */
  offset: number;
  /**
   * Stored with the offset (Kafka's commit metadata, at most a few KiB): the runtime keeps the
   * state of records past the offset that are finished or waiting for a retry, so a restart or the
   * next owner resumes exactly.
   */
  metadata?: string;
}

export interface GroupMemberInfo {
  memberId: string;
  clientId: string;
  host: string;
  /** Milliseconds since the member last proved it was alive; absent where the engine hides it. */
  sinceHeartbeatMs?: number;
  assignment: TopicPartition[];
}

export type GroupState = 'Empty' | 'Stable' | 'Rebalancing' | 'Dead';

export interface GroupPartitionInfo extends TopicPartition {
  /** Committed offset, or null when the group never committed on this partition. */
  committed: number | null;
  end: number;
  /** Records behind the end of the partition. */
  lag: number;
  /** Member that owns the partition now, if any. */
  owner: string | null;
}

export interface GroupDescription {
  group: string;
  state: GroupState;
  /** The group's generation, where the engine reports it (Kafka's DescribeGroups does not). */
  generation?: number;
  members: GroupMemberInfo[];
  partitions: GroupPartitionInfo[];
}

export interface GroupMemberOptions {
  group: string;
  topics: string[];
  clientId: string;
  /** Where a partition without a committed offset starts: its log start, or its end. */
  fromBeginning: boolean;
  /** A member that has not proven it is alive for this long loses its partitions. */
  sessionTimeoutMs: number;
  heartbeatIntervalMs: number;
  /** Partitions given to this member. Fetching starts at their committed offsets. */
  onAssigned(partitions: TopicPartition[]): void;
  /**
   * Partitions being taken away. The member finishes (or abandons) work on them and commits before
   * the returned promise settles; only then may another member start on them.
   */
  onRevoked(partitions: TopicPartition[]): Promise<void>;
  /** Partitions lost without a chance to commit (this member was evicted or fenced). */
  onLost(partitions: TopicPartition[]): void;
}

/** Records fetched for one partition, in offset order. */
export interface FetchedBatch extends TopicPartition {
  /** May be empty when only transaction markers were passed. */
  records: StoredRecord[];
  /**
   * The position after this batch: one past its last record, or further when the engine skipped
   * entries that are not records (Kafka's transaction markers). A consumer that handled the whole
   * batch commits this, so no marker is left behind as lag.
   */
  nextOffset: number;
}

/**
 * One member of a consumer group. The runtime polls it for records of the partitions it owns,
 * processes them, and commits.
 */
export interface GroupMember {
  readonly memberId: string;
  /** Joins the group; resolves once the member is registered (an assignment may follow later). */
  join(): Promise<void>;
  /**
   * Records from owned, unpaused partitions from their current positions. Waits until at least one
   * record is there, the signal aborts, or `maxWaitMs` passes (then resolves empty).
   */
  poll(options: {
    maxRecords: number;
    maxBytes?: number;
    maxWaitMs: number;
    signal?: AbortSignal;
  }): Promise<FetchedBatch[]>;
  /** Commits next-offsets; throws EVENTLINE_ERR_FENCED for a partition this member no longer owns. */
  commit(offsets: CommittedOffset[]): Promise<void>;
  /** Moves the fetch position of an owned partition. */
  seek(tp: TopicPartition, offset: number): void;
  pause(tps: TopicPartition[]): void;
  resume(tps: TopicPartition[]): void;
  /** Partitions owned now. */
  assignment(): TopicPartition[];
  /** Leaves the group; owned partitions are released at once (call after committing). */
  leave(): Promise<void>;
}

export interface DataWatch {
  /**
   * Resolves when new records may exist since the previous call (at once if some arrived in
   * between), after `maxWaitMs`, or when the signal aborts. Readers loop: fetch, then wait.
   */
  wait(maxWaitMs: number, signal?: AbortSignal): Promise<void>;
}

export interface EngineCapabilities {
  /** Several processes can share the engine (false for an in-memory database). */
  sharedAcrossProcesses: boolean;
  /** Replication factor and in-sync replicas are meaningful. */
  replication: boolean;
}

export interface Engine {
  readonly kind: 'sqlite' | 'kafka';
  /** The engine URL with any secret removed, for logs and tools. */
  readonly displayUrl: string;
  readonly capabilities: EngineCapabilities;

  /** Creates topics; EVENTLINE_ERR_TOPIC_EXISTS when one exists already. */
  createTopics(specs: TopicSpec[]): Promise<void>;
  /** Changes settings; partitions may only grow. */
  alterTopic(name: string, changes: Partial<TopicConfig>): Promise<void>;
  /** Topic names, sorted. Internal topics are left out. */
  listTopics(): Promise<string[]>;
  /** EVENTLINE_ERR_UNKNOWN_TOPIC for a name that does not exist. */
  describeTopics(names: string[]): Promise<TopicDescription[]>;
  deleteTopics(names: string[]): Promise<void>;
  /** Start and end offsets of some (default: all) partitions of a topic (Kafka's ListOffsets). */
  listOffsets(topic: string, partitions?: number[]): Promise<PartitionOffsets[]>;

  /**
   * Appends every record durably. Atomic by default: all records are stored, or none is. With
   * `atomic: false` an engine may store the records of each partition separately (Kafka then
   * needs no transaction); the embedded engine is always atomic.
   */
  append(topic: string, records: AppendRecord[], options?: AppendOptions): Promise<AppendResult[]>;
  /** Records of one partition from `offset` on (gaps from compaction are skipped). */
  fetch(topic: string, partition: number, offset: number, options: FetchOptions): Promise<StoredRecord[]>;
  /** The first offset whose timestamp is at or after `timestamp`, or the end offset if none is. */
  offsetForTimestamp(topic: string, partition: number, timestamp: number): Promise<number>;
  /** A cursor over changes: its `wait` resolves once records may have arrived since the last wait. */
  watch(): DataWatch;
  /** The partition count of a topic (may be cached for a few seconds). */
  partitionCount(topic: string): Promise<number>;

  createGroupMember(options: GroupMemberOptions): GroupMember;
  listGroups(): Promise<string[]>;
  /** EVENTLINE_ERR_UNKNOWN_GROUP for a group that never existed. */
  describeGroup(group: string): Promise<GroupDescription>;
  /** Committed offsets of a group. */
  groupOffsets(group: string): Promise<CommittedOffset[]>;
  /** Sets committed offsets; EVENTLINE_ERR_GROUP_NOT_EMPTY while the group has live members. */
  setGroupOffsets(group: string, offsets: CommittedOffset[]): Promise<void>;

  /** Runs retention and compaction now (they also run in the background). */
  runMaintenance(): Promise<void>;
  close(): Promise<void>;
}

/** The plain fields of a record, for JSON and logs (records decode some fields lazily). */
export function recordFields(
  r: TopicPartition & { offset: number; timestamp: number; key: unknown; value: unknown; headers: unknown },
): object {
  return {
    topic: r.topic,
    partition: r.partition,
    offset: r.offset,
    timestamp: r.timestamp,
    key: r.key,
    value: r.value,
    headers: r.headers,
  };
}

/**
 * Topic settings as Kafka topic configs, and back. Kafka's `max.message.bytes` bounds a record
 * batch while Eventline's `maxMessageBytes` bounds a record; the 12 bytes between them are Kafka's
 * own: Eventline's default of 1 MiB maps to Kafka's default of 1048588.
 */
import type { CleanupPolicy, Compression, TopicConfig } from '../../topic.ts';

const BATCH_OVERHEAD = 12;

export interface KafkaConfigEntry {
  name: string;
  value: string;
}

export function toKafkaConfigs(c: Partial<TopicConfig>): KafkaConfigEntry[] {
  const out: KafkaConfigEntry[] = [];
  const put = (name: string, value: number | string | null | undefined, none?: string): void => {
    if (value === undefined) return;
    if (value === null) {
      if (none !== undefined) out.push({ name, value: none });
      return;
    }
    out.push({ name, value: String(value) });
  };
  put('retention.ms', c.retentionMs, '-1');
  put('retention.bytes', c.retentionBytes, '-1');
  put('cleanup.policy', c.cleanupPolicy);
  put('delete.retention.ms', c.deleteRetentionMs);
  put('max.message.bytes', c.maxMessageBytes === undefined ? undefined : c.maxMessageBytes + BATCH_OVERHEAD);
  put('compression.type', c.compression);
  put('min.insync.replicas', c.minInsyncReplicas);
  put('segment.ms', c.segmentMs);
  put('segment.bytes', c.segmentBytes);
  put('min.cleanable.dirty.ratio', c.minCleanableDirtyRatio);
  return out;
}

/** The settings Kafka reports for a topic, in Eventline's terms. */
export function fromKafkaConfigs(
  entries: Iterable<{ name: string; value?: string | null | undefined }>,
): Partial<TopicConfig> {
  const get = new Map<string, string>();
  for (const e of entries) if (e.value !== null && e.value !== undefined) get.set(e.name, e.value);
  const num = (name: string): number | undefined => (get.has(name) ? Number(get.get(name)) : undefined);
  const unlimited = (name: string): number | null | undefined => {
    const v = num(name);
    return v === undefined ? undefined : v < 0 ? null : v;
  };
  const out: Partial<TopicConfig> = {};
  const retentionMs = unlimited('retention.ms');
  if (retentionMs !== undefined) out.retentionMs = retentionMs;
  const retentionBytes = unlimited('retention.bytes');
  if (retentionBytes !== undefined) out.retentionBytes = retentionBytes;
  const policy = get.get('cleanup.policy');
  if (policy !== undefined)
    out.cleanupPolicy = (policy.includes('compact') ? 'compact' : 'delete') as CleanupPolicy;
  const deleteRetention = num('delete.retention.ms');
  if (deleteRetention !== undefined) out.deleteRetentionMs = deleteRetention;
  const maxMessage = num('max.message.bytes');
  if (maxMessage !== undefined) out.maxMessageBytes = maxMessage - BATCH_OVERHEAD;
  const compression = get.get('compression.type');
  if (compression !== undefined)
    out.compression = (compression === 'uncompressed' ? 'none' : compression) as Compression;
  const minIsr = num('min.insync.replicas');
  if (minIsr !== undefined) out.minInsyncReplicas = minIsr;
  const segmentMs = num('segment.ms');
  if (segmentMs !== undefined) out.segmentMs = segmentMs;
  const segmentBytes = num('segment.bytes');
  if (segmentBytes !== undefined) out.segmentBytes = segmentBytes;
  const ratio = num('min.cleanable.dirty.ratio');
  if (ratio !== undefined) out.minCleanableDirtyRatio = ratio;
  return out;
}

/** The Kafka configs `describeConfigs` is asked for. */
export const DESCRIBED_CONFIGS = [
  'retention.ms',
  'retention.bytes',
  'cleanup.policy',
  'delete.retention.ms',
  'max.message.bytes',
  'compression.type',
  'min.insync.replicas',
  'segment.ms',
  'segment.bytes',
  'min.cleanable.dirty.ratio',
];

import { EventlineError, fail } from '../errors.ts';
import { recordSize } from './embedded/batch-format.ts';
import type { AppendRecord } from './types.ts';

/** What record checks need to know about a topic. */
export interface RecordLimits {
  partitions: number;
  maxMessageBytes: number;
  compacted: boolean;
}

/**
 * The checks every engine makes before storing records, so a bad record is refused with a clear
 * error naming what was wrong, and none of its batch is stored.
 */
export function validateRecords(topic: string, limits: RecordLimits, records: readonly AppendRecord[]): void {
  for (const r of records) {
    if (!Number.isInteger(r.partition) || r.partition < 0 || r.partition >= limits.partitions) {
      throw refuse.unknownPartition(topic, r.partition, limits.partitions);
    }
    const size = recordSize(r.key, r.value, r.headers);
    if (size > limits.maxMessageBytes) {
      fail(
        'EVENTLINE_ERR_MESSAGE_TOO_LARGE',
        `a record of ${size} bytes exceeds topic ${topic}'s maximum message size of ${limits.maxMessageBytes} bytes`,
        { details: { topic, size, limit: limits.maxMessageBytes } },
      );
    }
    if (limits.compacted && r.key === null) {
      fail('EVENTLINE_ERR_INVALID_RECORD', `topic ${topic} is compacted: every record needs a key`, {
        details: { topic },
      });
    }
    if (!Number.isSafeInteger(r.timestamp) || r.timestamp < 0) {
      fail('EVENTLINE_ERR_INVALID_RECORD', `record timestamp ${r.timestamp} is not a time in milliseconds`, {
        details: { topic },
      });
    }
  }
}

/** The refusals every engine reports alike, worded once: `throw refuse.unknownTopic(name)`. */
export const refuse = {
  unknownTopic: (topic: string): EventlineError =>
    new EventlineError(
      'EVENTLINE_ERR_UNKNOWN_TOPIC',
      `topic ${topic} does not exist (create it with ensureTopics or \`eventline topics create\`)`,
      { details: { topic } },
    ),
  unknownPartition: (topic: string, partition: number, count: number): EventlineError =>
    new EventlineError(
      'EVENTLINE_ERR_UNKNOWN_PARTITION',
      `topic ${topic} has no partition ${partition} (it has ${count})`,
      { details: { topic, partition } },
    ),
  topicExists: (topic: string): EventlineError =>
    new EventlineError('EVENTLINE_ERR_TOPIC_EXISTS', `topic ${topic} already exists`, { details: { topic } }),
  partitionsCannotShrink: (topic: string, has: number, asked: number): EventlineError =>
    new EventlineError(
      'EVENTLINE_ERR_INVALID_TOPIC_CONFIG',
      `topic ${topic}: partitions can only grow (has ${has}, asked for ${asked})`,
      { details: { topic, setting: 'partitions' } },
    ),
  unknownGroup: (group: string): EventlineError =>
    new EventlineError('EVENTLINE_ERR_UNKNOWN_GROUP', `consumer group ${group} does not exist`, {
      details: { group },
    }),
  groupNotEmpty: (group: string, live: number): EventlineError =>
    new EventlineError(
      'EVENTLINE_ERR_GROUP_NOT_EMPTY',
      `consumer group ${group} has ${live} live member(s); stop them before resetting offsets`,
      { details: { group, members: live } },
    ),
};

import type { Engine, GroupDescription, GroupPartitionInfo } from '../engine/types.ts';
import type { LagSample } from './metrics.ts';

/** A group's position on one partition, with how far behind it is in records and in time. */
export interface PartitionLag extends GroupPartitionInfo {
  /**
   * Milliseconds between now and the timestamp of the next record the group will read: how long
   * the oldest unread record has waited. 0 when the group has read everything.
   */
  lagMs: number;
}

export interface GroupLag extends Omit<GroupDescription, 'partitions'> {
  partitions: PartitionLag[];
  /** When the figures were taken (milliseconds since the epoch). */
  at: number;
}

/**
 * Describes a group and measures its lag: records behind the end of each partition, and the age of
 * the next unread record. One fetch of one record per lagging partition.
 */
export async function groupLag(
  engine: Engine,
  group: string,
  now: () => number = Date.now,
): Promise<GroupLag> {
  const d = await engine.describeGroup(group);
  const partitions = await Promise.all(
    d.partitions.map(async (p): Promise<PartitionLag> => {
      if (p.lag === 0) return { ...p, lagMs: 0 };
      const next = p.end - p.lag;
      let lagMs = 0;
      try {
        const [first] = await engine.fetch(p.topic, p.partition, next, { maxRecords: 1, maxBytes: 1 });
        if (first) lagMs = Math.max(0, now() - first.timestamp);
      } catch {
        // Retention may remove the record between the two calls; the record count still stands.
      }
      return { ...p, lagMs };
    }),
  );
  return { ...d, partitions, at: now() };
}

/**
 * Lag of each named group, as metric samples. A group that cannot be described (it vanished, the
 * engine is away) is left out and told to `onError`.
 */
export async function lagSamples(
  engine: Engine,
  groups: Iterable<string>,
  onError: (err: unknown, group: string) => void = () => {},
): Promise<LagSample[]> {
  const out: LagSample[] = [];
  const queue = [...groups];
  // A few groups at a time: each is a describe plus a fetch per lagging partition.
  const worker = async (): Promise<void> => {
    for (let group = queue.shift(); group !== undefined; group = queue.shift()) {
      try {
        const lag = await groupLag(engine, group);
        for (const p of lag.partitions) {
          out.push({
            group,
            topic: p.topic,
            partition: p.partition,
            records: p.lag,
            seconds: p.lagMs / 1000,
          });
        }
      } catch (err) {
        onError(err, group);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(4, queue.length) }, worker));
  return out;
}

import { fail } from '../errors.ts';
import { partitionKey } from './assignor.ts';
import type { TopicPartition } from './types.ts';

/**
 * The partitions a group member owns, which of them its consumer paused, and a fair order to
 * serve them in. Shared by both engines' group members; each keeps its own per-partition state in `O`.
 */
export class OwnedPartitions<O extends TopicPartition & { key: string }> {
  readonly #owned = new Map<string, O>();
  readonly #paused = new Set<string>();
  #rotation = 0;

  get size(): number {
    return this.#owned.size;
  }

  values(): IterableIterator<O> {
    return this.#owned.values();
  }

  get(topic: string, partition: number): O | undefined {
    return this.#owned.get(partitionKey(topic, partition));
  }

  add(o: O): void {
    this.#owned.set(o.key, o);
  }

  /** Gives partitions up (forgetting whether they were paused). */
  remove(tps: Iterable<TopicPartition>): void {
    for (const tp of tps) {
      const key = partitionKey(tp.topic, tp.partition);
      this.#owned.delete(key);
      this.#paused.delete(key);
    }
  }

  /** Gives every partition up; returns what was owned. */
  clear(): TopicPartition[] {
    const all = this.list();
    this.#owned.clear();
    this.#paused.clear();
    return all;
  }

  /** What is owned, as plain topic-partitions. */
  list(): TopicPartition[] {
    return [...this.#owned.values()].map(({ topic, partition }) => ({ topic, partition }));
  }

  /** The owned partition, or EVENTLINE_ERR_INVALID_ARGUMENT saying it is not assigned here. */
  require(tp: TopicPartition, doing: string): O {
    const o = this.get(tp.topic, tp.partition);
    if (o === undefined) {
      fail(
        'EVENTLINE_ERR_INVALID_ARGUMENT',
        `cannot ${doing} ${tp.topic}/${tp.partition}: it is not assigned to this member`,
      );
    }
    return o;
  }

  pause(tps: Iterable<TopicPartition>): void {
    for (const tp of tps) this.#paused.add(partitionKey(tp.topic, tp.partition));
  }

  resume(tps: Iterable<TopicPartition>): void {
    for (const tp of tps) this.#paused.delete(partitionKey(tp.topic, tp.partition));
  }

  /**
   * The partitions not paused (and passing `ready`), starting one further along on every call,
   * so that a budget running out never starves the same partition.
   */
  inTurn(ready: (o: O) => boolean = () => true): O[] {
    const candidates = [...this.#owned.values()].filter((o) => !this.#paused.has(o.key) && ready(o));
    if (candidates.length === 0) return candidates;
    this.#rotation = (this.#rotation + 1) % candidates.length;
    return [...candidates.slice(this.#rotation), ...candidates.slice(0, this.#rotation)];
  }
}

/**
 * Deterministic, sticky, balanced assignment of partitions to group members, shared by both
 * engines. On the embedded engine every member computes the same answer from the same table rows,
 * so whichever process changes the membership can write the new targets; on Kafka the group
 * leader runs it.
 *
 * - A partition only goes to a member subscribed to its topic.
 * - A partition stays with its current target while that member is under its fair share.
 * - Partitions left over go to the least-loaded eligible member, those with the fewest eligible
 *   members first; ties prefer the current target, then the smaller member id.
 */
export interface AssignableMember {
  memberId: string;
  topics: readonly string[];
}

export interface AssignablePartition {
  topic: string;
  partition: number;
  /** The member this partition is assigned to now, if any. */
  current: string | null;
}

/** One string per topic-partition, for maps and sets. */
export function partitionKey(topic: string, partition: number): string {
  return `${topic}\u0000${partition}`;
}

/** Returns the target member for each partition key (null when no member subscribes to its topic). */
export function assignPartitions(
  members: readonly AssignableMember[],
  partitions: readonly AssignablePartition[],
): Map<string, string | null> {
  const sortedMembers = [...members].sort((a, b) =>
    a.memberId < b.memberId ? -1 : a.memberId > b.memberId ? 1 : 0,
  );
  const sortedPartitions = [...partitions].sort((a, b) =>
    a.topic < b.topic ? -1 : a.topic > b.topic ? 1 : a.partition - b.partition,
  );
  const eligible = new Map<string, AssignableMember[]>();
  for (const p of sortedPartitions) {
    if (!eligible.has(p.topic))
      eligible.set(
        p.topic,
        sortedMembers.filter((m) => m.topics.includes(p.topic)),
      );
  }
  const load = new Map<string, number>(sortedMembers.map((m) => [m.memberId, 0]));
  // A member's fair share: the partitions it could take, divided among the members that could take them.
  const fair = new Map<string, number>();
  for (const m of sortedMembers) {
    let share = 0;
    for (const p of sortedPartitions) {
      const candidates = eligible.get(p.topic)!;
      if (candidates.includes(m)) share += 1 / candidates.length;
    }
    fair.set(m.memberId, Math.floor(share + 1e-9));
  }

  const result = new Map<string, string | null>();
  const pending: AssignablePartition[] = [];
  for (const p of sortedPartitions) {
    const candidates = eligible.get(p.topic)!;
    const keep = p.current !== null && candidates.some((m) => m.memberId === p.current);
    if (keep && load.get(p.current!)! < fair.get(p.current!)!) {
      result.set(partitionKey(p.topic, p.partition), p.current);
      load.set(p.current!, load.get(p.current!)! + 1);
    } else {
      pending.push(p);
    }
  }
  // Most constrained first: partitions that few members may take are placed before the rest.
  pending.sort((a, b) => eligible.get(a.topic)!.length - eligible.get(b.topic)!.length);
  for (const p of pending) {
    const candidates = eligible.get(p.topic)!;
    if (candidates.length === 0) {
      result.set(partitionKey(p.topic, p.partition), null);
      continue;
    }
    let best: AssignableMember | undefined;
    for (const m of candidates) {
      if (best === undefined) {
        best = m;
        continue;
      }
      const lm = load.get(m.memberId)!;
      const lb = load.get(best.memberId)!;
      if (lm < lb || (lm === lb && m.memberId === p.current)) best = m;
    }
    result.set(partitionKey(p.topic, p.partition), best!.memberId);
    load.set(best!.memberId, load.get(best!.memberId)! + 1);
  }
  return result;
}

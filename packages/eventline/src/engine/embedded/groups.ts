import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import type { DatabaseSync } from 'node:sqlite';
import { setTimeout as sleep } from 'node:timers/promises';
import { EventlineError, fail } from '../../errors.ts';
import { assignPartitions, partitionKey } from '../assignor.ts';
import { OwnedPartitions } from '../owned.ts';
import type {
  CommittedOffset,
  FetchedBatch,
  GroupDescription,
  GroupMember,
  GroupMemberOptions,
  GroupPartitionInfo,
  TopicPartition,
} from '../types.ts';
import { refuse } from '../validate.ts';
import type { EmbeddedLog } from './log.ts';
import type { ChangeNotifier } from './notifier.ts';
import { read, writeTransaction } from './sqlite.ts';

interface AssignmentRow {
  topic: string;
  partition: number;
  target: string | null;
  owner: string | null;
}

/** Smallest gap between two checks of the group epoch triggered by database changes. */
const EPOCH_CHECK_INTERVAL_MS = 5;

/**
 * Consumer groups of the embedded engine, coordinated through the database so members in several
 * processes share one group.
 *
 * - Members register in `el_members` and heartbeat; one that misses its session timeout is evicted
 *   by whichever member notices first.
 * - Whoever changes the membership recomputes the targets (`el_assignments.target`) with a
 *   deterministic sticky assignor and bumps the group's generation.
 * - Handover is two-phase: a partition's owner finishes its in-flight work, commits and releases it
 *   (`owner = NULL`); only then does the new target claim it. No record is processed by two live
 *   members at once.
 * - A commit is accepted only from the partition's current owner: an evicted member is fenced.
 */
export class EmbeddedGroups {
  readonly #db: DatabaseSync;
  readonly #log: EmbeddedLog;
  readonly #notifier: ChangeNotifier;
  readonly #lockTimeoutMs: number;

  constructor(db: DatabaseSync, log: EmbeddedLog, notifier: ChangeNotifier, lockTimeoutMs: number) {
    this.#db = db;
    this.#log = log;
    this.#notifier = notifier;
    this.#lockTimeoutMs = lockTimeoutMs;
  }

  get db(): DatabaseSync {
    return this.#db;
  }

  get log(): EmbeddedLog {
    return this.#log;
  }

  get notifier(): ChangeNotifier {
    return this.#notifier;
  }

  /** A write transaction on the group tables; other members (in any process) are woken after it. */
  async tx<T>(what: string, fn: () => T): Promise<T> {
    const result = await writeTransaction(this.#db, { lockTimeoutMs: this.#lockTimeoutMs, what }, fn);
    this.#notifier.notify();
    return result;
  }

  createMember(options: GroupMemberOptions): GroupMember {
    return new EmbeddedGroupMember(this, options);
  }

  epoch(group: string): number {
    const row = this.#db.prepare('SELECT epoch FROM el_groups WHERE name = ?').get(group) as
      | { epoch: number }
      | undefined;
    return row === undefined ? -1 : Number(row.epoch);
  }

  /** Inside a transaction: removes members whose session expired; returns their ids. */
  evictExpired(group: string, now: number): string[] {
    const gone = this.#db
      .prepare(
        'DELETE FROM el_members WHERE grp = ? AND heartbeat_at + session_timeout_ms < ? RETURNING member_id',
      )
      .all(group, now) as { member_id: string }[];
    const release = this.#db.prepare('UPDATE el_assignments SET owner = NULL WHERE grp = ? AND owner = ?');
    for (const { member_id } of gone) release.run(group, member_id);
    return gone.map((g) => g.member_id);
  }

  /**
   * Inside a transaction: recomputes the targets of every partition the group's members subscribe
   * to and writes what changed. Bumps the generation (and epoch) when anything did.
   */
  rebalance(group: string): boolean {
    const members = (
      this.#db.prepare('SELECT member_id, topics FROM el_members WHERE grp = ?').all(group) as {
        member_id: string;
        topics: string;
      }[]
    ).map((m) => ({ memberId: m.member_id, topics: JSON.parse(m.topics) as string[] }));
    const rows = this.#db
      .prepare('SELECT topic, partition, target, owner FROM el_assignments WHERE grp = ?')
      .all(group) as unknown as AssignmentRow[];
    const existing = new Map(rows.map((r) => [partitionKey(r.topic, Number(r.partition)), r]));
    const topics = new Set(members.flatMap((m) => m.topics));
    const partitions: { topic: string; partition: number; current: string | null }[] = [];
    const countOf = this.#db.prepare('SELECT partitions FROM el_topics WHERE name = ?');
    for (const topic of topics) {
      const row = countOf.get(topic) as { partitions: number } | undefined;
      for (let p = 0; p < Number(row?.partitions ?? 0); p++) {
        partitions.push({
          topic,
          partition: p,
          current: existing.get(partitionKey(topic, p))?.target ?? null,
        });
      }
    }
    const targets = assignPartitions(members, partitions);
    let changed = false;
    const insert = this.#db.prepare(
      'INSERT INTO el_assignments (grp, topic, partition, target, owner) VALUES (?, ?, ?, ?, NULL)',
    );
    const retarget = this.#db.prepare(
      'UPDATE el_assignments SET target = ? WHERE grp = ? AND topic = ? AND partition = ?',
    );
    const remove = this.#db.prepare(
      'DELETE FROM el_assignments WHERE grp = ? AND topic = ? AND partition = ?',
    );
    for (const p of partitions) {
      const key = partitionKey(p.topic, p.partition);
      const target = targets.get(key) ?? null;
      const row = existing.get(key);
      if (row === undefined) {
        insert.run(group, p.topic, p.partition, target);
        changed = true;
      } else if (row.target !== target) {
        retarget.run(target, group, p.topic, p.partition);
        changed = true;
      }
      existing.delete(key);
    }
    // Partitions nobody subscribes to any more (or of deleted topics).
    for (const row of existing.values()) {
      if (row.owner === null) remove.run(group, row.topic, row.partition);
      else if (row.target !== null) retarget.run(null, group, row.topic, row.partition);
      else continue;
      changed = true;
    }
    if (changed) {
      this.#db
        .prepare('UPDATE el_groups SET generation = generation + 1, epoch = epoch + 1 WHERE name = ?')
        .run(group);
    }
    return changed;
  }

  bumpEpoch(group: string): void {
    this.#db.prepare('UPDATE el_groups SET epoch = epoch + 1 WHERE name = ?').run(group);
  }

  listGroups(): string[] {
    const rows = read('listing groups', () =>
      this.#db.prepare('SELECT name FROM el_groups UNION SELECT grp FROM el_offsets ORDER BY 1').all(),
    ) as { name: string }[];
    return rows.map((r) => r.name);
  }

  groupOffsets(group: string): CommittedOffset[] {
    const rows = read(`reading offsets of group ${group}`, () =>
      this.#db
        .prepare(
          'SELECT topic, partition, next_offset, metadata FROM el_offsets WHERE grp = ? ORDER BY topic, partition',
        )
        .all(group),
    ) as { topic: string; partition: number; next_offset: number; metadata: string | null }[];
    return rows.map((r) => ({
      topic: r.topic,
      partition: Number(r.partition),
      offset: Number(r.next_offset),
      ...(r.metadata === null ? {} : { metadata: r.metadata }),
    }));
  }

  describeGroup(group: string): GroupDescription {
    return read(`describing group ${group}`, () => {
      const g = this.#db.prepare('SELECT generation FROM el_groups WHERE name = ?').get(group) as
        | { generation: number }
        | undefined;
      const offsets = this.groupOffsets(group);
      if (g === undefined && offsets.length === 0) {
        throw refuse.unknownGroup(group);
      }
      const now = Date.now();
      const members = this.#db
        .prepare(
          `SELECT member_id, client_id, host, pid, heartbeat_at FROM el_members
           WHERE grp = ? AND heartbeat_at + session_timeout_ms >= ? ORDER BY member_id`,
        )
        .all(group, now) as {
        member_id: string;
        client_id: string;
        host: string;
        pid: number;
        heartbeat_at: number;
      }[];
      const live = new Set(members.map((m) => m.member_id));
      const rows = this.#db
        .prepare(
          'SELECT topic, partition, target, owner FROM el_assignments WHERE grp = ? ORDER BY topic, partition',
        )
        .all(group) as unknown as AssignmentRow[];
      const committed = new Map(offsets.map((o) => [partitionKey(o.topic, o.partition), o.offset]));
      const topics = new Set([...rows.map((r) => r.topic), ...offsets.map((o) => o.topic)]);
      const partitions: GroupPartitionInfo[] = [];
      for (const topic of [...topics].sort()) {
        const meta = this.#log.topicMeta(topic, true);
        if (meta === undefined) continue;
        for (const p of this.#log.partitionOffsets(meta)) {
          const c = committed.get(partitionKey(topic, p.partition)) ?? null;
          const owner =
            rows.find((r) => r.topic === topic && Number(r.partition) === p.partition)?.owner ?? null;
          partitions.push({
            topic,
            partition: p.partition,
            committed: c,
            end: p.end,
            lag: Math.max(0, p.end - (c ?? p.start)),
            owner: owner !== null && live.has(owner) ? owner : null,
          });
        }
      }
      const settled = rows.every((r) => r.target === r.owner);
      return {
        group,
        state: members.length === 0 ? 'Empty' : settled ? 'Stable' : 'Rebalancing',
        generation: Number(g?.generation ?? 0),
        members: members.map((m) => ({
          memberId: m.member_id,
          clientId: m.client_id,
          host: `${m.host}/${m.pid}`,
          sinceHeartbeatMs: now - Number(m.heartbeat_at),
          assignment: rows
            .filter((r) => r.owner === m.member_id)
            .map((r) => ({ topic: r.topic, partition: Number(r.partition) })),
        })),
        partitions,
      };
    });
  }

  async setGroupOffsets(group: string, offsets: CommittedOffset[]): Promise<void> {
    await this.tx(`resetting offsets of group ${group}`, () => {
      const now = Date.now();
      const live = this.#db
        .prepare(
          'SELECT count(*) AS n FROM el_members WHERE grp = ? AND heartbeat_at + session_timeout_ms >= ?',
        )
        .get(group, now) as { n: number };
      if (Number(live.n) > 0) throw refuse.groupNotEmpty(group, Number(live.n));
      this.evictExpired(group, now);
      this.#db
        .prepare('INSERT INTO el_groups (name, created_at) VALUES (?, ?) ON CONFLICT (name) DO NOTHING')
        .run(group, now);
      upsertOffsets(this.#db, group, offsets, now);
    });
  }
}

interface Owned extends TopicPartition {
  key: string;
  position: number;
}

class EmbeddedGroupMember implements GroupMember {
  readonly memberId: string;
  readonly #groups: EmbeddedGroups;
  readonly #options: GroupMemberOptions;
  readonly #owned = new OwnedPartitions<Owned>();
  #joined = false;
  #closed = false;
  #lastEpoch = -1;
  #lastHeartbeat = 0;
  #syncing = false;
  #syncAgain = false;
  #loop: Promise<void> | undefined;
  #stopLoop = new AbortController();

  constructor(groups: EmbeddedGroups, options: GroupMemberOptions) {
    this.#groups = groups;
    this.#options = options;
    this.memberId = `${options.clientId}-${randomUUID()}`;
  }

  async join(): Promise<void> {
    if (this.#closed) fail('EVENTLINE_ERR_CLOSED', 'this group member has left its group');
    await this.#register();
    this.#joined = true;
    this.#loop = this.#watch();
    await this.#sync();
  }

  async #register(): Promise<void> {
    const { group, topics, clientId, sessionTimeoutMs } = this.#options;
    await this.#groups.tx(`joining group ${group}`, () => {
      const db = this.#groups.db;
      const now = Date.now();
      db.prepare('INSERT INTO el_groups (name, created_at) VALUES (?, ?) ON CONFLICT (name) DO NOTHING').run(
        group,
        now,
      );
      this.#groups.evictExpired(group, now);
      db.prepare(
        `INSERT INTO el_members (grp, member_id, client_id, host, pid, topics, session_timeout_ms, joined_at, heartbeat_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      ).run(
        group,
        this.memberId,
        clientId,
        hostname(),
        process.pid,
        JSON.stringify(topics),
        sessionTimeoutMs,
        now,
        now,
      );
      this.#groups.rebalance(group);
      this.#groups.bumpEpoch(group);
    });
    this.#lastHeartbeat = Date.now();
  }

  /**
   * Background loop: heartbeats on time, and re-syncs the assignment whenever the group's epoch
   * moves (woken by any database change, so rebalances take milliseconds, not a heartbeat period).
   */
  async #watch(): Promise<void> {
    const { group, heartbeatIntervalMs } = this.#options;
    const notifier = this.#groups.notifier;
    const signal = this.#stopLoop.signal;
    while (!signal.aborted) {
      const seq = notifier.seq;
      const dueIn = this.#lastHeartbeat + heartbeatIntervalMs - Date.now();
      if (dueIn <= 0) {
        await this.#heartbeat();
      } else {
        let epoch = -1;
        try {
          epoch = this.#groups.epoch(group);
        } catch {
          // transient read failure: the next heartbeat retries
        }
        if (epoch !== this.#lastEpoch) void this.#sync();
        await notifier.wait(seq, dueIn, signal);
        await sleep(EPOCH_CHECK_INTERVAL_MS);
      }
    }
  }

  async #heartbeat(): Promise<void> {
    const { group } = this.#options;
    this.#lastHeartbeat = Date.now();
    let alive = true;
    try {
      alive = await this.#groups.tx(`heartbeat in group ${group}`, () => {
        const db = this.#groups.db;
        const now = Date.now();
        const res = db
          .prepare('UPDATE el_members SET heartbeat_at = ? WHERE grp = ? AND member_id = ?')
          .run(now, group, this.memberId);
        if (Number(res.changes) === 0) return false;
        const evicted = this.#groups.evictExpired(group, now);
        // Also picks up topics created or grown since the last look.
        if (this.#groups.rebalance(group) || evicted.length > 0) this.#groups.bumpEpoch(group);
        return true;
      });
    } catch {
      // Could not reach the database this time; the session timeout decides whether that matters.
      return;
    }
    if (!alive) await this.#rejoinAfterEviction();
    else void this.#sync();
  }

  /** This member was evicted (it missed its session timeout): drop everything and join again. */
  async #rejoinAfterEviction(): Promise<void> {
    const lost = this.#owned.clear();
    if (lost.length > 0) this.#options.onLost(lost);
    if (this.#closed) return;
    (this as { memberId: string }).memberId = `${this.#options.clientId}-${randomUUID()}`;
    try {
      await this.#register();
    } catch {
      // retried at the next heartbeat
    }
  }

  async #sync(): Promise<void> {
    if (this.#syncing) {
      this.#syncAgain = true;
      return;
    }
    this.#syncing = true;
    try {
      do {
        this.#syncAgain = false;
        if (this.#closed || !this.#joined) return;
        await this.#syncOnce();
      } while (this.#syncAgain);
    } catch {
      // A failed sync is retried on the next heartbeat or epoch change.
    } finally {
      this.#syncing = false;
    }
  }

  async #syncOnce(): Promise<void> {
    const { group } = this.#options;
    const db = this.#groups.db;
    const epoch = this.#groups.epoch(group);
    const rows = read(`reading assignment of group ${group}`, () =>
      db
        .prepare(
          'SELECT topic, partition, target, owner FROM el_assignments WHERE grp = ? AND (target = ? OR owner = ?)',
        )
        .all(group, this.memberId, this.memberId),
    ) as unknown as AssignmentRow[];
    const ownedInDb = new Set(
      rows.filter((r) => r.owner === this.memberId).map((r) => partitionKey(r.topic, Number(r.partition))),
    );
    // Partitions we hold locally that the database no longer gives us: we were fenced.
    const lost = [...this.#owned.values()].filter((o) => !ownedInDb.has(o.key));
    if (lost.length > 0) {
      this.#owned.remove(lost);
      this.#options.onLost(lost.map(({ topic, partition }) => ({ topic, partition })));
    }
    const revoke = rows
      .filter((r) => r.owner === this.memberId && r.target !== this.memberId)
      .map((r) => ({ topic: r.topic, partition: Number(r.partition) }));
    if (revoke.length > 0) {
      this.#owned.pause(revoke);
      await this.#options.onRevoked(revoke);
      await this.#groups.tx(`releasing partitions in group ${group}`, () => {
        const release = db.prepare(
          'UPDATE el_assignments SET owner = NULL WHERE grp = ? AND topic = ? AND partition = ? AND owner = ?',
        );
        for (const tp of revoke) release.run(group, tp.topic, tp.partition, this.memberId);
        this.#groups.bumpEpoch(group);
      });
      this.#owned.remove(revoke);
    }
    const claimable = rows.filter((r) => r.target === this.memberId && r.owner === null);
    if (claimable.length > 0) {
      const claimed = await this.#groups.tx(`claiming partitions in group ${group}`, () => {
        const claim = db.prepare(
          `UPDATE el_assignments SET owner = ? WHERE grp = ? AND topic = ? AND partition = ?
           AND owner IS NULL AND target = ?`,
        );
        const alive = db
          .prepare('SELECT 1 FROM el_members WHERE grp = ? AND member_id = ?')
          .get(group, this.memberId);
        if (!alive) return [];
        const got: Owned[] = [];
        const committed = db.prepare(
          'SELECT next_offset FROM el_offsets WHERE grp = ? AND topic = ? AND partition = ?',
        );
        for (const r of claimable) {
          const partition = Number(r.partition);
          if (Number(claim.run(this.memberId, group, r.topic, partition, this.memberId).changes) === 0)
            continue;
          const meta = this.#groups.log.topicMeta(r.topic, true);
          if (meta === undefined) continue;
          const bounds = this.#groups.log.partitionOffsets(meta).find((p) => p.partition === partition);
          if (bounds === undefined) continue;
          const c = committed.get(group, r.topic, partition) as { next_offset: number } | undefined;
          let position =
            c === undefined
              ? this.#options.fromBeginning
                ? bounds.start
                : bounds.end
              : Number(c.next_offset);
          if (position < bounds.start) position = bounds.start;
          if (position > bounds.end) position = bounds.end;
          got.push({ key: partitionKey(r.topic, partition), topic: r.topic, partition, position });
        }
        if (got.length > 0) this.#groups.bumpEpoch(group);
        return got;
      });
      for (const o of claimed) this.#owned.add(o);
      if (claimed.length > 0) {
        this.#options.onAssigned(claimed.map(({ topic, partition }) => ({ topic, partition })));
        this.#groups.notifier.wakeLocal();
      }
    }
    this.#lastEpoch = epoch;
  }

  async poll(options: {
    maxRecords: number;
    maxBytes?: number;
    maxWaitMs: number;
    signal?: AbortSignal;
  }): Promise<FetchedBatch[]> {
    const deadline = Date.now() + options.maxWaitMs;
    const notifier = this.#groups.notifier;
    for (;;) {
      const seq = notifier.seq;
      const out = this.#fetchOwned(options.maxRecords, options.maxBytes);
      if (out.length > 0 || this.#closed || options.signal?.aborted) return out;
      const remaining = deadline - Date.now();
      if (remaining <= 0) return out;
      await notifier.wait(seq, remaining, options.signal);
    }
  }

  #fetchOwned(maxRecords: number, maxBytes: number | undefined): FetchedBatch[] {
    const out: FetchedBatch[] = [];
    let budget = maxRecords;
    for (const o of this.#owned.inTurn()) {
      if (budget <= 0) break;
      let records: FetchedBatch['records'];
      try {
        records = this.#groups.log.fetch(o.topic, o.partition, o.position, {
          maxRecords: budget,
          ...(maxBytes === undefined ? {} : { maxBytes }),
        });
      } catch (err) {
        if (err instanceof EventlineError && err.code === 'EVENTLINE_ERR_UNKNOWN_TOPIC') continue;
        throw err;
      }
      if (records.length === 0) continue;
      o.position = records[records.length - 1]!.offset + 1;
      budget -= records.length;
      out.push({ topic: o.topic, partition: o.partition, records, nextOffset: o.position });
    }
    return out;
  }

  async commit(offsets: CommittedOffset[]): Promise<void> {
    if (offsets.length === 0) return;
    const { group } = this.#options;
    await this.#groups.tx(`committing offsets of group ${group}`, () => {
      const db = this.#groups.db;
      const owns = db.prepare(
        'SELECT 1 FROM el_assignments WHERE grp = ? AND topic = ? AND partition = ? AND owner = ?',
      );
      for (const o of offsets) {
        if (!owns.get(group, o.topic, o.partition, this.memberId)) {
          fail(
            'EVENTLINE_ERR_FENCED',
            `member ${this.memberId} no longer owns ${o.topic}/${o.partition} in group ${group}; its commit was refused`,
            { details: { group, topic: o.topic, partition: o.partition } },
          );
        }
      }
      upsertOffsets(db, group, offsets, Date.now());
    });
  }

  seek(tp: TopicPartition, offset: number): void {
    this.#owned.require(tp, 'seek').position = offset;
    this.#groups.notifier.wakeLocal();
  }

  pause(tps: TopicPartition[]): void {
    this.#owned.pause(tps);
  }

  resume(tps: TopicPartition[]): void {
    this.#owned.resume(tps);
    this.#groups.notifier.wakeLocal();
  }

  assignment(): TopicPartition[] {
    return this.#owned.list();
  }

  async leave(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#stopLoop.abort();
    await this.#loop;
    const { group } = this.#options;
    if (this.#joined) {
      await this.#groups.tx(`leaving group ${group}`, () => {
        const db = this.#groups.db;
        db.prepare('DELETE FROM el_members WHERE grp = ? AND member_id = ?').run(group, this.memberId);
        db.prepare('UPDATE el_assignments SET owner = NULL WHERE grp = ? AND owner = ?').run(
          group,
          this.memberId,
        );
        this.#groups.rebalance(group);
        this.#groups.bumpEpoch(group);
      });
    }
    this.#owned.clear();
    this.#groups.notifier.wakeLocal();
  }
}

/** Writes committed offsets (with their metadata) of a group; a reset and a member's commit alike. */
function upsertOffsets(
  db: DatabaseSync,
  group: string,
  offsets: readonly CommittedOffset[],
  now: number,
): void {
  const upsert = db.prepare(
    `INSERT INTO el_offsets (grp, topic, partition, next_offset, committed_at, metadata) VALUES (?, ?, ?, ?, ?, ?)
     ON CONFLICT (grp, topic, partition) DO UPDATE SET next_offset = excluded.next_offset,
       committed_at = excluded.committed_at, metadata = excluded.metadata`,
  );
  for (const o of offsets) upsert.run(group, o.topic, o.partition, o.offset, now, o.metadata ?? null);
}

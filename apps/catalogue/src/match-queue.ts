/**
 * The matching service's queue, in its own database: a request waits until another user asks for
 * the same topic and difficulty, then both are paired, oldest waiting request first. Pairing is one
 * transaction, serialised per topic and difficulty (an advisory lock on PostgreSQL; SQLite runs one
 * write transaction at a time), so instances of the service sharing one database never pair a
 * request twice, and never leave two requests waiting that match each other. A partner is claimed
 * only while it is still queued, so a request cancelled meanwhile is never paired.
 */
import { randomUUID } from 'node:crypto';
import { HttpError, type ServiceDatabase, type Sql } from '../../shared/index.ts';

export type RequestStatus = 'queued' | 'matched' | 'cancelled';

export interface MatchRequest {
  id: string;
  user: string;
  topic: string;
  difficulty: string;
  status: RequestStatus;
  /** The match, once paired. */
  matchId: string | null;
  /** ISO 8601. */
  createdAt: string;
}

export interface Match {
  id: string;
  topic: string;
  difficulty: string;
  /** The user who waited first, then the one who completed the pair. */
  users: [string, string];
  requests: [string, string];
  /** ISO 8601. */
  createdAt: string;
}

export type EnqueueResult =
  | { status: 'matched'; request: MatchRequest; match: Match }
  | { status: 'queued'; request: MatchRequest };

interface RequestRow {
  [column: string]: unknown;
  id: string;
  user_id: string;
  topic: string;
  difficulty: string;
  status: RequestStatus;
  match_id: string | null;
  created_at: string;
}

interface MatchRow {
  [column: string]: unknown;
  id: string;
  topic: string;
  difficulty: string;
  user_a: string;
  user_b: string;
  request_a: string;
  request_b: string;
  created_at: string;
}

/** Creates the queue's tables and indexes if missing. */
export async function migrate(db: ServiceDatabase): Promise<void> {
  await db.exec(`
    CREATE TABLE IF NOT EXISTS match_requests (
      id TEXT PRIMARY KEY,
      user_id TEXT NOT NULL,
      topic TEXT NOT NULL,
      difficulty TEXT NOT NULL,
      status TEXT NOT NULL,
      match_id TEXT,
      created_at TEXT NOT NULL
    );
    CREATE INDEX IF NOT EXISTS match_requests_waiting ON match_requests (topic, difficulty, created_at)
      WHERE status = 'queued';
    CREATE UNIQUE INDEX IF NOT EXISTS match_requests_one_per_user ON match_requests (user_id)
      WHERE status = 'queued';
    CREATE TABLE IF NOT EXISTS matches (
      id TEXT PRIMARY KEY,
      topic TEXT NOT NULL,
      difficulty TEXT NOT NULL,
      user_a TEXT NOT NULL,
      user_b TEXT NOT NULL,
      request_a TEXT NOT NULL,
      request_b TEXT NOT NULL,
      created_at TEXT NOT NULL
    );
  `);
}

function toRequest(r: RequestRow): MatchRequest {
  return {
    id: r.id,
    user: r.user_id,
    topic: r.topic,
    difficulty: r.difficulty,
    status: r.status,
    matchId: r.match_id,
    createdAt: r.created_at,
  };
}

function toMatch(r: MatchRow): Match {
  return {
    id: r.id,
    topic: r.topic,
    difficulty: r.difficulty,
    users: [r.user_a, r.user_b],
    requests: [r.request_a, r.request_b],
    createdAt: r.created_at,
  };
}

/**
 * Pairs the request with the oldest one waiting for the same topic and difficulty from another
 * user, or queues it. A user may wait in one queue at a time: a second request while the first
 * waits is a 409 naming it.
 */
export async function enqueue(
  db: ServiceDatabase,
  input: { user: string; topic: string; difficulty: string },
): Promise<EnqueueResult> {
  try {
    return await db.transaction(async (tx) => {
      if (db.kind === 'postgres') {
        // One pairing per topic and difficulty at a time: without it, two requests arriving together
        // could each miss the other (neither committed yet) and both wait, though they match.
        await tx.query('SELECT pg_advisory_xact_lock(hashtext(?))', [`${input.topic}\n${input.difficulty}`]);
      }
      const [waiting] = await tx.query<RequestRow>(
        "SELECT * FROM match_requests WHERE user_id = ? AND status = 'queued'",
        [input.user],
      );
      if (waiting) throw alreadyWaiting(toRequest(waiting));
      const now = new Date().toISOString();
      const id = randomUUID();
      const matchId = randomUUID();
      let partner: RequestRow | undefined;
      for (;;) {
        [partner] = await tx.query<RequestRow>(
          `SELECT * FROM match_requests
           WHERE topic = ? AND difficulty = ? AND status = 'queued' AND user_id <> ?
           ORDER BY created_at, id LIMIT 1`,
          [input.topic, input.difficulty, input.user],
        );
        if (partner === undefined) break;
        // Claim it only while it still waits: a cancel does not take the lock above, and on
        // PostgreSQL may commit between the SELECT and here. Then try the next one.
        const claimed = await tx.run(
          "UPDATE match_requests SET status = 'matched', match_id = ? WHERE id = ? AND status = 'queued'",
          [matchId, partner.id],
        );
        if (claimed > 0) break;
      }
      if (partner === undefined) {
        await tx.run(
          `INSERT INTO match_requests (id, user_id, topic, difficulty, status, match_id, created_at)
           VALUES (?, ?, ?, ?, 'queued', NULL, ?)`,
          [id, input.user, input.topic, input.difficulty, now],
        );
        return {
          status: 'queued',
          request: { id, ...input, status: 'queued', matchId: null, createdAt: now },
        };
      }
      const match: Match = {
        id: matchId,
        topic: input.topic,
        difficulty: input.difficulty,
        users: [partner.user_id, input.user],
        requests: [partner.id, id],
        createdAt: now,
      };
      await tx.run(
        `INSERT INTO matches (id, topic, difficulty, user_a, user_b, request_a, request_b, created_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
        [match.id, match.topic, match.difficulty, ...match.users, ...match.requests, now],
      );
      await tx.run(
        `INSERT INTO match_requests (id, user_id, topic, difficulty, status, match_id, created_at)
         VALUES (?, ?, ?, ?, 'matched', ?, ?)`,
        [id, input.user, input.topic, input.difficulty, match.id, now],
      );
      return {
        status: 'matched',
        request: { id, ...input, status: 'matched', matchId: match.id, createdAt: now },
        match,
      };
    });
  } catch (err) {
    // Another instance queued a request for this user in the meantime: the unique index said no.
    if (!(err instanceof HttpError) && /unique|duplicate key/i.test((err as Error).message)) {
      const waiting = await waitingRequest(db, input.user);
      if (waiting) throw alreadyWaiting(waiting);
    }
    throw err;
  }
}

function alreadyWaiting(r: MatchRequest): HttpError {
  return new HttpError(
    409,
    `user ${JSON.stringify(r.user)} is already waiting (request ${r.id}, ${r.topic} / ${r.difficulty}); cancel it with DELETE /api/match/requests/${r.id} first`,
    { field: 'user', code: 'ALREADY_WAITING' },
  );
}

async function waitingRequest(sql: Sql, user: string): Promise<MatchRequest | undefined> {
  const [row] = await sql.query<RequestRow>(
    "SELECT * FROM match_requests WHERE user_id = ? AND status = 'queued'",
    [user],
  );
  return row && toRequest(row);
}

/** A request and, once paired, its match. */
export async function getRequest(
  sql: Sql,
  id: string,
): Promise<{ request: MatchRequest; match: Match | undefined } | undefined> {
  const [row] = await sql.query<RequestRow>('SELECT * FROM match_requests WHERE id = ?', [id]);
  if (row === undefined) return undefined;
  const request = toRequest(row);
  if (request.matchId === null) return { request, match: undefined };
  const [m] = await sql.query<MatchRow>('SELECT * FROM matches WHERE id = ?', [request.matchId]);
  return { request, match: m && toMatch(m) };
}

/** Takes a waiting request out of the queue: 'cancelled', or what stopped it. */
export async function cancelRequest(
  db: ServiceDatabase,
  id: string,
): Promise<'cancelled' | 'missing' | 'matched'> {
  return db.transaction(async (tx) => {
    const changed = await tx.run(
      "UPDATE match_requests SET status = 'cancelled' WHERE id = ? AND status = 'queued'",
      [id],
    );
    if (changed > 0) return 'cancelled';
    const [row] = await tx.query<{ status: RequestStatus }>(
      'SELECT status FROM match_requests WHERE id = ?',
      [id],
    );
    if (row === undefined) return 'missing';
    return row.status === 'matched' ? 'matched' : 'cancelled';
  });
}

/** Requests waiting for a partner. */
export async function queueLength(sql: Sql): Promise<number> {
  const [row] = await sql.query<{ n: number | string }>(
    "SELECT CAST(count(*) AS INTEGER) AS n FROM match_requests WHERE status = 'queued'",
  );
  return Number(row?.n ?? 0);
}

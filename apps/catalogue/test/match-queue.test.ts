/**
 * The match queue on PostgreSQL, where a cancel and a pairing can meet on the same request: a
 * cancel takes no advisory lock, so it may commit while a pairing has already picked the request.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { openDatabase } from '../../shared/index.ts';
import { waitFor } from '../../shared/test/helpers.ts';
import { createTempDatabase } from '../../shared/test/pg.ts';
import { enqueue, getRequest, migrate, queueLength } from '../src/match-queue.ts';

test('a request cancelled while a newcomer pairs with it stays cancelled, and the newcomer waits (PostgreSQL)', async () => {
  const pg = await createTempDatabase('catalogue_mq');
  const db = await openDatabase('matching-service', pg.url);
  try {
    await migrate(db);
    const alice = await enqueue(db, { user: 'alice', topic: 'Arrays', difficulty: 'easy' });
    assert.equal(alice.status, 'queued');
    const id = alice.request.id;

    // A cancel in flight: cancelRequest's statement, its transaction held open until the pairing
    // below has read alice as queued and waits for her row.
    const updated = Promise.withResolvers<void>();
    const release = Promise.withResolvers<void>();
    const cancel = db.transaction(async (tx) => {
      const changed = await tx.run(
        "UPDATE match_requests SET status = 'cancelled' WHERE id = ? AND status = 'queued'",
        [id],
      );
      updated.resolve();
      await release.promise;
      return changed;
    });
    await updated.promise;
    const bob = enqueue(db, { user: 'bob', topic: 'Arrays', difficulty: 'easy' });
    try {
      await waitFor('the pairing to wait for the row the cancel holds', async () => {
        const [row] = await db.query<{ n: number | string }>(
          `SELECT count(*) AS n FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
           WHERE NOT l.granted AND a.datname = current_database()`,
        );
        return Number(row?.n) > 0;
      });
    } finally {
      release.resolve();
    }
    assert.equal(await cancel, 1, 'the cancel succeeded (a 204)');

    const result = await bob;
    assert.equal(result.status, 'queued', 'alice had cancelled: bob waits instead');
    assert.equal((await getRequest(db, id))?.request.status, 'cancelled');
    assert.equal(await queueLength(db), 1);
    const [matches] = await db.query<{ n: number | string }>('SELECT count(*) AS n FROM matches');
    assert.equal(Number(matches?.n), 0);

    // The next one pairs with bob, not with the cancelled request.
    const carol = await enqueue(db, { user: 'carol', topic: 'Arrays', difficulty: 'easy' });
    assert.equal(carol.status, 'matched');
    assert.deepEqual(carol.status === 'matched' && carol.match.users, ['bob', 'carol']);
  } finally {
    await db.close();
    await pg.drop();
  }
});

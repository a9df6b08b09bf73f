import assert from 'node:assert/strict';
import { copyFileSync, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { after, before, describe, test } from 'node:test';
import { connect, type Eventline } from '../../src/client.ts';
import { bytes } from '../../src/codec.ts';
import { type EventlineError, isEventlineError } from '../../src/errors.ts';
import { silentLogger } from '../../src/observability/logger.ts';
import { createView, type ViewChange, type ViewErrorInfo } from '../../src/patterns/view.ts';
import { defineTopic, type Topic, type TopicOptions } from '../../src/topic.ts';
import { gatedJson } from '../conformance/cases/views.ts';
import { unique, waitFor } from '../helpers.ts';

type User = { id: string; name: string };

let bus: Eventline;
let dir: string;

before(async () => {
  bus = await connect('sqlite::memory:', { logger: silentLogger });
  dir = mkdtempSync(join(tmpdir(), 'eventline-view-test-'));
});
after(async () => {
  await bus.close();
  rmSync(dir, { recursive: true, force: true });
});

async function topic<V = User, K = string>(options: TopicOptions<V, K> = {}): Promise<Topic<V, K>> {
  const t = defineTopic<V, K>(unique('users'), { cleanupPolicy: 'compact', ...options });
  await bus.ensureTopics([t]);
  return t;
}

const users = (): Promise<Topic<User>> => topic<User>({ key: (u) => u.id });

function isCode(code: string): (err: unknown) => boolean {
  return (err) => isEventlineError(err) && (err as EventlineError).code === code;
}

describe('readiness', () => {
  test('ready resolves once the records present at start are applied, not before', async () => {
    const gated = gatedJson<User>();
    const t = await topic<User>({ key: (u) => u.id, value: gated.codec });
    await bus.publishBatch(
      t,
      ['a', 'b', 'c'].map((id) => ({ value: { id, name: id.toUpperCase() } })),
    );
    const view = createView(bus, t);
    let readyAt: number | undefined;
    const ready = view.ready().then(() => {
      readyAt = view.stats().applied;
    });
    // Decoding is held: nothing can be applied, so the view must not call itself ready.
    await assert.rejects(view.ready({ timeout: 50 }), isCode('EVENTLINE_ERR_TIMEOUT'));
    assert.equal(view.isReady, false);
    assert.equal(view.size, 0);
    gated.open();
    await ready;
    assert.equal(readyAt, 3);
    assert.equal(view.isReady, true);
    assert.deepEqual([...view.keys()].sort(), ['a', 'b', 'c']);
    await view.close();
  });

  test('an empty topic is ready at once; ready rejects on a signal, and with CLOSED when closed first', async () => {
    const empty = createView(bus, await users());
    await empty.ready();
    assert.equal(empty.staleness(), undefined);
    assert.equal(empty.stats().stalenessMs, undefined);
    await empty.close();

    const gated = gatedJson<User>();
    const t = await topic<User>({ key: (u) => u.id, value: gated.codec });
    await bus.publish(t, { id: 'a', name: 'A' });
    const view = createView(bus, t);
    const controller = new AbortController();
    const aborted = view.ready({ signal: controller.signal });
    controller.abort(new Error('gave up'));
    await assert.rejects(aborted, /gave up/);
    const waiting = view.getOrLoad('a');
    const pending = view.ready();
    await view.close();
    await assert.rejects(pending, isCode('EVENTLINE_ERR_CLOSED'));
    await assert.rejects(waiting, isCode('EVENTLINE_ERR_CLOSED'));
    await view.close(); // idempotent
  });

  test('an unknown topic rejects ready with EVENTLINE_ERR_UNKNOWN_TOPIC', async () => {
    const view = createView(bus, unique('missing'));
    await assert.rejects(view.ready(), isCode('EVENTLINE_ERR_UNKNOWN_TOPIC'));
    await view.close();
  });

  test('getOrLoad without a fallback waits for ready, then reads the view', async () => {
    const gated = gatedJson<User>();
    const t = await topic<User>({ key: (u) => u.id, value: gated.codec });
    await bus.publish(t, { id: 'a', name: 'A' });
    const view = createView(bus, t);
    const loaded = view.getOrLoad('a');
    gated.open();
    assert.deepEqual(await loaded, { id: 'a', name: 'A' });
    assert.equal(view.stats().fallbackUses, 0);
    await view.close();
  });

  test('bad options are refused at once', async () => {
    const t = await users();
    assert.throws(
      () => createView(bus, t, { fallback: 'x' as never }),
      isCode('EVENTLINE_ERR_INVALID_ARGUMENT'),
    );
    assert.throws(
      () => createView(bus, t, { persist: { path: '' } }),
      isCode('EVENTLINE_ERR_INVALID_ARGUMENT'),
    );
    assert.throws(
      () => createView(bus, t, { persist: { path: join(dir, 'x.db'), interval: 'soon' as never } }),
      isCode('EVENTLINE_ERR_INVALID_ARGUMENT'),
    );
    assert.throws(() => createView(bus, 'bad name!'), isCode('EVENTLINE_ERR_INVALID_TOPIC_NAME'));
  });
});

describe('contents', () => {
  test('iteration, has, size, and values of the newest record per key', async () => {
    const t = await users();
    await bus.publishBatch(t, [
      { value: { id: 'a', name: 'one' } },
      { value: { id: 'b', name: 'two' } },
      { value: { id: 'a', name: 'three' } },
    ]);
    const view = createView(bus, t);
    await view.ready();
    assert.deepEqual(
      [...view.entries()],
      [
        ['a', { id: 'a', name: 'three' }],
        ['b', { id: 'b', name: 'two' }],
      ],
    );
    assert.deepEqual([...view], [...view.entries()]);
    assert.deepEqual(
      [...view.values()].map((u) => u.name),
      ['three', 'two'],
    );
    assert.equal(view.has('a'), true);
    assert.equal(view.has('zz'), false);
    assert.equal(view.get('zz'), undefined);
    assert.equal(view.size, 2);
    await view.close();
  });

  test('staleness is the age of the newest applied record', async () => {
    const t = await users();
    const old = Date.now() - 3_600_000;
    await bus.publish(t, { id: 'a', name: 'A' }, { timestamp: old });
    await bus.publish(t, { id: 'b', name: 'B' }, { timestamp: old - 1000 });
    const view = createView(bus, t);
    await view.ready();
    assert.equal(view.newestTimestamp, old);
    assert.ok(view.staleness()! >= 3_600_000);
    assert.ok(view.stats().stalenessMs! >= 3_600_000);
    await view.close();
  });

  test('keyOf keys records without a key by a field of the value', async () => {
    const t = await topic<User>({ cleanupPolicy: 'delete' });
    await bus.publish(t, { id: 'u1', name: 'first' });
    await bus.publish(t, { id: 'u2', name: 'second' });
    await bus.publish(t, { id: 'u1', name: 'third' });
    const errors: ViewErrorInfo[] = [];
    const byId = createView(bus, t, { keyOf: (u) => u.id });
    const plain = createView(bus, t, { onError: (_e, info) => errors.push(info) });
    await Promise.all([byId.ready(), plain.ready()]);
    assert.deepEqual(Object.fromEntries(byId), {
      u1: { id: 'u1', name: 'third' },
      u2: { id: 'u2', name: 'second' },
    });
    // Without keyOf a keyless record has nowhere to go: counted and reported, never fatal.
    assert.equal(plain.size, 0);
    assert.equal(plain.stats().decodeErrors, 3);
    assert.deepEqual(
      errors.map((e) => [e.offset, e.poison]),
      [
        [0, true],
        [1, true],
        [2, true],
      ],
    );
    await Promise.all([byId.close(), plain.close()]);
  });

  test('byte keys are found by content, not identity', async () => {
    const t = await topic<string, Buffer>({ keyCodec: bytes() });
    await bus.publish(t, 'x', { key: Buffer.from([1, 2, 3]) });
    await bus.publish(t, 'y', { key: Buffer.from([1, 2, 3]) });
    const view = createView(bus, t);
    await view.ready();
    assert.equal(view.size, 1);
    assert.equal(view.get(Buffer.from([1, 2, 3])), 'y');
    assert.equal(view.has(Buffer.from([1, 2])), false);
    await view.close();
  });

  test('a listener that throws is reported and does not stop the view', async () => {
    const t = await users();
    const errors: Error[] = [];
    const seen: ViewChange<User>[] = [];
    const view = createView(bus, t, {
      onError: (e) => errors.push(e),
      onChange: () => {
        throw new Error('listener broke');
      },
    });
    view.onChange((c) => seen.push(c));
    await view.ready();
    await bus.publish(t, { id: 'a', name: 'A' });
    await bus.publish(t, { id: 'b', name: 'B' });
    await waitFor('both records', () => view.size === 2);
    assert.deepEqual(
      seen.map((c) => c.key),
      ['a', 'b'],
    );
    assert.deepEqual(
      errors.map((e) => e.message),
      ['listener broke', 'listener broke'],
    );
    await view.close();
  });

  test('records on a partition added while following are applied', async () => {
    const t = await topic<User>({ key: (u) => u.id, partitions: 1 });
    const view = createView(bus, t);
    await view.ready();
    await bus.engine.alterTopic(t.name, { partitions: 2 });
    await bus.publish(t, { id: 'p1', name: 'on the new partition' }, { partition: 1 });
    await waitFor('the record on partition 1', () => view.has('p1'), 30_000);
    assert.equal(view.stats().applied, 1);
    await view.close();
  });
});

describe('persistence', () => {
  test('a snapshot restores the entries, and the view then reads only newer records', async () => {
    const t = await users();
    const path = join(dir, `${t.name}.db`);
    await bus.publishBatch(
      t,
      Array.from({ length: 50 }, (_, i) => ({ value: { id: `u${i}`, name: `n${i}` } })),
    );
    const first = createView(bus, t, { persist: { path } });
    await first.ready();
    await bus.publish(t, { id: 'u0', name: 'changed while running' });
    await waitFor('the live change', () => first.get('u0')?.name === 'changed while running');
    await first.close();

    await bus.publish(t, null, { key: 'u1' });
    const changes: ViewChange<User>[] = [];
    const second = createView(bus, t, { persist: { path } });
    second.onChange((c) => changes.push(c));
    await second.ready();
    const { stalenessMs, ...stats } = second.stats();
    assert.deepEqual(stats, {
      size: 49,
      fallbackUses: 0,
      applied: 1,
      restored: 50,
      decodeErrors: 0,
      ready: true,
    });
    assert.equal(typeof stalenessMs, 'number');
    assert.equal(second.get('u0')?.name, 'changed while running');
    assert.equal(second.has('u1'), false);
    // Listeners registered right after creation hear about restored entries too.
    assert.equal(changes.length, 51);
    await second.close();

    // Closing wrote the tombstone: a third start restores 49 and applies nothing.
    const third = createView(bus, t, { persist: { path } });
    await third.ready();
    assert.deepEqual([third.stats().restored, third.stats().applied, third.size], [49, 0, 49]);
    await third.close();
  });

  test('flush writes pending changes while the view runs; a crash keeps them', async () => {
    const t = await users();
    const path = join(dir, `${t.name}.db`);
    const view = createView(bus, t, { persist: { path, interval: '1h' } });
    await view.ready();
    await bus.publish(t, { id: 'a', name: 'A' });
    await waitFor('a', () => view.has('a'));
    await view.flush();
    // The files as a crash right now would leave them (the view holds the snapshot exclusively).
    const copy = join(dir, `${t.name}-crashed.db`);
    for (const suffix of ['', '-wal']) {
      if (existsSync(path + suffix)) copyFileSync(path + suffix, copy + suffix);
    }
    await view.close();
    const db = new DatabaseSync(copy);
    const rows = db.prepare('SELECT id FROM entries').all() as { id: string }[];
    const offsets = db.prepare('SELECT partition, next FROM offsets').all() as {
      partition: number;
      next: number;
    }[];
    db.close();
    assert.deepEqual(
      rows.map((r) => r.id),
      ['a'],
    );
    assert.deepEqual(
      offsets.map((o) => ({ ...o })),
      [{ partition: 0, next: 1 }],
    );
  });

  test('a snapshot file held by another view is waited for, then used', async () => {
    const t = await users();
    const path = join(dir, `${t.name}.db`);
    await bus.publish(t, { id: 'a', name: 'A' });
    const first = createView(bus, t, { persist: { path } });
    await first.ready();
    const errors: Error[] = [];
    const second = createView(bus, t, { persist: { path }, onError: (e) => errors.push(e) });
    await waitFor('the busy snapshot to be reported', () => errors.length > 0);
    assert.ok(isEventlineError(errors[0], 'EVENTLINE_ERR_ENGINE_BUSY'), String(errors[0]));
    assert.equal(second.isReady, false);
    await first.close();
    await second.ready();
    assert.equal(second.stats().restored, 1);
    await second.close();
  });

  test('a snapshot of another topic is refused', async () => {
    const [a, b] = [await users(), await users()];
    const path = join(dir, `${a.name}.db`);
    const first = createView(bus, a, { persist: { path } });
    await first.ready();
    await first.close();
    const wrong = createView(bus, b, { persist: { path } });
    await assert.rejects(wrong.ready(), (err) => {
      assert.ok(isEventlineError(err, 'EVENTLINE_ERR_INVALID_ARGUMENT'));
      assert.match(err.message, new RegExp(`belongs to topic ${a.name}`));
      return true;
    });
    await wrong.close();
  });

  test('a snapshot ahead of the log (the topic was recreated) is dropped and rebuilt', async () => {
    const t = await users();
    const path = join(dir, `${t.name}.db`);
    await bus.publishBatch(
      t,
      ['a', 'b', 'c'].map((id) => ({ value: { id, name: id } })),
    );
    const first = createView(bus, t, { persist: { path } });
    await first.ready();
    await first.close();
    await bus.admin.deleteTopic(t.name);
    await bus.ensureTopics([t]);
    await bus.publish(t, { id: 'z', name: 'z' });
    const errors: Error[] = [];
    const view = createView(bus, t, { persist: { path }, onError: (e) => errors.push(e) });
    await view.ready();
    assert.deepEqual([...view.keys()], ['z']);
    assert.equal(view.stats().restored, 0);
    assert.match(errors[0]?.message ?? '', /outside the log/);
    await view.close();
  });
});

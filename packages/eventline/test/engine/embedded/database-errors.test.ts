import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { DatabaseSync } from 'node:sqlite';
import { after, test } from 'node:test';
import { connect } from '../../../src/client.ts';
import { isEventlineError } from '../../../src/errors.ts';
import { silentLogger } from '../../../src/observability/logger.ts';
import { defineTopic } from '../../../src/topic.ts';

const dir = mkdtempSync(join(tmpdir(), 'eventline-dberr-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** Starts a process that holds the database lock; resolves once it holds it. */
async function holdLock(path: string, mode: 'write' | 'exclusive') {
  const child = spawn(
    process.execPath,
    [new URL('./lock-holder.ts', import.meta.url).pathname, JSON.stringify({ path, mode })],
    {
      stdio: ['pipe', 'pipe', 'inherit'],
    },
  );
  await new Promise<void>((resolve, reject) => {
    createInterface({ input: child.stdout! }).once('line', () => resolve());
    child.once('exit', (code) => reject(new Error(`lock holder exited with ${code}`)));
  });
  const exited = new Promise((r) => child.once('exit', r));
  return {
    release: async () => {
      child.stdin!.end();
      await exited;
    },
  };
}

const topic = defineTopic<{ n: number }>('locked-topic', { partitions: 2 });

test('a database locked by another process gives EVENTLINE_ERR_ENGINE_BUSY without blocking, and loses nothing', async () => {
  const path = join(dir, 'locked.db');
  const bus = await connect(`sqlite:${path}`, { logger: silentLogger, embedded: { lockTimeoutMs: 400 } });
  await bus.ensureTopics([topic]);
  const before = await bus.publishBatch(topic, [{ value: { n: 1 } }, { value: { n: 2 } }]);
  const lock = await holdLock(path, 'write');
  let ticks = 0;
  const ticker = setInterval(() => ticks++, 10);
  const err = await bus.publish(topic, { n: 3 }).catch((e: unknown) => e);
  clearInterval(ticker);
  assert.ok(isEventlineError(err, 'EVENTLINE_ERR_ENGINE_BUSY'), String(err));
  assert.equal(err.retryable, true);
  assert.match(err.message, /locked by another process/);
  assert.match(err.message, /locked\.db/);
  assert.ok(ticks >= 5, `the event loop kept running while waiting for the lock (${ticks} ticks)`);
  // Reads do not need the write lock.
  const read = await bus.reader.read(topic, { partition: before[0]!.partition, from: 'earliest' });
  assert.ok(read.length >= 1);
  await lock.release();
  const later = await bus.publish(topic, { n: 4 });
  assert.ok(later.offset >= 0);
  const all = [0, 1].map((p) => bus.reader.read(topic, { partition: p, from: 'earliest' }));
  const values = (await Promise.all(all))
    .flat()
    .map((m) => m.value.n)
    .sort();
  assert.deepEqual(values, [1, 2, 4], 'the records accepted before are there; the refused one is not');
  await bus.close();
});

test('opening a database held in exclusive mode by another process fails clearly', async () => {
  const path = join(dir, 'exclusive.db');
  const setup = await connect(`sqlite:${path}`, { logger: silentLogger });
  await setup.ensureTopics([topic]);
  await setup.publish(topic, { n: 1 });
  await setup.close();
  const lock = await holdLock(path, 'exclusive');
  try {
    const err = await connect(`sqlite:${path}`, {
      logger: silentLogger,
      embedded: { lockTimeoutMs: 300 },
    }).catch((e: unknown) => e);
    assert.ok(isEventlineError(err, 'EVENTLINE_ERR_ENGINE_BUSY'), String(err));
    assert.match(err.message, /exclusive\.db/);
  } finally {
    await lock.release();
  }
  const bus = await connect(`sqlite:${path}`, { logger: silentLogger });
  assert.equal(
    (await bus.reader.read(topic, { partition: 0, from: 'earliest' })).length +
      (await bus.reader.read(topic, { partition: 1, from: 'earliest' })).length,
    1,
  );
  await bus.close();
});

test('a file that is not a database is reported as corrupt and left byte for byte as it was', async () => {
  const path = join(dir, 'garbage.db');
  const garbage = Buffer.alloc(64 * 1024);
  for (let i = 0; i < garbage.length; i++) garbage[i] = (i * 31 + 7) & 0xff;
  writeFileSync(path, garbage);
  const err = await connect(`sqlite:${path}`, { logger: silentLogger }).catch((e: unknown) => e);
  assert.ok(isEventlineError(err, 'EVENTLINE_ERR_DATABASE_CORRUPT'), String(err));
  assert.equal(err.retryable, false);
  assert.match(err.message, /garbage\.db/);
  assert.match(err.message, /left untouched/);
  assert.deepEqual(readFileSync(path), garbage, 'the file was not modified');
});

test('a damaged page fails reads of its partition clearly; other partitions stay readable', async () => {
  const path = join(dir, 'damaged.db');
  const bus = await connect(`sqlite:${path}`, { logger: silentLogger });
  await bus.ensureTopics([topic]);
  await bus.publishBatch(
    topic,
    Array.from({ length: 200 }, (_, n) => ({ value: { n }, partition: n % 2 })),
  );
  await bus.close();
  // Find the first page of partition 0's table and overwrite it.
  const inspect = new DatabaseSync(path, { readOnly: true });
  const { rootpage } = inspect
    .prepare(
      "SELECT rootpage FROM sqlite_schema WHERE name = (SELECT 'el_log_' || id || '_0' FROM el_topics WHERE name = ?)",
    )
    .get(topic.name) as { rootpage: number };
  const { page_size } = inspect.prepare('PRAGMA page_size').get() as { page_size: number };
  inspect.close();
  const fd = openSync(path, 'r+');
  writeSync(fd, Buffer.alloc(page_size, 0xa5), 0, page_size, (Number(rootpage) - 1) * Number(page_size));
  closeSync(fd);

  const reopened = await connect(`sqlite:${path}`, { logger: silentLogger });
  const err = await reopened.reader.read(topic, { partition: 0, from: 'earliest' }).catch((e: unknown) => e);
  assert.ok(isEventlineError(err, 'EVENTLINE_ERR_DATABASE_CORRUPT'), String(err));
  assert.match(err.message, /locked-topic\/0/);
  const other = await reopened.reader.read(topic, { partition: 1, from: 'earliest', max: 1000 });
  assert.deepEqual(
    other.map((m) => m.value.n),
    Array.from({ length: 100 }, (_, i) => i * 2 + 1),
  );
  await reopened.close();
});

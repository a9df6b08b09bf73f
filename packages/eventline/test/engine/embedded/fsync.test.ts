import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { test } from 'node:test';
import { connect } from '../../../src/client.ts';
import { silentLogger } from '../../../src/observability/logger.ts';
import { defineTopic } from '../../../src/topic.ts';

const CLIENT = new URL('../../../src/client.ts', import.meta.url).href;

test('a topic declared fsync: false loses nothing when the process is killed; its setting is kept', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'eventline-fsync-'));
  const url = `sqlite:${join(dir, 'events.db')}`;
  try {
    // A child publishes to a lazy and an ordinary topic, in turns, then says so and is killed.
    const script = `
      const { connect } = await import(${JSON.stringify(CLIENT)});
      const bus = await connect(${JSON.stringify(url)});
      const { defineTopic } = await import(${JSON.stringify(new URL('../../../src/topic.ts', import.meta.url).href)});
      const a = defineTopic('replies', { fsync: false });
      const b = defineTopic('orders');
      await bus.ensureTopics([a, b]);
      for (let i = 0; i < 50; i++) {
        await bus.publish(a, { i });
        await bus.publish(b, { i });
      }
      console.log('published');
      setInterval(() => {}, 1000);
    `;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const [line] = (await once(createInterface({ input: child.stdout! }), 'line')) as [string];
    assert.equal(line, 'published');
    child.kill('SIGKILL');
    await once(child, 'exit');

    const bus = await connect(url, { logger: silentLogger });
    try {
      for (const name of ['replies', 'orders']) {
        const records = await bus.reader.read(defineTopic<{ i: number }>(name), {
          partition: 0,
          from: 'earliest',
        });
        assert.deepEqual(
          records.map((r) => r.value.i),
          Array.from({ length: 50 }, (_, i) => i),
          `${name}: every acknowledged record`,
        );
      }
      assert.equal((await bus.admin.describeTopic('replies')).config.fsync, false);
      assert.equal((await bus.admin.describeTopic('orders')).config.fsync, true);
    } finally {
      await bus.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

/** `startService`: what a start opened is closed, last opened first, on failure and by `close()`. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { startService } from '../service.ts';

test('a start that throws closes what it had opened, last opened first, and rethrows', async () => {
  const closed: string[] = [];
  await assert.rejects(
    startService(async (closer) => {
      closer.add(() => void closed.push('bus'));
      closer.add(async () => {
        closed.push('db');
      });
      throw new Error('the registry cannot be reached');
    }),
    /the registry cannot be reached/,
  );
  assert.deepEqual(closed, ['db', 'bus']);
});

test('close() runs every step once, past a failing one, and rethrows the first failure', async () => {
  const closed: string[] = [];
  const service = await startService(async (closer) => {
    closer.add(() => void closed.push('bus'));
    closer.add(() => {
      throw new Error('db close failed');
    });
    closer.add(() => {
      throw new Error('app close failed');
    });
    return { name: 'svc', url: 'http://127.0.0.1:1' };
  });
  assert.equal(service.name, 'svc');
  const first = service.close();
  assert.equal(service.close(), first, 'a second close() returns the same promise');
  await assert.rejects(first, /app close failed/);
  assert.deepEqual(closed, ['bus'], 'the bus is closed although two steps before it failed');
});

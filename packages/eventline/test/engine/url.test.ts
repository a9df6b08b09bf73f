import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseEngineUrl, redactUrl } from '../../src/engine/url.ts';
import { isEventlineError } from '../../src/errors.ts';

test('sqlite URLs name a file or memory', () => {
  assert.deepEqual(parseEngineUrl('sqlite:.eventline/events.db'), {
    kind: 'sqlite',
    path: '.eventline/events.db',
  });
  assert.deepEqual(parseEngineUrl('sqlite:/var/lib/e.db'), { kind: 'sqlite', path: '/var/lib/e.db' });
  assert.deepEqual(parseEngineUrl('sqlite:///var/lib/e.db'), { kind: 'sqlite', path: '/var/lib/e.db' });
  assert.deepEqual(parseEngineUrl('sqlite::memory:'), { kind: 'sqlite', path: ':memory:' });
});

test('kafka URLs list brokers, optionally with credentials and TLS', () => {
  assert.deepEqual(parseEngineUrl('kafka://127.0.0.1:9092,127.0.0.1:9093'), {
    kind: 'kafka',
    brokers: ['127.0.0.1:9092', '127.0.0.1:9093'],
    tls: false,
  });
  assert.deepEqual(parseEngineUrl('kafkas://app:s%40cret@broker:9093'), {
    kind: 'kafka',
    brokers: ['broker:9093'],
    tls: true,
    username: 'app',
    password: 's@cret',
  });
});

test('bad URLs fail with a clear message that never shows a password', () => {
  for (const bad of ['', 'postgres://x', 'kafka://nohost', 'sqlite:', 'kafka://u:topsecret@host']) {
    assert.throws(
      () => parseEngineUrl(bad),
      (e: unknown) => isEventlineError(e, 'EVENTLINE_ERR_INVALID_URL') && !e.message.includes('topsecret'),
      bad,
    );
  }
  assert.equal(redactUrl('kafka://u:pw@h:1'), 'kafka://u:***@h:1');
  // A password holding a `/` or an `@` that was not percent-encoded is still hidden whole.
  assert.equal(redactUrl('kafka://u:ab/cd@h:1'), 'kafka://u:***@h:1');
  assert.equal(redactUrl('kafka://u:a@b/c@h:1,h:2'), 'kafka://u:***@h:1,h:2');
  assert.throws(
    () => parseEngineUrl('kafka://u:top/secret@h:1'),
    (e: unknown) => isEventlineError(e, 'EVENTLINE_ERR_INVALID_URL') && !e.message.includes('secret'),
  );
});

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { ERROR_CODES, type ErrorCode, EventlineError, isEventlineError } from '../src/errors.ts';

const docs = readFileSync(new URL('../../../docs/errors.md', import.meta.url), 'utf8');

test('every error code is documented with its retryable flag, and the docs list no other code', () => {
  const sections = new Map<string, boolean>();
  for (const m of docs.matchAll(/^### (EVENTLINE_ERR_[A-Z_]+)\n+Retryable: (yes|no)\./gm)) {
    sections.set(m[1]!, m[2] === 'yes');
  }
  const codes = Object.keys(ERROR_CODES) as ErrorCode[];
  assert.deepEqual([...sections.keys()].sort(), [...codes].sort());
  for (const code of codes) assert.equal(sections.get(code), ERROR_CODES[code].retryable, code);
});

test('EventlineError carries code, retryable flag from the table, details and cause', () => {
  const cause = new Error('disk');
  for (const code of Object.keys(ERROR_CODES) as ErrorCode[]) {
    const e = new EventlineError(code, 'm', { cause, details: { topic: 't' } });
    assert.ok(e instanceof Error);
    assert.equal(e.name, 'EventlineError');
    assert.equal(e.code, code);
    assert.equal(e.retryable, ERROR_CODES[code].retryable);
    assert.equal(e.cause, cause);
    assert.deepEqual(e.details, { topic: 't' });
    assert.ok(isEventlineError(e, code));
  }
  assert.equal(new EventlineError('EVENTLINE_ERR_INTERNAL', 'x', { retryable: true }).retryable, true);
  assert.equal(isEventlineError(new Error('x')), false);
});

test('the public error codes all start with EVENTLINE_ERR_', () => {
  for (const code of Object.keys(ERROR_CODES)) assert.match(code, /^EVENTLINE_ERR_[A-Z_]+$/);
});

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isEventlineError } from '../../src/errors.ts';
import { formatDuration, formatSize, parseDuration, parseSize } from '../../src/util/units.ts';

test('durations and sizes parse in the units people write', () => {
  assert.equal(parseDuration(250), 250);
  assert.equal(parseDuration('500ms'), 500);
  assert.equal(parseDuration('30s'), 30_000);
  assert.equal(parseDuration('15m'), 900_000);
  assert.equal(parseDuration('7d'), 604_800_000);
  assert.equal(parseDuration('1.5h'), 5_400_000);
  assert.equal(parseSize('1KiB'), 1024);
  assert.equal(parseSize('1MB'), 1_000_000);
  assert.equal(parseSize('2GiB'), 2 * 1024 ** 3);
  assert.equal(parseSize(42), 42);
});

test('unreadable values name the field and give examples', () => {
  assert.throws(
    () => parseDuration('soon', 'retention'),
    (e: unknown) =>
      isEventlineError(e, 'EVENTLINE_ERR_INVALID_ARGUMENT') && /retention.*"soon".*'7d'/.test(e.message),
  );
  assert.throws(
    () => parseSize(-1, 'limit'),
    (e: unknown) => isEventlineError(e) && /limit/.test(e.message),
  );
});

test('formatting gives back the largest whole unit', () => {
  assert.equal(formatDuration(604_800_000), '1w');
  assert.equal(formatDuration(86_400_000 * 3), '3d');
  assert.equal(formatDuration(1500), '1500ms');
  assert.equal(formatDuration(null), 'forever');
  assert.equal(formatSize(1024 ** 2), '1MiB');
  assert.equal(formatSize(1000), '1000B');
  assert.equal(formatSize(null), 'unlimited');
});

test('approximate durations, for measured times such as lag, keep at most two units', () => {
  const cases: [number, string][] = [
    [0, '0s'],
    [850, '850ms'],
    [4_270, '4.2s'],
    [45_300, '45s'],
    [120_000, '2m'],
    [3_723_456, '1h 2m'],
    [90_061_000, '1d 1h'],
    [1_300_000_000, '2w 1d'],
  ];
  for (const [ms, text] of cases) assert.equal(formatDuration(ms, { approximate: true }), text, `${ms} ms`);
  assert.equal(formatDuration(null, { approximate: true }), 'forever');
});

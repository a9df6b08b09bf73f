/**
 * The Avro schemas: the checked-in types stay in step with the .avsc files, and the topics encode
 * and refuse values as the schemas say.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { connect, generateTypes, isEventlineError } from 'eventline';
import { catalogueTopics } from '../src/events.ts';

const FILES = ['schemas/topics-updated.avsc', 'schemas/difficulties-updated.avsc'];

test('src/schemas.ts is what `eventline schemas codegen` makes of schemas/*.avsc (regenerate it if not)', () => {
  const generated = generateTypes(
    FILES.map((f) => ({ schema: readFileSync(new URL(`../${f}`, import.meta.url), 'utf8') })),
    { header: '' },
  );
  const checkedIn = readFileSync(new URL('../src/schemas.ts', import.meta.url), 'utf8');
  // Everything after the header comment must match.
  assert.equal(checkedIn.slice(checkedIn.indexOf('\n') + 1).trimStart(), generated.trimStart());
});

test('a list event round-trips through its Avro topic; a value missing a field is refused naming it', async () => {
  const bus = await connect('sqlite::memory:');
  try {
    const topics = catalogueTopics({ topics: 'topics.updated', difficulties: 'difficulties.updated' });
    await bus.ensureTopics([topics.topics, topics.difficulties]);
    const timestamp = new Date('2026-01-02T03:04:05.678Z');
    await bus.publish(topics.difficulties, { difficulties: ['easy', 'hard'], timestamp, version: 4 });
    const [record] = await bus.reader.read(topics.difficulties, { partition: 0, from: 'earliest' });
    assert.equal(record!.key, 'difficulties', 'the topic keys every record with the list name');
    assert.deepEqual({ ...record!.value }, { difficulties: ['easy', 'hard'], timestamp, version: 4 });
    await assert.rejects(
      bus.publish(topics.topics, { topics: ['a'], timestamp } as never),
      (err) => isEventlineError(err, 'EVENTLINE_ERR_ENCODE') && /\.version expected long/.test(err.message),
    );
  } finally {
    await bus.close();
  }
});

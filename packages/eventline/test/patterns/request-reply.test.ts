import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, test } from 'node:test';
import { connect, type Eventline } from '../../src/client.ts';
import { bytes, string } from '../../src/codec.ts';
import { EventlineError, isEventlineError } from '../../src/errors.ts';
import { silentLogger } from '../../src/observability/logger.ts';
import {
  createRequester,
  REQUEST_HEADERS,
  type Requester,
  respond,
} from '../../src/patterns/request-reply.ts';
import { defineTopic, type Topic } from '../../src/topic.ts';
import { unique, waitFor } from '../helpers.ts';

interface Quote {
  sku: string;
  qty: number;
}
interface Price {
  sku: string;
  total: number;
}

let bus: Eventline;
let requester: Requester;
let quotes: Topic<Quote>;

beforeEach(async () => {
  bus = await connect('sqlite::memory:', { logger: silentLogger, clientId: 'shop' });
  requester = createRequester(bus);
  quotes = defineTopic<Quote>(unique('quotes'), { partitions: 2, key: (q) => q.sku });
  await bus.ensureTopics([quotes]);
});

afterEach(async () => {
  await requester.close();
  await bus.close();
});

/** Rejects with the error the promise rejects with, or fails when it resolves. */
async function rejection(p: Promise<unknown>): Promise<EventlineError> {
  const outcome = await p.then(
    (v) => ({ resolved: v }),
    (e: unknown) => ({ error: e }),
  );
  assert.ok('error' in outcome, `expected a rejection, got ${JSON.stringify(outcome)}`);
  assert.ok(outcome.error instanceof EventlineError, `expected an EventlineError: ${String(outcome.error)}`);
  return outcome.error;
}

describe('request/reply on the embedded engine', () => {
  test('a round trip carries the payload, key and headers there and the typed reply back', async () => {
    const seen: { key: string | null; headers: Record<string, string>; correlationId: string | undefined }[] =
      [];
    const responder = respond<Quote, Price>(bus, {
      topic: quotes,
      group: unique('pricing'),
      handler: (m, ctx) => {
        seen.push({ key: m.key, headers: { ...m.headers }, correlationId: ctx.correlationId });
        return { sku: m.value.sku, total: m.value.qty * 3 };
      },
    });
    await responder.ready();
    const price = await requester.request<Quote, Price>(
      quotes,
      { sku: 'apple', qty: 4 },
      { timeout: '20s', headers: { 'x-tenant': 't1' } },
    );
    assert.deepEqual(price, { sku: 'apple', total: 12 });
    assert.equal(seen.length, 1);
    assert.equal(seen[0]!.key, 'apple', 'the topic derives the key');
    assert.equal(seen[0]!.headers['x-tenant'], 't1');
    assert.equal(seen[0]!.headers[REQUEST_HEADERS.replyTo], requester.replyTopic);
    assert.equal(seen[0]!.headers[REQUEST_HEADERS.correlationId], seen[0]!.correlationId);
    assert.ok(Number(seen[0]!.headers[REQUEST_HEADERS.deadline]) > Date.now());
    // The reply is a record on the requester's own topic, with the correlation id.
    const [reply] = await bus.reader.read(requester.replyTopic!, { partition: 0, from: 'earliest' });
    assert.equal(reply!.headers[REQUEST_HEADERS.correlationId], seen[0]!.correlationId);
    assert.equal(reply!.headers[REQUEST_HEADERS.status], 'ok');
    assert.deepEqual(requester.stats(), {
      sent: 1,
      replied: 1,
      failed: 0,
      timedOut: 0,
      cancelled: 0,
      lateReplies: 0,
      duplicateReplies: 0,
      pending: 0,
    });
    assert.equal(responder.stats().replied, 1);
    await responder.stop();
  });

  test('a topic given by name carries JSON; a reply codec is used on both sides', async () => {
    const name = unique('echo');
    await bus.admin.createTopic(name);
    const responder = respond<{ text: string }, string>(bus, {
      topic: name,
      group: unique('echo'),
      replyCodec: string(),
      handler: (m) => m.value.text.toUpperCase(),
    });
    await responder.ready();
    const reply = await requester.request<{ text: string }, string>(
      name,
      { text: 'hi' },
      { replyCodec: string() },
    );
    assert.equal(reply, 'HI');
    const [raw] = await bus.reader.read(requester.replyTopic!, { partition: 0, from: 'earliest' });
    assert.equal(raw!.value.toString(), 'HI', 'the reply is a plain string, not JSON');
    await responder.stop();
  });

  test('no reply in time rejects with EVENTLINE_ERR_TIMEOUT naming topic, correlation id and timeout', async () => {
    const err = await rejection(requester.request(quotes, { sku: 'pear', qty: 1 }, { timeout: 50 }));
    assert.equal(err.code, 'EVENTLINE_ERR_TIMEOUT');
    assert.equal(err.retryable, true);
    assert.equal(err.details.topic, quotes.name);
    assert.equal(err.details.timeoutMs, 50);
    const id = err.details.correlationId as string;
    assert.match(id, /^[0-9a-f-]{36}$/);
    assert.ok(err.message.includes(quotes.name) && err.message.includes(id) && err.message.includes('50 ms'));
    // The request itself was published with that correlation id.
    const stored = (
      await Promise.all([0, 1].map((partition) => bus.reader.read(quotes, { partition, from: 'earliest' })))
    ).flat();
    assert.deepEqual(
      stored.map((m) => m.headers[REQUEST_HEADERS.correlationId]),
      [id],
    );
    assert.equal(requester.stats().timedOut, 1);
    assert.equal(requester.stats().pending, 0);
  });

  test('a handler that throws sends a failure reply; the requester rejects with its code and message', async () => {
    const responder = respond<Quote, Price>(bus, {
      topic: quotes,
      group: unique('pricing'),
      handler: (m) => {
        throw Object.assign(new Error(`no stock for ${m.value.sku}`), { code: 'OUT_OF_STOCK' });
      },
    });
    await responder.ready();
    const err = await rejection(requester.request(quotes, { sku: 'kiwi', qty: 9 }, { timeout: '20s' }));
    assert.equal(err.code, 'EVENTLINE_ERR_REMOTE');
    assert.equal(err.retryable, false);
    assert.equal(err.details.code, 'OUT_OF_STOCK');
    assert.equal(err.details.message, 'no stock for kiwi');
    assert.equal(err.details.topic, quotes.name);
    assert.match(err.message, /OUT_OF_STOCK: no stock for kiwi/);
    // An error without a code, and an EventlineError keeping its code and retryable flag.
    const plainTopic = defineTopic<Quote>(unique('plain'));
    await bus.ensureTopics([plainTopic]);
    const plain = respond<Quote, Price>(bus, {
      topic: plainTopic,
      group: unique('plain'),
      handler: () => {
        throw new EventlineError('EVENTLINE_ERR_ENGINE_BUSY', 'the database is busy');
      },
    });
    await plain.ready();
    const busy = await rejection(requester.request(plainTopic, { sku: 'x', qty: 1 }, { timeout: '20s' }));
    assert.equal(busy.details.code, 'EVENTLINE_ERR_ENGINE_BUSY');
    assert.equal(busy.retryable, true, 'the responder error said it was retryable');
    assert.equal(requester.stats().failed, 2);
    assert.equal(responder.stats().failed, 1);
    await responder.stop();
    await plain.stop();
  });

  test('a request its responder cannot decode gets a failure reply with EVENTLINE_ERR_DECODE', async () => {
    const raw = defineTopic(quotes.name, { value: bytes() });
    const responder = respond<Quote, Price>(bus, {
      topic: quotes,
      group: unique('pricing'),
      handler: () => assert.fail('the handler must not see an undecodable request'),
    });
    await responder.ready();
    const err = await rejection(requester.request(raw, Buffer.from('{not json'), { timeout: '20s' }));
    assert.equal(err.code, 'EVENTLINE_ERR_REMOTE');
    assert.equal(err.details.code, 'EVENTLINE_ERR_DECODE');
    await responder.stop();
  });

  test('a reply after the timeout is dropped and counted as late', async () => {
    const timedOut = Promise.withResolvers<void>();
    const responder = respond<Quote, Price>(bus, {
      topic: quotes,
      group: unique('slow'),
      handler: async (m) => {
        await timedOut.promise; // answers only once the requester gave up
        return { sku: m.value.sku, total: 1 };
      },
    });
    await responder.ready();
    const err = await rejection(requester.request(quotes, { sku: 'fig', qty: 1 }, { timeout: 300 }));
    assert.equal(err.code, 'EVENTLINE_ERR_TIMEOUT');
    timedOut.resolve();
    await waitFor('the late reply', () => requester.stats().lateReplies === 1);
    // The handler's signal was aborted at the deadline; the reply was still sent and dropped.
    assert.equal(responder.stats().replied, 1);
    assert.equal(requester.stats().replied, 0);
    await responder.stop();
  });

  test('the first reply wins; later replies to the same request are dropped and counted', async () => {
    // A responder that answers twice, as one does when it crashes between its reply and its commit.
    const sub = bus.subscribe({
      group: unique('twice'),
      topics: [quotes.name],
      fromBeginning: true,
      handler: async (m) => {
        const to = defineTopic(m.headers[REQUEST_HEADERS.replyTo]!, { value: bytes() });
        for (const total of [1, 2]) {
          await bus.publish(to, Buffer.from(JSON.stringify({ sku: 'x', total })), {
            headers: { [REQUEST_HEADERS.correlationId]: m.headers[REQUEST_HEADERS.correlationId]! },
          });
        }
      },
    });
    await sub.ready();
    const price = await requester.request<Quote, Price>(quotes, { sku: 'x', qty: 1 }, { timeout: '20s' });
    assert.equal(price.total, 1);
    await waitFor('the duplicate', () => requester.stats().duplicateReplies === 1);
    assert.equal(requester.stats().replied, 1);
    assert.equal(requester.stats().lateReplies, 0);
    await sub.stop();
  });

  test('two requesters each get only their own replies', async () => {
    const other = createRequester(bus);
    const responder = respond<Quote, Price>(bus, {
      topic: quotes,
      group: unique('pricing'),
      concurrency: 2,
      handler: (m) => ({ sku: m.value.sku, total: m.value.qty }),
    });
    await responder.ready();
    const ask = (r: Requester, who: string) =>
      Promise.all(
        Array.from({ length: 25 }, (_, i) =>
          r.request<Quote, Price>(quotes, { sku: `${who}-${i}`, qty: i }, { timeout: '30s' }),
        ),
      );
    const [mine, theirs] = await Promise.all([ask(requester, 'a'), ask(other, 'b')]);
    assert.deepEqual(
      mine,
      Array.from({ length: 25 }, (_, i) => ({ sku: `a-${i}`, total: i })),
    );
    assert.deepEqual(
      theirs,
      Array.from({ length: 25 }, (_, i) => ({ sku: `b-${i}`, total: i })),
    );
    assert.notEqual(requester.replyTopic, other.replyTopic);
    for (const r of [requester, other]) {
      const [p] = await bus.reader.offsets(r.replyTopic!);
      assert.equal(p!.end, 25, 'each reply topic holds its own 25 replies and no other');
      assert.equal(r.stats().lateReplies + r.stats().duplicateReplies, 0);
    }
    await other.close();
    await responder.stop();
  });

  test('a request past its deadline is skipped by the responder', async () => {
    let calls = 0;
    await bus.publish(
      quotes,
      { sku: 'old', qty: 1 },
      {
        headers: {
          [REQUEST_HEADERS.correlationId]: 'c-1',
          [REQUEST_HEADERS.replyTo]: quotes.name,
          [REQUEST_HEADERS.deadline]: String(Date.now() - 1000),
        },
      },
    );
    const responder = respond<Quote, Price>(bus, {
      topic: quotes,
      group: unique('late'),
      handler: () => {
        calls++;
        return { sku: 'old', total: 0 };
      },
    });
    await waitFor('the expired request', () => responder.stats().expired === 1);
    assert.equal(calls, 0);
    assert.equal(responder.stats().replied, 0);
    await responder.stop();
  });

  test('a reply topic named in no header: replies go to replyTopic, if given', async () => {
    const results = defineTopic<Price>(unique('prices'));
    await bus.ensureTopics([results]);
    const responder = respond<Quote, Price>(bus, {
      topic: quotes,
      group: unique('plain'),
      replyTopic: results.name,
      handler: (m) => ({ sku: m.value.sku, total: 7 }),
    });
    await bus.publish(quotes, { sku: 'plum', qty: 1 });
    await waitFor('the reply', () => responder.stats().replied === 1);
    const [reply] = await bus.reader.read(results, { partition: 0, from: 'earliest' });
    assert.deepEqual(reply!.value, { sku: 'plum', total: 7 });
    await responder.stop();
  });

  test('a signal cancels a request; close rejects the rest and deletes the reply topic', async () => {
    const ac = new AbortController();
    const cancelled = requester.request(quotes, { sku: 'a', qty: 1 }, { signal: ac.signal });
    await waitFor('the request to be sent', () => requester.stats().sent === 1);
    ac.abort(new Error('user left'));
    await assert.rejects(cancelled, /user left/);
    const waiting = requester.request(quotes, { sku: 'b', qty: 1 });
    await waitFor('the second request to be sent', () => requester.stats().sent === 2);
    const topic = requester.replyTopic!;
    assert.ok((await bus.admin.listTopics()).includes(topic));
    await requester.close();
    const err = await rejection(waiting);
    assert.equal(err.code, 'EVENTLINE_ERR_CLOSED');
    assert.equal(requester.stats().cancelled, 2);
    assert.ok(!(await bus.admin.listTopics()).includes(topic), 'the reply topic is deleted');
    const after = await rejection(requester.request(quotes, { sku: 'c', qty: 1 }));
    assert.equal(after.code, 'EVENTLINE_ERR_CLOSED');
  });

  test('invalid options are refused', () => {
    assert.throws(
      () => createRequester(bus, { timeout: 'soon' as '1s' }),
      (e) => isEventlineError(e, 'EVENTLINE_ERR_INVALID_ARGUMENT'),
    );
    assert.throws(
      () => respond(bus, { topic: quotes, group: 'g', handler: undefined as never }),
      (e) => isEventlineError(e, 'EVENTLINE_ERR_INVALID_ARGUMENT'),
    );
    assert.throws(
      () => respond(bus, { topic: 'bad name', group: 'g', handler: () => 1 }),
      (e) => isEventlineError(e, 'EVENTLINE_ERR_INVALID_TOPIC_NAME'),
    );
  });
});

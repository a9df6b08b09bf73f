/**
 * Tracing and logs on real Kafka: one trace from an HTTP call through a publish to the handler
 * (the same scenario as the embedded test), batch spans, and credentials kept out of the log.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { InMemorySpanExporter } from '@opentelemetry/sdk-trace-base';
import { connect, type Eventline } from '../../src/client.ts';
import { isEventlineError } from '../../src/errors.ts';
import { silentLogger } from '../../src/observability/logger.ts';
import { captureLogs } from '../observability/log-capture.ts';
import {
  batchSpanLinksEveryRecord,
  registerSdk,
  traceAcrossHttpAndSubscription,
} from '../observability/trace-scenario.ts';
import { kafkaBrokers } from './kafka-env.ts';

const brokers = kafkaBrokers();

describe('tracing on real Kafka', () => {
  let exporter: InMemorySpanExporter;
  let bus: Eventline;
  before(async () => {
    exporter = registerSdk();
    bus = await connect(`kafka://${brokers}`, { logger: silentLogger, clientId: 'tracing' });
  });
  after(() => bus.close());

  test('one trace from an HTTP client through publish to the handler and its own publish', () =>
    traceAcrossHttpAndSubscription(bus, exporter));

  test('a batch handler runs in one span linked to every record it got', () =>
    batchSpanLinksEveryRecord(bus, exporter));
});

test('a Kafka URL with credentials: the password is in no log line, the broker address is', async () => {
  const { logger, raw, lines } = captureLogs();
  const [first] = brokers.split(',');
  // The broker has no SASL listener: the handshake is refused after the credentials were used.
  const refused = await connect(`kafka://app:kafka-secret-pw@${brokers}`, {
    logger,
    kafka: { connectTimeoutMs: 2000 },
  }).catch((e: unknown) => e);
  assert.ok(isEventlineError(refused), String(refused));
  assert.deepEqual(
    lines.map((l) => [l.level, l.msg, l.url]),
    [
      ['debug', 'connecting', `kafka://app:***@${brokers}`],
      ['debug', 'connect failed', `kafka://app:***@${brokers}`],
    ],
  );
  const ok = await connect(`kafka://${brokers}`, { logger });
  await ok.close();
  assert.ok(
    lines.some((l) => l.msg === 'connected' && l.engine === `kafka://${brokers}` && l.kind === 'kafka'),
  );
  const all = raw.join('');
  assert.ok(!all.includes('kafka-secret-pw'), all);
  assert.ok(all.includes(first!));
});

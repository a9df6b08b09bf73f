import { after, before, test } from 'node:test';
import type { InMemorySpanExporter } from '@opentelemetry/sdk-trace-base';
import { connect, type Eventline } from '../../src/client.ts';
import { silentLogger } from '../../src/observability/logger.ts';
import { batchSpanLinksEveryRecord, registerSdk, traceAcrossHttpAndSubscription } from './trace-scenario.ts';

let exporter: InMemorySpanExporter;
let bus: Eventline;

before(async () => {
  exporter = registerSdk();
  bus = await connect('sqlite::memory:', { logger: silentLogger });
});
after(() => bus.close());

test('one trace from an HTTP client through publish to the handler and its own publish', () =>
  traceAcrossHttpAndSubscription(bus, exporter));

test('a batch handler runs in one span linked to every record it got', () =>
  batchSpanLinksEveryRecord(bus, exporter));

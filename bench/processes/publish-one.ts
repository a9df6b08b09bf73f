/**
 * A fresh process that connects and publishes one record, then reports how long after its own
 * start (performance.now() counts from process start) the record was durable.
 */
import { bytes, connect, defineTopic, silentLogger } from '../../packages/eventline/src/index.ts';

const { url, topic } = JSON.parse(process.argv[2]!) as { url: string; topic: string };
const bus = await connect(url, { logger: silentLogger });
await bus.publish(defineTopic(topic, { value: bytes() }), Buffer.from('hello'));
process.stdout.write(`${JSON.stringify({ durableAtMs: performance.now() })}\n`);
await bus.close();

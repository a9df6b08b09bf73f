/**
 * The responder of the request/reply benchmark, in its own process: answers each request at once
 * with the time its handler started (`performance.timeOrigin + performance.now()`, comparable
 * across processes of one machine), prints "ready" once it owns the topic's partition, and stops
 * on SIGTERM.
 */
import { connect, silentLogger, stopOnSignals } from '../../packages/eventline/src/index.ts';
import { respond } from '../../packages/eventline/src/patterns/request-reply.ts';

const { url, topic, group } = JSON.parse(process.argv[2]!) as { url: string; topic: string; group: string };
const bus = await connect(url, { logger: silentLogger });
const responder = respond<{ n: number }, { n: number; at: number }>(bus, {
  topic,
  group,
  handler: (m) => ({ n: m.value.n, at: performance.timeOrigin + performance.now() }),
});
await responder.ready();
while (responder.assignment().length === 0) await new Promise((r) => setTimeout(r, 10));
process.stdout.write(`${JSON.stringify({ ready: true })}\n`);
stopOnSignals([responder, bus]);

/** Consumer side of the cross-process latency benchmark: prints "ready", then the latencies. */
import { connect, silentLogger } from '../../packages/eventline/src/index.ts';

const { url, topic, count } = JSON.parse(process.argv[2]!) as { url: string; topic: string; count: number };
const bus = await connect(url, { logger: silentLogger });
const latencies: number[] = [];
const done = Promise.withResolvers<void>();
const sub = bus.subscribe({
  group: 'latency-remote',
  topics: [topic],
  handler: (m) => {
    const intended = m.rawHeaders.find(([n]) => n === 'intended')![1].readDoubleLE(0);
    latencies.push(performance.timeOrigin + performance.now() - intended);
    if (latencies.length === count) done.resolve();
  },
});
await sub.ready();
while (sub.assignment().length === 0) await new Promise((r) => setTimeout(r, 10));
process.stdout.write('ready\n');
await done.promise;
process.stdout.write(`${JSON.stringify({ latencies })}\n`);
await bus.close();

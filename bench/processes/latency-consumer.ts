/**
 * The latency benchmark in a fresh process. Mode `consume`: a consumer that prints "ready", then
 * its latencies once `count` records arrived. Mode `both`: publisher and consumer in this process.
 * Mode `publish`: the load only.
 */
import { connect, silentLogger } from '../../packages/eventline/src/index.ts';
import { latencyOf, offerLoad } from '../load.ts';

const { url, topic, rate, seconds, warmup, mode } = JSON.parse(process.argv[2]!) as {
  url: string;
  topic: string;
  rate: number;
  seconds: number;
  /** Seconds of load first whose latencies are not kept (JIT and caches warming up). */
  warmup: number;
  mode: 'consume' | 'both' | 'publish';
};
const total = rate * (warmup + seconds);
const bus = await connect(url, { logger: silentLogger });
if (mode === 'publish') {
  await offerLoad(bus, topic, rate, warmup + seconds);
} else {
  const latencies: number[] = [];
  let seen = 0;
  const done = Promise.withResolvers<void>();
  const sub = bus.subscribe({
    group: `latency-${mode}`,
    topics: [topic],
    handler: (m) => {
      const latency = latencyOf(m.rawHeaders);
      if (++seen > rate * warmup) latencies.push(latency);
      if (seen === total) done.resolve();
    },
  });
  await sub.ready();
  while (sub.assignment().length === 0) await new Promise((r) => setTimeout(r, 10));
  process.stdout.write('ready\n');
  if (mode === 'both') await offerLoad(bus, topic, rate, warmup + seconds);
  await done.promise;
  process.stdout.write(`${JSON.stringify({ latencies })}\n`);
}
await bus.close();

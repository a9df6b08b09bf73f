/** Open-loop load for the latency benchmarks. */
import { randomBytes } from 'node:crypto';
import { bytes, defineTopic, type Eventline } from '../packages/eventline/src/index.ts';

const VALUE = randomBytes(1024);

/**
 * Offers `rate` records per second for `seconds`, open loop, in bursts every millisecond (a 1 ms
 * timer, as a busy application would see them arrive). Each record carries its intended send time
 * in the `intended` header, and latency is measured from that time, so a late timer or a stall
 * counts against every record it delays (no coordinated omission).
 */
export async function offerLoad(bus: Eventline, topic: string, rate: number, seconds: number): Promise<void> {
  const t = defineTopic(topic, { value: bytes() });
  const total = rate * seconds;
  const perMs = rate / 1000;
  const start = performance.now() + 20;
  let sent = 0;
  const pending: Promise<unknown>[] = [];
  await new Promise<void>((resolve) => {
    const timer = setInterval(() => {
      const now = performance.now();
      while (sent < total && start + Math.floor(sent / perMs) <= now) {
        const header = Buffer.allocUnsafe(8);
        header.writeDoubleLE(performance.timeOrigin + start + Math.floor(sent / perMs));
        pending.push(bus.publish(t, VALUE, { headers: { intended: header } }));
        sent++;
      }
      if (sent >= total) {
        clearInterval(timer);
        resolve();
      }
    }, 1);
  });
  await Promise.all(pending);
}

/** Milliseconds from a record's intended send time until now. */
export function latencyOf(rawHeaders: readonly (readonly [string, Buffer])[]): number {
  const intended = rawHeaders.find(([n]) => n === 'intended')![1].readDoubleLE(0);
  return performance.timeOrigin + performance.now() - intended;
}

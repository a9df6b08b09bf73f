/**
 * A request/reply responder in its own process, for the conformance suite. Prints { ready } once
 * it owns partitions or joined, { received: correlationId } when its handler starts, and
 * { replied: correlationId } once the reply is published. `sleepMs` makes the handler slow (the
 * tests kill it with SIGKILL meanwhile); `dieAfterReply` kills the process right after its first
 * reply is published, before the request's offset can be committed.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { connect } from '../../../src/client.ts';
import { respond } from '../../../src/patterns/request-reply.ts';
import { stopOnSignals } from '../../../src/runtime/shutdown.ts';

const args = JSON.parse(process.argv[2]!) as {
  url: string;
  topic: string;
  group: string;
  name: string;
  sleepMs?: number;
  dieAfterReply?: boolean;
  sessionTimeout?: string;
};
const out = (line: object): void => {
  process.stdout.write(`${JSON.stringify(line)}\n`);
};
const bus = await connect(args.url, { clientId: args.name });
if (args.dieAfterReply) {
  // Crash injection: the reply is durable, the commit that follows the handler never happens.
  const publish = bus.publish.bind(bus);
  bus.publish = (async (...a: Parameters<typeof publish>) => {
    const result = await publish(...a);
    if (result.topic !== args.topic) {
      out({ replied: 'before-crash' });
      process.kill(process.pid, 'SIGKILL');
    }
    return result;
  }) as typeof bus.publish;
}
const responder = respond<{ n: number }, { n: number; by: string }>(bus, {
  topic: args.topic,
  group: args.group,
  sessionTimeout: (args.sessionTimeout ?? '3s') as '3s',
  handler: async (m, ctx) => {
    out({ received: ctx.correlationId, n: m.value.n });
    if (args.sleepMs) await sleep(args.sleepMs);
    return { n: m.value.n, by: args.name };
  },
});
await responder.ready();
out({ ready: args.name });
stopOnSignals([responder, bus]);

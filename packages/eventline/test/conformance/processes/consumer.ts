/**
 * A consumer-group member in its own process, for the conformance suite. Prints one JSON line per
 * record after its handler succeeded ({ id, p, o }), and { ready } once joined. SIGTERM stops it
 * gracefully; the tests also kill it with SIGKILL.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { connect } from '../../../src/client.ts';
import { stopOnSignals } from '../../../src/runtime/shutdown.ts';

const args = JSON.parse(process.argv[2]!) as {
  url: string;
  topic: string;
  group: string;
  name: string;
  delayMs?: number;
  sessionTimeout?: string;
};
const out = (line: object): void => {
  process.stdout.write(`${JSON.stringify(line)}\n`);
};
const bus = await connect(args.url, { clientId: args.name });
const sub = bus.subscribe({
  group: args.group,
  topics: [args.topic],
  fromBeginning: true,
  sessionTimeout: (args.sessionTimeout ?? '3s') as '3s',
  handler: async (m) => {
    if (args.delayMs) await sleep(args.delayMs);
    out({ id: m.value.toString(), p: m.partition, o: m.offset });
  },
});
await sub.ready();
out({ ready: args.name });
stopOnSignals([sub, bus]);

/** A demo consumer process: a member of the billing group, printing what it handles. */
import { connect, stopOnSignals, type TopicPartition } from 'eventline';
import { GROUP, orders } from './shared.ts';

const name = process.argv[2] ?? 'consumer';
const bus = await connect(undefined, { clientId: name });
const parts = (tps: TopicPartition[]): string =>
  tps
    .map((tp) => tp.partition)
    .sort((a, b) => a - b)
    .join(',');
const sub = bus.subscribe({
  group: GROUP,
  topics: [orders],
  fromBeginning: true,
  sessionTimeout: '6s',
  onPartitionsAssigned: (tps) =>
    console.log(`now owns partitions ${parts(sub.assignment())} (got ${parts(tps)})`),
  onPartitionsRevoked: (tps) => console.log(`gave up partitions ${parts(tps)} in a rebalance`),
  handler: async (m) => {
    console.log(
      `billed    ${m.value.producer}#${m.value.orderId}  ${m.value.customer.padEnd(5)} ${m.value.amount.toFixed(2).padStart(5)}  <- partition ${m.partition} offset ${m.offset}`,
    );
  },
});
await sub.ready();
stopOnSignals([sub, bus]);

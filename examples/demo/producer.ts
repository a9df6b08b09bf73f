/** A demo producer process: publishes an order every few hundred milliseconds until stopped. */
import { connect, stopOnSignals } from 'eventline';
import { type Order, orders } from './shared.ts';

const name = process.argv[2] ?? 'producer';
const customers = ['alice', 'bob', 'carol', 'dave', 'erin', 'frank'];
const items = ['coffee', 'tea', 'bagel', 'muffin', 'juice'];

const bus = await connect(undefined, { clientId: name, source: `/demo/${name}` });
let n = 0;
let timer: NodeJS.Timeout | undefined;
const tick = async (): Promise<void> => {
  const order: Order = {
    orderId: ++n,
    customer: customers[Math.floor(Math.random() * customers.length)]!,
    item: items[Math.floor(Math.random() * items.length)]!,
    amount: Math.round(200 + Math.random() * 1800) / 100,
    producer: name,
  };
  const r = await bus.publish(orders, order);
  console.log(
    `published ${name}#${order.orderId}  ${order.customer.padEnd(5)} ${order.item.padEnd(6)} ${order.amount.toFixed(2).padStart(5)}  -> partition ${r.partition} offset ${r.offset}`,
  );
  timer = setTimeout(() => void tick(), 300 + Math.random() * 500);
};
void tick();
stopOnSignals([{ close: async () => clearTimeout(timer) }, bus]);

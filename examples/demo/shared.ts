import { defineTopic } from 'eventline';

export interface Order {
  orderId: number;
  customer: string;
  item: string;
  amount: number;
  producer: string;
}

/** The demo's topic: orders keyed by customer, so one customer's orders stay in order. */
export const orders = defineTopic<Order>('demo.orders', {
  partitions: 3,
  retention: '1d',
  key: (o) => o.customer,
  type: 'com.example.order.placed',
});

export const GROUP = 'demo-billing';

/**
 * A producer in its own process, for the conformance suite: publishes batches of records
 * `<batch>:<index>:<padding>` and prints { acked: batch } once each batch is durable. The tests
 * kill it with SIGKILL in the middle of a batch.
 */
import { connect } from '../../../src/client.ts';
import { bytes } from '../../../src/codec.ts';
import { defineTopic } from '../../../src/topic.ts';

const args = JSON.parse(process.argv[2]!) as {
  url: string;
  topic: string;
  batchSize: number;
  valueBytes: number;
};
const topic = defineTopic(args.topic, { value: bytes() });
const bus = await connect(args.url, { clientId: 'producer' });
const padding = 'p'.repeat(args.valueBytes);
process.stdout.write(`${JSON.stringify({ ready: true })}\n`);
for (let b = 0; ; b++) {
  await bus.publishBatch(
    topic,
    Array.from({ length: args.batchSize }, (_, i) => ({
      value: Buffer.from(`${b}:${i}:${padding}`),
      key: `k${i % 7}`,
    })),
  );
  process.stdout.write(`${JSON.stringify({ acked: b })}\n`);
}

/**
 * A relay that dies (SIGKILL) right after its first batch is stored on the engine and before the
 * batch is marked sent. Argument: { url, database, batchSize }.
 */
import { DatabaseSync } from 'node:sqlite';
import { connect } from '../../src/client.ts';
import { silentLogger } from '../../src/observability/logger.ts';
import { createOutbox } from '../../src/patterns/outbox.ts';

const arg = JSON.parse(process.argv[2]!) as { url: string; database: string; batchSize: number };
const bus = await connect(arg.url, { logger: silentLogger });
const db = new DatabaseSync(arg.database);
await createOutbox(bus, {
  database: db,
  batchSize: arg.batchSize,
  lease: '1s',
  onPublished: (results) => {
    process.stdout.write(`${JSON.stringify({ published: results.map((r) => r.id) })}\n`);
    process.kill(process.pid, 'SIGKILL');
  },
});

/**
 * A consumer-group member with dedup, in its own process, for the dedup conformance cases. Offsets
 * are committed once, after the first batch, and then only every hour, so a kill leaves the rest
 * uncommitted for the next member to get again.
 *
 * - `store: 'sqlite'`: dedup on a SQLite file; each processed record's value is appended to the
 *   side file `side`. With `hangAfter`, the handler never finishes the record after that many, so
 *   the kill lands after a record was handled and marked, never between the two.
 * - `store: 'postgres'`: the handler writes the record's value into the table `side` with
 *   `processOnce`, in the transaction that marks its id; the kill may land anywhere.
 *
 * Prints { ready }, { handled: n } after each record and { duplicate: value } for each skipped one.
 */
import { appendFileSync } from 'node:fs';
import { connect } from '../../../src/client.ts';
import type { DedupStore } from '../../../src/runtime/dedup.ts';
import { type PostgresDedupStore, postgresDedupStore } from '../../../src/runtime/dedup-postgres.ts';
import { sqliteDedupStore } from '../../../src/runtime/dedup-sqlite.ts';
import { stopOnSignals } from '../../../src/runtime/shutdown.ts';

const args = JSON.parse(process.argv[2]!) as {
  url: string;
  topic: string;
  group: string;
  name: string;
  store: 'sqlite' | 'postgres';
  target: string;
  side: string;
  hangAfter?: number;
};
const out = (line: object): void => {
  process.stdout.write(`${JSON.stringify(line)}\n`);
};
const postgres: PostgresDedupStore | undefined =
  args.store === 'postgres' ? await postgresDedupStore({ connectionString: args.target }) : undefined;
const store: DedupStore = postgres ?? sqliteDedupStore({ path: args.target });
const bus = await connect(args.url, { clientId: args.name });
let handled = 0;
const sub = bus.subscribe({
  group: args.group,
  topics: [args.topic],
  fromBeginning: true,
  sessionTimeout: '2s',
  maxBatchSize: 100,
  commitInterval: '1h',
  dedup: { store, ttl: '1h', onDuplicate: (m) => out({ duplicate: (m.value as Buffer).toString() }) },
  handler: async (m, ctx) => {
    const value = m.value.toString();
    if (postgres) {
      await postgres.processOnce(ctx.group, m.id!, 3_600_000, (tx) =>
        tx.query(`INSERT INTO ${args.side} (value) VALUES ($1)`, [value]),
      );
    } else {
      if (args.hangAfter !== undefined && handled >= args.hangAfter) await new Promise(() => {});
      appendFileSync(args.side, `${value}\n`);
    }
    out({ handled: ++handled });
  },
});
await sub.ready();
out({ ready: args.name });
stopOnSignals([sub, bus, store]);

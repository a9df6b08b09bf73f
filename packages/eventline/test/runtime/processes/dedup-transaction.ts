/**
 * Opens a dedup store, starts `processOnce` whose function writes an effect row, prints
 * { wrote: true } and then never finishes: the test kills this process inside the transaction.
 */
import { postgresDedupStore } from '../../../src/runtime/dedup-postgres.ts';
import { sqliteDedupStore } from '../../../src/runtime/dedup-sqlite.ts';

const args = JSON.parse(process.argv[2]!) as {
  store: 'sqlite' | 'postgres';
  target: string;
  effects: string;
  group: string;
  id: string;
};
const hang = (): Promise<never> => new Promise(() => setInterval(() => {}, 1000));
const wrote = (): void => {
  process.stdout.write(`${JSON.stringify({ wrote: true })}\n`);
};

if (args.store === 'sqlite') {
  const store = sqliteDedupStore({ path: args.target });
  await store.processOnce(args.group, args.id, 60_000, async (db) => {
    db.prepare(`INSERT INTO ${args.effects} (id) VALUES (?)`).run(args.id);
    wrote();
    await hang();
  });
} else {
  const store = await postgresDedupStore({ connectionString: args.target });
  await store.processOnce(args.group, args.id, 60_000, async (tx) => {
    await tx.query(`INSERT INTO ${args.effects} (id) VALUES ($1)`, [args.id]);
    wrote();
    await hang();
  });
}

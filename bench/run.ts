/**
 * `npm run bench [-- SUITE...] [--quick]`: runs benchmark suites and prints one JSON document on
 * stdout (progress goes to stderr). Results are also written to bench/results/.
 *
 * Suites: embedded, schemas and delivery (the default), kafka (starts a local broker unless
 * KAFKA_BROKERS is set).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import type { Figure } from './lib.ts';

const args = process.argv.slice(2);
const quick = args.includes('--quick');
const suites = args.filter((a) => !a.startsWith('--'));
const chosen = suites.length === 0 ? ['embedded', 'schemas', 'delivery'] : suites;
const results: Record<string, Figure[]> = {};
const started = new Date();
const cpu0 = process.cpuUsage();

for (const suite of chosen) {
  if (suite === 'embedded') {
    const { runEmbedded } = await import('./embedded.ts');
    results.embedded = await runEmbedded({ quick });
  } else if (suite === 'schemas') {
    const { runSchemas } = await import('./schemas.ts');
    results.schemas = await runSchemas({ quick });
  } else if (suite === 'delivery') {
    const { runDelivery } = await import('./delivery.ts');
    results.delivery = await runDelivery({ quick });
  } else if (suite === 'kafka') {
    const { runKafka } = await import('./kafka.ts');
    results.kafka = await runKafka({ quick });
  } else {
    process.stderr.write(`unknown benchmark suite: ${suite} (known: embedded, schemas, delivery, kafka)\n`);
    process.exit(2);
  }
}

const cpu = process.cpuUsage(cpu0);
const report = {
  started: started.toISOString(),
  seconds: Math.round((Date.now() - started.getTime()) / 1000),
  machine: {
    cpus: cpus().length,
    model: cpus()[0]?.model,
    memoryGiB: Math.round(totalmem() / 1024 ** 3),
    node: process.version,
  },
  quick,
  cpuSecondsBenchProcess: Math.round((cpu.user + cpu.system) / 1e4) / 100,
  results,
  allTargetsMet: Object.values(results).every((fs) => fs.every((f) => f.met !== false)),
};
const json = JSON.stringify(report, null, 2);
process.stdout.write(`${json}\n`);
const dir = new URL('./results/', import.meta.url);
mkdirSync(dir, { recursive: true });
writeFileSync(new URL(`${started.toISOString().replace(/[:.]/g, '-')}.json`, dir), json);

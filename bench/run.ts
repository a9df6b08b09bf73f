/**
 * `npm run bench [-- SUITE...] [--quick]`: runs benchmark suites and prints one JSON document on
 * stdout (progress goes to stderr). Results are also written to bench/results/.
 *
 * Suites: embedded, schemas and delivery (the default), kafka (starts a local broker unless
 * KAFKA_BROKERS is set), catalogue (seed 000's matching service: validation from a view against
 * its HTTP fallback).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { createProgress } from '../packages/eventline/src/cli/progress.ts';
import type { Figure } from './lib.ts';

const args = process.argv.slice(2);
const quick = args.includes('--quick');
const suites = args.filter((a) => !a.startsWith('--'));
const chosen = suites.length === 0 ? ['embedded', 'schemas', 'delivery'] : suites;
const results: Record<string, Figure[]> = {};
const started = new Date();
const cpu0 = process.cpuUsage();
// One line on stderr as each suite ends, between the suites' own notes.
const progress = createProgress({
  label: 'bench',
  unit: 'suites',
  total: chosen.length,
  everyStep: true,
  rate: false,
});
let suitesDone = 0;

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
  } else if (suite === 'catalogue') {
    const { runCatalogue } = await import('./catalogue.ts');
    results.catalogue = await runCatalogue({ quick });
  } else {
    process.stderr.write(
      `unknown benchmark suite: ${suite} (known: embedded, schemas, delivery, kafka, catalogue)\n`,
    );
    process.exit(2);
  }
  const figures = results[suite] ?? [];
  const missed = figures.filter((f) => f.met === false).map((f) => f.name);
  progress.update(
    ++suitesDone,
    chosen.length,
    `${suite} done: ${figures.length} figures${missed.length > 0 ? `, targets missed: ${missed.join(', ')}` : ', every target met'}`,
  );
}
progress.finish();

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

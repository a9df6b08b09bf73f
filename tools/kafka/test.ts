/**
 * `npm run test:kafka`: the suites that need real Kafka.
 *
 * 1. A single node (started here from Maven Central jars): the conformance suite, interop with
 *    another Kafka client, and the CLI, all on the Kafka engine; and the reference systems under
 *    apps/ end to end on Kafka.
 * 2. A 3-node cluster (started here): broker crash and restart under load, consumers killed.
 *
 * With KAFKA_BROKERS set, step 1 runs against those brokers instead and step 2 is not run: it kills
 * brokers, which only the project's own cluster allows. Everything started here is stopped here,
 * by pid, also when a suite fails. `node tools/kafka/test.ts note` prints what `npm test` says about
 * these suites.
 */
import { spawn } from 'node:child_process';
import { brokersOf, kafkaPrerequisites, startKafka, stopKafka } from './kafka.ts';

const ROOT = new URL('../../', import.meta.url).pathname;
/** Step 1: the library's Kafka suites and the apps' end-to-end tests on Kafka. */
const SINGLE_NODE_SUITES = [
  'packages/*/test/integration/*.integration.ts',
  'apps/*/test/**/*.integration.ts',
];
const say = (line: string): void => {
  process.stderr.write(`${line}\n`);
};

function runSuites(
  patterns: string | string[],
  brokers: string,
  extraEnv: Record<string, string> = {},
): Promise<number> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--test', '--test-concurrency=1', ...[patterns].flat()], {
      cwd: ROOT,
      stdio: 'inherit',
      env: { ...process.env, KAFKA_BROKERS: brokers, KAFKAJS_NO_PARTITIONER_WARNING: '1', ...extraEnv },
    });
    child.on('exit', (code, signal) => resolve(code ?? (signal ? 1 : 0)));
  });
}

async function main(): Promise<number> {
  if (process.argv[2] === 'note') {
    const check = kafkaPrerequisites();
    say(
      check.ok
        ? 'note: the Kafka suites are not part of npm test; run them with `npm run test:kafka` (Java and Maven are here).'
        : `note: the Kafka suites were NOT run: ${check.why}. With Java 17+ and Maven, run \`npm run test:kafka\`.`,
    );
    return 0;
  }
  const external = process.env.KAFKA_BROKERS;
  if (external) {
    say(
      `Kafka suites against KAFKA_BROKERS=${external} (the cluster fault tests need the project's own cluster and are not run)`,
    );
    return runSuites(SINGLE_NODE_SUITES, external);
  }
  const check = kafkaPrerequisites();
  if (!check.ok) {
    say(`test:kafka: cannot run the Kafka suites: ${check.why}`);
    return 1;
  }
  let failed = 0;
  // Leftovers from an interrupted run would hold the ports.
  await stopKafka('single');
  await stopKafka('cluster');
  try {
    const { brokers, ms } = await startKafka('single', { log: say });
    say(`single node up in ${ms} ms`);
    failed += await runSuites(SINGLE_NODE_SUITES, brokers.join(','));
  } finally {
    await stopKafka('single');
  }
  try {
    const { brokers, ms } = await startKafka('cluster', { log: say });
    say(`3-node cluster up in ${ms} ms`);
    failed += await runSuites('packages/*/test/integration/*.cluster.ts', brokers.join(','), {
      KAFKA_CLUSTER: brokersOf('cluster').join(','),
    });
  } finally {
    await stopKafka('cluster');
  }
  return failed === 0 ? 0 : 1;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    say(`test:kafka: ${err instanceof Error ? err.message : String(err)}`);
    process.exitCode = 1;
  },
);

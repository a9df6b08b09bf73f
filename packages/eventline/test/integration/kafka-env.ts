/** Where the Kafka suites find their brokers. Missing brokers fail the suite, never skip it. */
export function kafkaBrokers(): string {
  const brokers = process.env.KAFKA_BROKERS;
  if (!brokers) {
    throw new Error(
      'KAFKA_BROKERS is not set: run the Kafka suites with `npm run test:kafka`, which starts Kafka',
    );
  }
  return brokers;
}

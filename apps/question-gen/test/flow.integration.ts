/** Seed 002 end to end on real Kafka (KAFKA_BROKERS; `npm run test:kafka` sets it). */
import { kafkaBrokers } from '../../../packages/eventline/test/integration/kafka-env.ts';
import { runScenarios } from './scenarios.ts';

const brokers = kafkaBrokers();
runScenarios({ name: 'Kafka', url: () => `kafka://${brokers}` });

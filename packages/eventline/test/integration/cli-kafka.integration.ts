/** The CLI on the Kafka engine: the same commands and outputs as on the embedded engine. */
import { cliSuite } from '../cli/suite.ts';
import { kafkaBrokers } from './kafka-env.ts';

cliSuite('Kafka', `kafka://${kafkaBrokers()}`);

/** The CLI on the Kafka engine: the same commands and outputs as on the embedded engine. */
import { operationsSuite } from '../cli/operations-suite.ts';
import { cliSuite } from '../cli/suite.ts';
import { kafkaBrokers } from './kafka-env.ts';

cliSuite('Kafka', `kafka://${kafkaBrokers()}`);
operationsSuite('Kafka', `kafka://${kafkaBrokers()}`);

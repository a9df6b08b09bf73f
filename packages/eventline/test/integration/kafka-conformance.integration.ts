/**
 * The conformance suite on real Apache Kafka. Needs KAFKA_BROKERS (host:port,…): `npm run
 * test:kafka` starts a node from Maven Central jars and sets it; CI does the same.
 */
import { runConformance } from '../conformance/suite.ts';
import { urlTarget } from '../conformance/target.ts';
import { kafkaBrokers } from './kafka-env.ts';

runConformance(urlTarget('kafka', `kafka://${kafkaBrokers()}`));

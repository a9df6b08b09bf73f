/**
 * The matching service as a process: settings from the environment (MATCHING_SERVICE_PORT,
 * QUESTION_SERVICE_URL, EVENTLINE_URL, DATABASE_URL, TOPIC_TOPICS_UPDATED,
 * TOPIC_DIFFICULTIES_UPDATED); prints `{"service":"matching-service","url":…}` once it listens and
 * stops on SIGINT or SIGTERM.
 */
import { runMain } from '../../shared/index.ts';
import { startMatchingService } from './matching-service.ts';

await runMain(() => startMatchingService());

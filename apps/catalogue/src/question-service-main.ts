/**
 * The question service as a process: settings from the environment (QUESTION_SERVICE_PORT,
 * EVENTLINE_URL, DATABASE_URL, TOPIC_TOPICS_UPDATED, TOPIC_DIFFICULTIES_UPDATED); prints
 * `{"service":"question-service","url":…}` once it listens and stops on SIGINT or SIGTERM.
 */
import { runMain } from '../../shared/index.ts';
import { startQuestionService } from './question-service.ts';

await runMain(() => startQuestionService());

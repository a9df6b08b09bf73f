/** Runs the AI service as a process (settings from the environment; see ai-service.ts). */
import { runMain } from '../../shared/index.ts';
import { startAiService } from './ai-service.ts';

await runMain(() => startAiService());

/** Runs the content service as a process (settings from the environment; see content-service.ts). */
import { runMain } from '../../shared/index.ts';
import { startContentService } from './content-service.ts';

await runMain(() => startContentService());

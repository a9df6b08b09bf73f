/** Seed 002 end to end on the embedded engine (one SQLite file shared by every service and process). */
import { join } from 'node:path';
import { runScenarios } from './scenarios.ts';

runScenarios({ name: 'embedded', url: (dir) => `sqlite:${join(dir, 'events.db')}` });

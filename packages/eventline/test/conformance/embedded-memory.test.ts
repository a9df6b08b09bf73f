import { runConformance } from './suite.ts';
import { memoryTarget } from './target.ts';

runConformance(memoryTarget());

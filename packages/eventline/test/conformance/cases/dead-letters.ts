import type { ConformanceCase } from '../suite.ts';

export const deadLetterCases: ConformanceCase[] = [];

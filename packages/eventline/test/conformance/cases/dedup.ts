import type { ConformanceCase } from '../suite.ts';

export const dedupCases: ConformanceCase[] = [];

import type { ConformanceCase } from '../suite.ts';

export const viewCases: ConformanceCase[] = [];

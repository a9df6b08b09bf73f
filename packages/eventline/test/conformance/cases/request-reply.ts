import type { ConformanceCase } from '../suite.ts';

export const requestReplyCases: ConformanceCase[] = [];

import type { ConformanceCase } from '../suite.ts';

export const retryCases: ConformanceCase[] = [];

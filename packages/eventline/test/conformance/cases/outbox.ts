import type { ConformanceCase } from '../suite.ts';

export const outboxCases: ConformanceCase[] = [];

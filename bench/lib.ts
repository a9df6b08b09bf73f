/** Small helpers shared by the benchmarks: statistics, repetition, result records. */

export interface Figure {
  name: string;
  value: number;
  unit: string;
  /** What a published record survives at this figure (benchmarks never mix durability levels). */
  durability?: string;
  /** The target from the issue, when there is one. */
  target?: { op: '>=' | '<='; value: number };
  /** Ratio to a baseline measured in the same run, with the baseline's name. */
  ratio?: { to: string; value: number; target?: number };
  met?: boolean;
  note?: string;
  runs?: number[];
}

export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i]!;
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

export function round(n: number, digits = 0): number {
  const f = 10 ** digits;
  return Math.round(n * f) / f;
}

/** Marks whether a figure meets its target and ratio target. */
export function judge(f: Figure): Figure {
  let met = true;
  if (f.target) met &&= f.target.op === '>=' ? f.value >= f.target.value : f.value <= f.target.value;
  if (f.ratio?.target !== undefined) met &&= f.ratio.value >= f.ratio.target;
  return { ...f, met };
}

/**
 * Runs candidate and baseline alternately (ABAB…) `reps` times and returns the medians, so drift
 * in the machine's speed hits both alike.
 */
export async function alternate(
  reps: number,
  a: () => Promise<number>,
  b: () => Promise<number>,
): Promise<{ a: number; b: number; aRuns: number[]; bRuns: number[] }> {
  const aRuns: number[] = [];
  const bRuns: number[] = [];
  for (let i = 0; i < reps; i++) {
    aRuns.push(await a());
    bRuns.push(await b());
  }
  return { a: median(aRuns), b: median(bRuns), aRuns, bRuns };
}

export function log(line: string): void {
  process.stderr.write(`${line}\n`);
}

/**
 * What a partition's committed offset cannot say: records past it that are already finished (so
 * the next owner skips them) and records waiting for a retry (so the attempt count and the time of
 * the next attempt survive a restart or a rebalance). It travels as the commit's metadata, which
 * Kafka limits to 4 KiB by default; past `MAX_METADATA` the finished set is dropped first (those
 * records are then handled again, never lost).
 */

export interface RetryInfo {
  /** Deliveries that failed so far. */
  attempt: number;
  /** When the first delivery failed (ms since the epoch). */
  first: number;
  /** When the next attempt is due (ms since the epoch). */
  due: number;
}

export interface Progress {
  done: Set<number>;
  retries: Map<number, RetryInfo>;
}

const VERSION = 1;
export const MAX_METADATA = 3000;

/** Ranges `[start, length]` of sorted offsets, relative to `base`. */
function ranges(base: number, offsets: number[]): [number, number][] {
  const out: [number, number][] = [];
  for (const o of offsets) {
    const last = out[out.length - 1];
    if (last !== undefined && last[0] + last[1] === o - base) last[1]++;
    else out.push([o - base, 1]);
  }
  return out;
}

/** The metadata for a commit at `base`, or undefined when there is nothing past it to remember. */
export function encodeProgress(
  base: number,
  done: Iterable<number>,
  retries: ReadonlyMap<number, RetryInfo>,
): string | undefined {
  const finished = [...done].filter((o) => o >= base).sort((a, b) => a - b);
  const waiting = [...retries]
    .filter(([o]) => o >= base)
    .sort(([a], [b]) => a - b)
    .map(([o, r]) => [o - base, r.attempt, r.first, r.due]);
  if (finished.length === 0 && waiting.length === 0) return undefined;
  const full = JSON.stringify({ v: VERSION, d: ranges(base, finished), r: waiting });
  if (full.length <= MAX_METADATA) return full;
  // Too much to keep: attempt counts matter more than skipping finished records.
  const slim = JSON.stringify({ v: VERSION, d: [], r: waiting.slice(0, 60) });
  return slim.length <= MAX_METADATA ? slim : undefined;
}

/** Reads metadata written by {@link encodeProgress}; anything else (another tool's) reads as empty. */
export function decodeProgress(base: number, metadata: string | undefined | null): Progress {
  const progress: Progress = { done: new Set(), retries: new Map() };
  if (!metadata) return progress;
  try {
    const parsed = JSON.parse(metadata) as { v?: unknown; d?: unknown; r?: unknown };
    if (parsed.v !== VERSION || !Array.isArray(parsed.d) || !Array.isArray(parsed.r)) return progress;
    for (const [start, length] of parsed.d as [number, number][]) {
      for (let i = 0; i < length; i++) progress.done.add(base + start + i);
    }
    for (const [rel, attempt, first, due] of parsed.r as [number, number, number, number][]) {
      progress.retries.set(base + rel, { attempt, first, due });
    }
  } catch {
    // Not ours: nothing to restore.
  }
  return progress;
}

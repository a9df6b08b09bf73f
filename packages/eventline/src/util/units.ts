import { fail } from '../errors.ts';

/** A duration in milliseconds, or a string such as `'500ms'`, `'30s'`, `'15m'`, `'12h'`, `'7d'`, `'2w'`. */
export type Duration = number | `${number}${'ms' | 's' | 'm' | 'h' | 'd' | 'w'}`;

/** A size in bytes, or a string such as `'512KiB'`, `'1MiB'`, `'2GiB'`, `'100MB'`. */
export type Size = number | `${number}${'B' | 'KB' | 'MB' | 'GB' | 'KiB' | 'MiB' | 'GiB' | 'TiB'}`;

const DURATION_UNITS: Record<string, number> = {
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
  w: 604_800_000,
};

const SIZE_UNITS: Record<string, number> = {
  B: 1,
  KB: 1e3,
  MB: 1e6,
  GB: 1e9,
  KiB: 1024,
  MiB: 1024 ** 2,
  GiB: 1024 ** 3,
  TiB: 1024 ** 4,
};

function parseUnit(input: unknown, units: Record<string, number>, what: string, field: string): number {
  if (typeof input === 'number') {
    if (!Number.isFinite(input) || input < 0) {
      fail('EVENTLINE_ERR_INVALID_ARGUMENT', `${field}: ${what} must be a non-negative number, got ${input}`);
    }
    return Math.floor(input);
  }
  if (typeof input === 'string') {
    const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]+)?\s*$/.exec(input);
    const factor = m ? units[m[2] ?? (what === 'duration' ? 'ms' : 'B')] : undefined;
    if (m && factor !== undefined) return Math.floor(Number(m[1]) * factor);
  }
  return fail(
    'EVENTLINE_ERR_INVALID_ARGUMENT',
    `${field}: cannot read ${JSON.stringify(input)} as a ${what} (examples: ${
      what === 'duration' ? "'30s', '12h', '7d'" : "'512KiB', '1MiB', '10GB'"
    })`,
  );
}

/** Milliseconds for a duration; throws EVENTLINE_ERR_INVALID_ARGUMENT naming `field`. */
export function parseDuration(input: Duration | string, field = 'duration'): number {
  return parseUnit(input, DURATION_UNITS, 'duration', field);
}

/** Bytes for a size; throws EVENTLINE_ERR_INVALID_ARGUMENT naming `field`. */
export function parseSize(input: Size | string, field = 'size'): number {
  return parseUnit(input, SIZE_UNITS, 'size', field);
}

export interface FormatDurationOptions {
  /**
   * Round to at most two units, for measured times read by people (`'1h 2m'`, `'4.2s'`, `'850ms'`)
   * rather than exact settings. Default false.
   */
  approximate?: boolean;
}

const UNITS_DOWN = [
  ['w', 604_800_000],
  ['d', 86_400_000],
  ['h', 3_600_000],
  ['m', 60_000],
  ['s', 1000],
] as const;

/**
 * `604800000` → `'7d'`; used when printing settings back to people. With `{ approximate: true }`,
 * `3723456` → `'1h 2m'` (for lag and other measured times).
 */
export function formatDuration(ms: number | null, options: FormatDurationOptions = {}): string {
  if (ms === null) return 'forever';
  if (options.approximate) return approximately(ms);
  for (const [unit, factor] of UNITS_DOWN) {
    if (ms >= factor && ms % factor === 0) return `${ms / factor}${unit}`;
  }
  return `${ms}ms`;
}

function approximately(ms: number): string {
  if (ms <= 0) return '0s';
  if (ms < 1000) return `${Math.round(ms)}ms`;
  if (ms < 10_000) return `${(Math.floor(ms / 100) / 10).toFixed(1)}s`;
  const i = UNITS_DOWN.findIndex(([, factor]) => ms >= factor);
  const [unit, factor] = UNITS_DOWN[i]!;
  const whole = Math.floor(ms / factor);
  const next = UNITS_DOWN[i + 1];
  const rest = next === undefined ? 0 : Math.floor((ms - whole * factor) / next[1]);
  return rest > 0 && next !== undefined ? `${whole}${unit} ${rest}${next[0]}` : `${whole}${unit}`;
}

/** `1048576` → `'1MiB'`. */
export function formatSize(bytes: number | null): string {
  if (bytes === null) return 'unlimited';
  for (const [unit, factor] of [
    ['TiB', 1024 ** 4],
    ['GiB', 1024 ** 3],
    ['MiB', 1024 ** 2],
    ['KiB', 1024],
  ] as const) {
    if (bytes >= factor && bytes % factor === 0) return `${bytes / factor}${unit}`;
  }
  return `${bytes}B`;
}

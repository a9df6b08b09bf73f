/**
 * Progress of long operations, on stderr so stdout stays data. On a terminal: one line redrawn in
 * place (a bar, done/total, percent, rate). Elsewhere (logs, CI, pipes): a plain line for every
 * further tenth done or every 2 s, whichever comes first. With --json: nothing while it runs, then
 * one JSON line. Operations that end within a second print nothing but their result.
 */

/** Where progress is written; `process.stderr` by default. */
export interface ProgressStream {
  isTTY?: boolean;
  write(text: string): unknown;
}

export interface ProgressOptions {
  /** What is being done, printed first: `replay dlq.billing.orders`. */
  label: string;
  /** What is counted: `records`, `partitions`, `topics`. */
  unit: string;
  /** How many there are, when known: without it, no bar and no percent. */
  total?: number;
  /** --json: draw nothing, and write one JSON line at the end. */
  json?: boolean;
  /** A plain line for every update, at once: for a few slow steps (benchmark suites). */
  everyStep?: boolean;
  /** Show the rate (`1200/s`). Default true; off for steps of unlike sizes. */
  rate?: boolean;
  /** Default `process.stderr`. */
  stream?: ProgressStream;
  /** Plain output: a line at least this often while it runs. Default 2000 ms. */
  intervalMs?: number;
  /** Nothing is drawn before this much time has passed (but for `everyStep`). Default 1000 ms. */
  quietMs?: number;
  /** The clock; for tests. */
  now?: () => number;
}

export interface Progress {
  /**
   * How many are done so far (absolute), and the total when it becomes known or changes. `note`
   * is added to a plain line (`embedded: 14 figures`).
   */
  update(done: number, total?: number, note?: string): void;
  /** The last figures on their own line, or the JSON line; `note` is appended (`stopped`). */
  finish(note?: string): void;
  /** Removes a bar drawn on a terminal, before an error message. */
  clear(): void;
}

const BAR = 24;
const REDRAW_MS = 100;

export function createProgress(options: ProgressOptions): Progress {
  const stream = options.stream ?? process.stderr;
  const now = options.now ?? Date.now;
  const interval = options.intervalMs ?? 2000;
  const quiet = options.everyStep ? 0 : (options.quietMs ?? 1000);
  const tty = stream.isTTY === true && !options.everyStep;
  const started = now();
  let total = options.total;
  let done = 0;
  let drawn = false;
  let lastAt = started;
  let lastTenth = 0;
  let finished = false;

  const figures = (at: number): string => {
    const seconds = (at - started) / 1000;
    const rate = seconds > 0 ? Math.round(done / seconds) : undefined;
    const parts = [total === undefined ? `${done} ${options.unit}` : `${done}/${total} ${options.unit}`];
    if (total !== undefined && total > 0) parts.push(`${Math.floor((done / total) * 100)}%`);
    if (rate !== undefined && options.rate !== false) parts.push(`${rate}/s`);
    return parts.join('  ');
  };
  const bar = (): string => {
    if (total === undefined || total <= 0) return '';
    const full = Math.min(BAR, Math.round((done / total) * BAR));
    return `[${'#'.repeat(full)}${'.'.repeat(BAR - full)}]  `;
  };
  const tenth = (): number => (total === undefined || total <= 0 ? 0 : Math.floor((done / total) * 10));

  return {
    update(n, newTotal, note) {
      done = n;
      if (newTotal !== undefined) total = newTotal;
      if (finished || options.json) return;
      const at = now();
      if (at - started < quiet) return;
      if (tty) {
        if (drawn && at - lastAt < REDRAW_MS) return;
        stream.write(`\r\x1b[2K${options.label}  ${bar()}${figures(at)}`);
      } else {
        const t = tenth();
        const complete = total !== undefined && done >= total;
        // The last step is left to `finish`, which says how long it all took.
        const due = options.everyStep || (!complete && (at - lastAt >= interval || t > lastTenth));
        if (!due) return;
        stream.write(`${options.label}: ${figures(at)}${note ? `  ${note}` : ''}\n`);
        lastTenth = t;
      }
      drawn = true;
      lastAt = at;
    },
    finish(note) {
      if (finished) return;
      finished = true;
      const at = now();
      const elapsedMs = at - started;
      if (options.json) {
        stream.write(
          `${JSON.stringify({ progress: options.label, done, ...(total === undefined ? {} : { total }), elapsedMs, ...(note === undefined ? {} : { note }) })}\n`,
        );
        return;
      }
      if (!drawn && elapsedMs < quiet) return;
      const tail = `${figures(at)}  in ${(elapsedMs / 1000).toFixed(1)} s${note ? `  (${note})` : ''}`;
      stream.write(tty ? `\r\x1b[2K${options.label}  ${bar()}${tail}\n` : `${options.label}: ${tail}\n`);
    },
    clear() {
      if (tty && drawn && !finished) stream.write('\r\x1b[2K');
      finished = true;
    },
  };
}

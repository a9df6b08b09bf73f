/** Runs every step, in order, even when one fails; rethrows the first failure. For closing services. */
export async function runAll(steps: readonly (() => Promise<void>)[]): Promise<void> {
  let first: unknown;
  for (const step of steps) {
    try {
      await step();
    } catch (err) {
      first ??= err;
    }
  }
  if (first !== undefined) throw first;
}

#!/usr/bin/env node
// The `eventline` command. Eventline runs its TypeScript sources directly, which needs Node.js 24.
import module from 'node:module';

const major = Number(process.versions.node.split('.')[0]);
if (major < 24) {
  process.stderr.write(
    `eventline: error: Node.js 24 or newer is required (this is ${process.version}); run it through npx or npm scripts in the project, which use the pinned Node\n`,
  );
  process.exit(1);
}
// Cache compiled (and type-stripped) modules between runs: a warm start skips most start-up work.
module.enableCompileCache?.();
const { main } = await import('../src/cli/main.ts');
process.exitCode = await main(process.argv.slice(2));

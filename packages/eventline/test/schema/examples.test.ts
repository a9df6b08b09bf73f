import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../../../../', import.meta.url));

test('the checked-in generated types are what `eventline schemas codegen` writes today', () => {
  const files = ['examples/schemas/task-created.avsc', 'examples/schemas/task-completed.avsc'];
  const generated = execFileSync(
    process.execPath,
    ['packages/eventline/bin/eventline.mjs', 'schemas', 'codegen', ...files],
    { cwd: root, encoding: 'utf8' },
  );
  const checkedIn = readFileSync(new URL('examples/schemas/todo-events.ts', `file://${root}`), 'utf8');
  assert.equal(
    generated,
    checkedIn,
    'regenerate with: npx eventline schemas codegen examples/schemas/task-created.avsc examples/schemas/task-completed.avsc --out examples/schemas/todo-events.ts',
  );
});

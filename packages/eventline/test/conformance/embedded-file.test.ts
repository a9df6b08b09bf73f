import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runConformance } from './suite.ts';
import { urlTarget } from './target.ts';

const dir = mkdtempSync(join(tmpdir(), 'eventline-conformance-'));
runConformance(
  urlTarget('embedded (file)', `sqlite:${join(dir, 'events.db')}`, async () =>
    rmSync(dir, { recursive: true, force: true }),
  ),
);

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after } from 'node:test';
import { operationsSuite } from './operations-suite.ts';

const dir = mkdtempSync(join(tmpdir(), 'eventline-cli-ops-'));
after(() => rmSync(dir, { recursive: true, force: true }));
operationsSuite('the embedded engine', `sqlite:${join(dir, 'events.db')}`);

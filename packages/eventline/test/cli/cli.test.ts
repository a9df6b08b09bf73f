import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after } from 'node:test';
import { cliSuite } from './suite.ts';

const dir = mkdtempSync(join(tmpdir(), 'eventline-cli-'));
after(() => rmSync(dir, { recursive: true, force: true }));
cliSuite('the embedded engine', `sqlite:${join(dir, 'events.db')}`);

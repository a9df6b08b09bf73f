/**
 * A private PostgreSQL server for tests that take the database away: started from the machine's
 * PostgreSQL binaries in a temporary directory, on a free loopback port, with trust auth. Never the
 * shared server on 5432, which other tests use.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { chownSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import pg from 'pg';

const run = promisify(execFile);

export interface PostgresServer {
  /** `postgres://postgres@127.0.0.1:<port>/postgres`; the port stays the same across restarts. */
  readonly url: string;
  /**
   * Kills the server like a crash: the postmaster and every process it started get SIGKILL (no
   * shutdown, no checkpoint; the next start recovers from the WAL). Resolves once all are gone.
   */
  stop(): Promise<void>;
  /** Starts it again on the same port and data; resolves once it accepts connections. */
  start(): Promise<void>;
  /** Stops it (as `stop`) and removes its files. */
  close(): Promise<void>;
}

/** Servers not closed yet: killed and removed when the process exits, whatever the tests did. */
const live = new Set<{ pids(): number[]; dir: string }>();
let exitHookInstalled = false;

/**
 * Creates a cluster with `initdb` in a temporary directory and starts it; resolves once it accepts
 * connections. Under root (PostgreSQL refuses to run as root) the binaries run as the `postgres`
 * user, which owns the directory; the server gets the parent-death signal SIGKILL, so it cannot
 * outlive the test process even if that is killed. Throws when no PostgreSQL is installed under
 * `/usr/lib/postgresql/<version>/bin` or the server does not come up within 60 s (with its log).
 */
export async function startPostgres(): Promise<PostgresServer> {
  const bin = binDir();
  const owner = process.getuid?.() === 0 ? postgresUser() : undefined;
  const dir = mkdtempSync(join(tmpdir(), 'eventline-pg-'));
  if (owner) chownSync(dir, owner.uid, owner.gid);
  const data = join(dir, 'data');
  // As the postgres user, without the caller's HOME and in a directory it may enter.
  const asOwner = (cmd: string, args: string[]): [string, string[]] =>
    owner
      ? [
          'setpriv',
          [
            '--pdeathsig',
            'KILL',
            `--reuid=${owner.uid}`,
            `--regid=${owner.gid}`,
            '--clear-groups',
            '--',
            cmd,
            ...args,
          ],
        ]
      : [cmd, args];
  const env = { PATH: process.env.PATH ?? '/usr/bin:/bin', LC_ALL: 'C' };

  let child: ChildProcess | undefined;
  const log: string[] = [];
  const server = { dir, pids: () => (child?.pid === undefined ? [] : [child.pid, ...childrenOf(child.pid)]) };
  live.add(server);
  installExitHook();

  try {
    await run(
      ...asOwner(join(bin, 'initdb'), [
        '-D',
        data,
        '-U',
        'postgres',
        '--auth=trust',
        '--no-sync',
        '-E',
        'UTF8',
      ]),
      { cwd: dir, env },
    );
  } catch (err) {
    live.delete(server);
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  const port = await freePort();
  const url = `postgres://postgres@127.0.0.1:${port}/postgres`;

  const start = async (): Promise<void> => {
    if (child) throw new Error('postgres-server: already running');
    // fsync=off: the outages here kill processes, not the machine, so what was written to the
    // kernel survives them; synchronous_commit stays on, so an acknowledged commit is in the WAL.
    const [cmd, args] = asOwner(join(bin, 'postgres'), [
      '-D',
      data,
      '-p',
      String(port),
      '-h',
      '127.0.0.1',
      '-k',
      dir,
      '-c',
      'fsync=off',
      '-c',
      'shared_buffers=16MB',
    ]);
    const proc = spawn(cmd, args, { cwd: dir, env, stdio: ['ignore', 'ignore', 'pipe'] });
    child = proc;
    proc.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
      log.push(...chunk.split('\n').filter(Boolean));
      log.splice(0, Math.max(0, log.length - 30));
    });
    const deadline = Date.now() + 60_000;
    for (;;) {
      if (proc.exitCode !== null || proc.signalCode !== null) {
        child = undefined;
        throw new Error(`postgres-server: the server exited while starting:\n${log.join('\n')}`);
      }
      const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 2_000 });
      client.on('error', () => {});
      try {
        await client.connect();
        await client.end();
        return;
      } catch {
        await client.end().catch(() => {});
      }
      if (Date.now() > deadline) {
        await stop();
        throw new Error(`postgres-server: no connection after 60 s:\n${log.join('\n')}`);
      }
      await sleep(100);
    }
  };

  const stop = async (): Promise<void> => {
    const proc = child;
    if (!proc?.pid) return;
    const exited = new Promise<void>((resolve) => {
      if (proc.exitCode !== null || proc.signalCode !== null) resolve();
      else proc.once('exit', () => resolve());
    });
    // Frozen, the postmaster starts no new backend between listing its children and the kill.
    signal(proc.pid, 'SIGSTOP');
    const pids = [proc.pid, ...childrenOf(proc.pid)];
    for (const pid of pids) signal(pid, 'SIGKILL');
    await exited;
    // Children of a dead postmaster belong to init now; the next start needs them gone.
    const deadline = Date.now() + 30_000;
    while (pids.some(running)) {
      if (Date.now() > deadline)
        throw new Error(`postgres-server: processes ${pids.filter(running)} survived SIGKILL`);
      await sleep(20);
    }
    child = undefined;
  };

  const close = async (): Promise<void> => {
    try {
      await stop();
    } finally {
      live.delete(server);
      rmSync(dir, { recursive: true, force: true });
    }
  };

  try {
    await start();
  } catch (err) {
    await close();
    throw err;
  }
  return { url, start, stop, close };
}

/** The newest `/usr/lib/postgresql/<version>/bin` that has a `postgres` binary. */
function binDir(): string {
  const root = '/usr/lib/postgresql';
  let versions: string[] = [];
  try {
    versions = readdirSync(root);
  } catch {}
  const usable = versions
    .filter((v) => {
      try {
        return readdirSync(join(root, v, 'bin')).includes('postgres');
      } catch {
        return false;
      }
    })
    .sort((a, b) => Number.parseFloat(b) - Number.parseFloat(a));
  if (usable.length === 0) throw new Error(`postgres-server: no PostgreSQL under ${root}/<version>/bin`);
  return join(root, usable[0]!, 'bin');
}

function postgresUser(): { uid: number; gid: number } {
  const line = readFileSync('/etc/passwd', 'utf8')
    .split('\n')
    .find((l) => l.startsWith('postgres:'));
  const [, , uid, gid] = line?.split(':') ?? [];
  if (uid === undefined || gid === undefined) {
    throw new Error('postgres-server: running as root needs a "postgres" user (PostgreSQL refuses root)');
  }
  return { uid: Number(uid), gid: Number(gid) };
}

/** `/proc/<pid>/stat` fields after the command name (which may hold spaces): state, ppid, … */
function stat(pid: number): string[] | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return text.slice(text.lastIndexOf(')') + 2).split(' ');
  } catch {
    return undefined;
  }
}

function childrenOf(parent: number): number[] {
  return readdirSync('/proc')
    .filter((name) => /^\d+$/.test(name))
    .map(Number)
    .filter((pid) => stat(pid)?.[1] === String(parent));
}

/** A zombie has released everything; it only waits to be reaped. */
function running(pid: number): boolean {
  const state = stat(pid)?.[0];
  return state !== undefined && state !== 'Z';
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch {}
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const address = probe.address();
      probe.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject()));
    });
  });
}

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    for (const server of live) {
      for (const pid of server.pids()) signal(pid, 'SIGKILL');
      rmSync(server.dir, { recursive: true, force: true });
    }
  });
}

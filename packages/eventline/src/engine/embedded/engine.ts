import type { DatabaseSync } from 'node:sqlite';
import { Worker } from 'node:worker_threads';
import { EventlineError, fail } from '../../errors.ts';
import type { TopicConfig, TopicSpec } from '../../topic.ts';
import type {
  AppendRecord,
  AppendResult,
  CommittedOffset,
  DataWatch,
  Engine,
  EngineCapabilities,
  FetchOptions,
  GroupDescription,
  GroupMember,
  GroupMemberOptions,
  PartitionOffsets,
  StoredRecord,
  TopicDescription,
} from '../types.ts';
import { EmbeddedGroups } from './groups.ts';
import { EmbeddedLog } from './log.ts';
import { runMaintenancePass } from './maintenance.ts';
import type { MaintenanceReply, MaintenanceRequest, MaintenanceWorkerData } from './maintenance-worker.ts';
import { ChangeNotifier } from './notifier.ts';
import { ensureSchema, SCHEMA_VERSION } from './schema.ts';
import { openDatabase, sqliteCode, wrapSqliteError, writeTransaction } from './sqlite.ts';
import { AppendWriter } from './writer.ts';

export interface EmbeddedEngineOptions {
  /** How long an operation keeps retrying while another process holds the write lock. Default 10 s. */
  lockTimeoutMs?: number;
  /** Period of retention and compaction in the background. Default 30 s. */
  maintenanceIntervalMs?: number;
  /** Period of WAL checkpoints in the background. Default 1 s. */
  checkpointIntervalMs?: number;
  /** Delay before the maintenance worker starts, keeping it out of short-lived processes. Default 1 s. */
  maintenanceStartDelayMs?: number;
}

const MEMORY = ':memory:';

/**
 * The embedded engine: a durable partitioned log with consumer groups in one SQLite file (or in
 * memory), shared by every process that opens the same file.
 */
export class EmbeddedEngine implements Engine {
  readonly kind = 'sqlite' as const;
  readonly displayUrl: string;
  readonly capabilities: EngineCapabilities;
  readonly #path: string;
  readonly #data: DatabaseSync;
  readonly #meta: DatabaseSync;
  readonly #notifier: ChangeNotifier;
  readonly #log: EmbeddedLog;
  readonly #groups: EmbeddedGroups;
  readonly #writer: AppendWriter;
  readonly #options: Required<EmbeddedEngineOptions>;
  #worker: Worker | undefined;
  #workerTimer: NodeJS.Timeout | undefined;
  #inlineTimer: NodeJS.Timeout | undefined;
  #requests = new Map<number, { resolve(): void; reject(err: unknown): void }>();
  #nextRequest = 0;
  #closed = false;

  private constructor(
    path: string,
    data: DatabaseSync,
    meta: DatabaseSync,
    options: Required<EmbeddedEngineOptions>,
  ) {
    this.#path = path;
    this.#data = data;
    this.#meta = meta;
    this.#options = options;
    const memory = path === MEMORY;
    this.displayUrl = memory ? 'sqlite::memory:' : `sqlite:${path}`;
    this.capabilities = { sharedAcrossProcesses: !memory, replication: false };
    this.#notifier = new ChangeNotifier(memory ? undefined : path);
    this.#log = new EmbeddedLog(data, path, this.#notifier, options.lockTimeoutMs);
    this.#writer = new AppendWriter({
      db: data,
      path,
      lockTimeoutMs: options.lockTimeoutMs,
      notifier: this.#notifier,
      log: this.#log,
    });
    this.#groups = new EmbeddedGroups(meta, this.#log, this.#notifier, options.lockTimeoutMs);
    if (memory) {
      this.#inlineTimer = setInterval(() => {
        try {
          runMaintenancePass(this.#data, { force: false });
        } catch {
          // retried at the next tick
        }
      }, options.maintenanceIntervalMs).unref();
    } else {
      this.#workerTimer = setTimeout(() => this.#startWorker(), options.maintenanceStartDelayMs).unref();
    }
  }

  /** Opens (creating when missing) the database at `path`, or an in-memory one for `':memory:'`. */
  static async open(path: string, options: EmbeddedEngineOptions = {}): Promise<EmbeddedEngine> {
    const full: Required<EmbeddedEngineOptions> = {
      lockTimeoutMs: options.lockTimeoutMs ?? 10_000,
      maintenanceIntervalMs: options.maintenanceIntervalMs ?? 30_000,
      checkpointIntervalMs: options.checkpointIntervalMs ?? 1000,
      maintenanceStartDelayMs: options.maintenanceStartDelayMs ?? 1000,
    };
    const data = openDatabase(path, { synchronous: 'FULL' });
    let meta = data;
    try {
      await initSchema(data, path, full.lockTimeoutMs);
      // Group metadata (heartbeats, offsets) needs no fsync per commit: losing the last commits to
      // a power cut means redelivery, which at-least-once allows. Records always get one.
      if (path !== MEMORY) meta = openDatabase(path, { synchronous: 'NORMAL' });
    } catch (err) {
      data.close();
      throw err;
    }
    return new EmbeddedEngine(path, data, meta, full);
  }

  #startWorker(): void {
    if (this.#worker || this.#closed) return;
    const workerData: MaintenanceWorkerData = {
      path: this.#path,
      checkpointIntervalMs: this.#options.checkpointIntervalMs,
      retentionIntervalMs: this.#options.maintenanceIntervalMs,
    };
    const worker = new Worker(new URL('./maintenance-worker.ts', import.meta.url), { workerData });
    worker.unref();
    worker.on('message', (msg: MaintenanceReply) => {
      const req = this.#requests.get(msg.id);
      if (req === undefined) return;
      this.#requests.delete(msg.id);
      if (msg.type === 'done') req.resolve();
      else req.reject(new EventlineError('EVENTLINE_ERR_INTERNAL', `maintenance failed: ${msg.message}`));
    });
    worker.on('error', (err) => {
      for (const req of this.#requests.values()) req.reject(err);
      this.#requests.clear();
      this.#worker = undefined;
    });
    worker.on('exit', () => {
      for (const req of this.#requests.values()) {
        req.reject(new EventlineError('EVENTLINE_ERR_CLOSED', 'the maintenance worker stopped'));
      }
      this.#requests.clear();
      this.#worker = undefined;
    });
    this.#worker = worker;
  }

  #check(): void {
    if (this.#closed) fail('EVENTLINE_ERR_CLOSED', `the engine for ${this.displayUrl} is closed`);
  }

  async createTopics(specs: TopicSpec[]): Promise<void> {
    this.#check();
    await this.#log.createTopics(specs);
  }

  async alterTopic(name: string, changes: Partial<TopicConfig>): Promise<void> {
    this.#check();
    await this.#log.alterTopic(name, changes);
  }

  async listTopics(): Promise<string[]> {
    this.#check();
    return this.#log.listTopics();
  }

  async describeTopics(names: string[]): Promise<TopicDescription[]> {
    this.#check();
    return this.#log.describeTopics(names);
  }

  async partitionCount(topic: string): Promise<number> {
    this.#check();
    return this.#log.requireTopic(topic).partitions;
  }

  async listOffsets(topic: string, partitions?: number[]): Promise<PartitionOffsets[]> {
    this.#check();
    return this.#log.partitionOffsets(this.#log.requireTopic(topic, true), partitions);
  }

  async deleteTopics(names: string[]): Promise<void> {
    this.#check();
    await this.#log.deleteTopics(names);
  }

  append(topic: string, records: AppendRecord[]): Promise<AppendResult[]> {
    if (this.#closed)
      return Promise.reject(new EventlineError('EVENTLINE_ERR_CLOSED', 'the engine is closed'));
    return this.#writer.append(topic, records);
  }

  async fetch(
    topic: string,
    partition: number,
    offset: number,
    options: FetchOptions,
  ): Promise<StoredRecord[]> {
    this.#check();
    return this.#log.fetch(topic, partition, offset, options);
  }

  async offsetForTimestamp(topic: string, partition: number, timestamp: number): Promise<number> {
    this.#check();
    return this.#log.offsetForTimestamp(topic, partition, timestamp);
  }

  watch(): DataWatch {
    let seen = this.#notifier.seq;
    return {
      wait: async (maxWaitMs, signal) => {
        await this.#notifier.wait(seen, maxWaitMs, signal);
        seen = this.#notifier.seq;
      },
    };
  }

  createGroupMember(options: GroupMemberOptions): GroupMember {
    this.#check();
    return this.#groups.createMember(options);
  }

  async listGroups(): Promise<string[]> {
    this.#check();
    return this.#groups.listGroups();
  }

  async describeGroup(group: string): Promise<GroupDescription> {
    this.#check();
    return this.#groups.describeGroup(group);
  }

  async groupOffsets(group: string): Promise<CommittedOffset[]> {
    this.#check();
    return this.#groups.groupOffsets(group);
  }

  async setGroupOffsets(group: string, offsets: CommittedOffset[]): Promise<void> {
    this.#check();
    await this.#groups.setGroupOffsets(group, offsets);
  }

  async runMaintenance(): Promise<void> {
    this.#check();
    await this.#writer.drain();
    if (this.#path === MEMORY) {
      runMaintenancePass(this.#data, { force: true });
      return;
    }
    this.#startWorker();
    const id = ++this.#nextRequest;
    const worker = this.#worker!;
    worker.ref();
    try {
      await new Promise<void>((resolve, reject) => {
        this.#requests.set(id, { resolve, reject });
        worker.postMessage({ type: 'run', id, force: true } satisfies MaintenanceRequest);
      });
    } finally {
      if (this.#requests.size === 0) worker.unref();
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#writer.drain();
    clearTimeout(this.#workerTimer);
    clearInterval(this.#inlineTimer);
    const worker = this.#worker;
    if (worker) {
      const exited = new Promise((resolve) => worker.once('exit', resolve));
      worker.ref(); // wait for it to finish even if nothing else keeps the process up
      worker.postMessage({ type: 'stop' } satisfies MaintenanceRequest);
      const timer = setTimeout(() => void worker.terminate(), 5000);
      await exited;
      clearTimeout(timer);
    }
    this.#notifier.close();
    if (this.#meta !== this.#data) this.#meta.close();
    this.#data.close();
  }
}

const SQLITE_ERROR = 1;

/** Checks the layout version with a plain read; creates the schema (under the write lock) when missing. */
async function initSchema(db: DatabaseSync, path: string, lockTimeoutMs: number): Promise<void> {
  const where = `opening ${path}`;
  try {
    const row = db.prepare("SELECT value FROM el_meta WHERE key = 'schema_version'").get() as
      | { value: string }
      | undefined;
    if (row !== undefined && Number(row.value) === SCHEMA_VERSION) return;
  } catch (err) {
    if (sqliteCode(err) !== SQLITE_ERROR) throw wrapSqliteError(err, where);
  }
  await writeTransaction(db, { lockTimeoutMs, what: where }, () => ensureSchema(db, where));
}

import { after, before, describe, test } from 'node:test';
import type { ConnectOptions, Eventline } from '../../src/client.ts';
import { defineTopic, type Topic, type TopicOptions } from '../../src/topic.ts';
import { unique } from '../helpers.ts';
import { consumeCases } from './cases/consume.ts';
import { dbOutageCases } from './cases/db-outage.ts';
import { deadLetterCases } from './cases/dead-letters.ts';
import { dedupCases } from './cases/dedup.ts';
import { groupCases } from './cases/groups.ts';
import { metricsCases } from './cases/metrics.ts';
import { outboxCases } from './cases/outbox.ts';
import { processCases } from './cases/processes.ts';
import { publishCases } from './cases/publish.ts';
import { requestReplyCases } from './cases/request-reply.ts';
import { retentionCases } from './cases/retention.ts';
import { retryCases } from './cases/retries.ts';
import { schemaCases } from './cases/schemas.ts';
import { viewCases } from './cases/views.ts';
import type { ConformanceTarget, TargetDescriptor } from './target.ts';

/** What a case gets: a client, and fresh topics and groups no other case uses. */
export interface CaseContext {
  target: ConformanceTarget;
  bus: Eventline;
  /** Declares a topic with a unique name (from `base`) and ensures it. */
  topic<V = unknown, K = string>(base: string, options?: TopicOptions<V, K>): Promise<Topic<V, K>>;
  /** A unique consumer group name. */
  group(base: string): string;
  /** Another client of the same engine; closed after the case. */
  connect(options?: ConnectOptions): Promise<Eventline>;
}

export interface ConformanceCase {
  name: string;
  /** `processes`: needs an engine other processes can open. */
  needs?: 'processes';
  timeoutMs?: number;
  run(ctx: CaseContext): Promise<void>;
}

export const allCases: readonly ConformanceCase[] = [
  ...publishCases,
  ...consumeCases,
  ...groupCases,
  ...retentionCases,
  ...processCases,
  ...schemaCases,
  ...retryCases,
  ...dbOutageCases,
  ...deadLetterCases,
  ...dedupCases,
  ...outboxCases,
  ...requestReplyCases,
  ...viewCases,
  ...metricsCases,
];

/**
 * Registers the whole suite for one target. Each case runs on fresh topics and groups, with its
 * own clients, which are closed when it ends (also when it fails).
 */
export function runConformance(descriptor: TargetDescriptor): void {
  describe(`conformance on ${descriptor.name}`, () => {
    let target: ConformanceTarget;
    before(async () => {
      target = await descriptor.open();
    });
    after(async () => {
      await target?.close();
    });
    for (const c of allCases) {
      if (c.needs === 'processes' && !descriptor.shared) continue;
      test(c.name, { timeout: c.timeoutMs ?? 60_000 }, async () => {
        const clients: Eventline[] = [];
        const open = async (options?: ConnectOptions): Promise<Eventline> => {
          const client = await target.connect(options);
          clients.push(client);
          return client;
        };
        const bus = await open();
        const ctx: CaseContext = {
          target,
          bus,
          topic: async (base, options) => {
            const t = defineTopic(unique(base), options);
            await bus.ensureTopics([t]);
            return t;
          },
          group: (base) => unique(base),
          connect: open,
        };
        try {
          await c.run(ctx);
        } finally {
          await Promise.all(clients.map((cl) => cl.close()));
        }
      });
    }
  });
}

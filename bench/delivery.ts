/**
 * Delivery guarantees on the embedded engine, one run: view reads, request/reply across two
 * processes, what retries and dead letters cost a consumer, and what dedup with a SQLite store
 * costs. Each part measures its peer or baseline beside it (see the files it calls).
 */
import { runDedup } from './dedup.ts';
import type { Figure } from './lib.ts';
import { runRequestReply } from './request-reply.ts';
import { runRetries } from './retries.ts';
import { runViews } from './views.ts';

export async function runDelivery(options: { quick: boolean }): Promise<Figure[]> {
  return [
    ...(await runViews(options)),
    ...(await runRequestReply(options)),
    ...(await runRetries(options)),
    ...(await runDedup(options)),
  ];
}

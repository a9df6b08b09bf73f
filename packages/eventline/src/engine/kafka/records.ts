import { IS_CONTROL, type RecordsBatch } from '@platformatic/kafka';
import type { Header, StoredRecord } from '../types.ts';

const EMPTY = Buffer.alloc(0);

/**
 * Turns fetched Kafka record batches into stored records with offsets at or after `from`,
 * appending to `out`. Control batches (transaction markers) are skipped but still move the
 * position. Returns the next offset to fetch.
 */
export function recordsFromBatches(
  topic: string,
  partition: number,
  batches: readonly RecordsBatch[] | null | undefined,
  from: number,
  out: StoredRecord[],
): number {
  let next = from;
  for (const batch of batches ?? []) {
    const first = Number(batch.firstOffset);
    const last = first + batch.lastOffsetDelta;
    if (last + 1 > next) next = last + 1;
    if (batch.attributes & IS_CONTROL) continue;
    const firstTimestamp = Number(batch.firstTimestamp);
    for (const r of batch.records) {
      const offset = first + r.offsetDelta;
      if (offset < from) continue;
      const headers: Header[] = new Array(r.headers.length);
      for (let i = 0; i < r.headers.length; i++) {
        const [k, v] = r.headers[i]!;
        headers[i] = [k === null ? '' : k.toString('utf8'), v ?? EMPTY];
      }
      out.push({
        topic,
        partition,
        offset,
        timestamp: firstTimestamp + Number(r.timestampDelta),
        key: r.key,
        value: r.value,
        headers,
      });
    }
  }
  return next;
}

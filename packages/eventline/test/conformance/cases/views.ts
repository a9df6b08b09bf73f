import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { bytes, type Codec, json } from '../../../src/codec.ts';
import { isEventlineError } from '../../../src/errors.ts';
import { createView, type ViewChange, type ViewErrorInfo } from '../../../src/patterns/view.ts';
import { defineTopic, type Topic, type TopicOptions } from '../../../src/topic.ts';
import { waitFor } from '../../helpers.ts';
import type { CaseContext, ConformanceCase } from '../suite.ts';

type Price = { sku: string; cents: number };

/**
 * A JSON codec whose decoding waits until `open()` is called: a view using it cannot apply
 * anything (so cannot become ready) until then, without any timing in the test.
 */
export function gatedJson<T>(): { codec: Codec<T>; open(): void } {
  const gate = Promise.withResolvers<void>();
  let opened = false;
  const base = json<T>();
  return {
    codec: {
      ...base,
      bind: () => ({ ...base, prepareDecode: () => (opened ? undefined : gate.promise) }),
    },
    open: () => {
      opened = true;
      gate.resolve();
    },
  };
}

/** A compacted topic of prices keyed by SKU. */
function prices(
  ctx: CaseContext,
  base: string,
  options: TopicOptions<Price, string> = {},
): Promise<Topic<Price>> {
  return ctx.topic<Price>(base, { cleanupPolicy: 'compact', key: (p) => p.sku, ...options });
}

export const viewCases: ConformanceCase[] = [
  {
    name: 'view: ready only after the records present at start are applied; later ones arrive live',
    async run(ctx) {
      const t = await prices(ctx, 'view-ready', { partitions: 3 });
      await ctx.bus.publishBatch(
        t,
        Array.from({ length: 60 }, (_, i) => ({ value: { sku: `s${i % 20}`, cents: i } })),
      );
      const view = createView(ctx.bus, t);
      assert.equal(view.isReady, false);
      await view.ready({ timeout: '30s' });
      // Everything published before the view started is there the moment ready resolves.
      assert.equal(view.stats().applied, 60);
      assert.equal(view.size, 20);
      for (let k = 0; k < 20; k++) assert.deepEqual(view.get(`s${k}`), { sku: `s${k}`, cents: 40 + k });
      assert.equal(await view.lag(), 0);
      await ctx.bus.publish(t, { sku: 's3', cents: 1000 });
      await ctx.bus.publish(t, { sku: 'new', cents: 1 });
      await waitFor(
        'live records',
        () => view.get('new') !== undefined && view.get('s3')?.cents === 1000,
        30_000,
      );
      assert.equal(view.stats().applied, 62);
      assert.equal(view.size, 21);
      await view.close();
    },
  },
  {
    name: 'view: last write wins per key; a tombstone deletes the key; changes are announced',
    async run(ctx) {
      const t = await prices(ctx, 'view-lww', { partitions: 2 });
      await ctx.bus.publish(t, { sku: 'a', cents: 1 });
      await ctx.bus.publish(t, { sku: 'a', cents: 2 });
      await ctx.bus.publish(t, { sku: 'b', cents: 3 });
      await ctx.bus.publish(t, null, { key: 'b' });
      await ctx.bus.publish(t, null, { key: 'never-set' });
      const changes: ViewChange<Price>[] = [];
      const view = createView(ctx.bus, t, { onChange: (c) => changes.push(c) });
      await view.ready({ timeout: '30s' });
      assert.deepEqual([...view], [['a', { sku: 'a', cents: 2 }]]);
      assert.equal(view.has('b'), false);
      // A tombstone for a key the view never held changes nothing, so it is not announced.
      assert.deepEqual(
        changes.map((c) => [c.key, c.value?.cents, c.previous?.cents]),
        [
          ['a', 1, undefined],
          ['a', 2, 1],
          ['b', 3, undefined],
          ['b', undefined, 3],
        ],
      );
      const live: ViewChange<Price>[] = [];
      const off = view.onChange((c) => live.push(c));
      const r = await ctx.bus.publish(t, null, { key: 'a' });
      await waitFor('the live tombstone', () => !view.has('a'), 30_000);
      assert.deepEqual(live, [
        {
          key: 'a',
          value: undefined,
          previous: { sku: 'a', cents: 2 },
          partition: r.partition,
          offset: r.offset,
          timestamp: r.timestamp,
        },
      ]);
      off();
      await ctx.bus.publish(t, { sku: 'c', cents: 5 });
      await waitFor('c', () => view.has('c'), 30_000);
      assert.equal(live.length, 1, 'an unsubscribed listener is not called');
      assert.equal(view.size, 1);
      await view.close();
    },
  },
  {
    name: 'view: the fallback is used only while the view is not ready, and every use is counted',
    async run(ctx) {
      const gated = gatedJson<Price>();
      const t = await prices(ctx, 'view-fallback', { value: gated.codec });
      await ctx.bus.publish(t, { sku: 'a', cents: 10 });
      const asked: string[] = [];
      const view = createView(ctx.bus, t, {
        fallback: async (sku) => {
          asked.push(sku);
          return { sku, cents: -1 };
        },
      });
      assert.deepEqual(await view.getOrLoad('a'), { sku: 'a', cents: -1 });
      assert.deepEqual(await view.getOrLoad('zz'), { sku: 'zz', cents: -1 });
      assert.equal(view.isReady, false);
      assert.equal(view.stats().fallbackUses, 2);
      gated.open();
      await view.ready({ timeout: '30s' });
      assert.deepEqual(await view.getOrLoad('a'), { sku: 'a', cents: 10 });
      assert.equal(await view.getOrLoad('zz'), undefined);
      assert.deepEqual(asked, ['a', 'zz']);
      assert.equal(view.stats().fallbackUses, 2);
      await view.close();
    },
  },
  {
    name: 'view: a record that cannot be decoded is counted and reported; the view goes on',
    async run(ctx) {
      const t = await prices(ctx, 'view-poison');
      const raw = defineTopic(t.name, { value: bytes(), cleanupPolicy: 'compact' });
      await ctx.bus.publish(t, { sku: 'a', cents: 1 });
      const bad = await ctx.bus.publish(raw, Buffer.from('{not json'), { key: 'a' });
      await ctx.bus.publish(t, { sku: 'b', cents: 2 });
      const errors: [Error, ViewErrorInfo][] = [];
      const view = createView(ctx.bus, t, { onError: (e, info) => errors.push([e, info]) });
      await view.ready({ timeout: '30s' });
      assert.deepEqual(view.get('a'), { sku: 'a', cents: 1 }, 'the bad record did not replace the value');
      assert.deepEqual(view.get('b'), { sku: 'b', cents: 2 });
      assert.equal(view.stats().decodeErrors, 1);
      assert.equal(errors.length, 1);
      assert.ok(isEventlineError(errors[0]![0], 'EVENTLINE_ERR_DECODE'));
      assert.deepEqual(errors[0]![1], { topic: t.name, partition: 0, offset: bad.offset, poison: true });
      await ctx.bus.publish(raw, Buffer.from('also bad'), { key: 'c' });
      await ctx.bus.publish(t, { sku: 'c', cents: 3 });
      await waitFor('c after a live bad record', () => view.has('c'), 30_000);
      assert.equal(view.stats().decodeErrors, 2);
      await view.close();
    },
  },
  {
    name: 'view: a restart loads the snapshot and reads only the records after it',
    async run(ctx) {
      const t = await prices(ctx, 'view-persist', { partitions: 2 });
      const dir = mkdtempSync(join(tmpdir(), 'eventline-view-'));
      const path = join(dir, 'prices.db');
      try {
        await ctx.bus.publishBatch(
          t,
          Array.from({ length: 30 }, (_, i) => ({ value: { sku: `s${i}`, cents: i } })),
        );
        const first = createView(ctx.bus, t, { persist: { path } });
        await first.ready({ timeout: '30s' });
        assert.equal(first.stats().applied, 30);
        await first.close();
        await ctx.bus.publish(t, { sku: 's1', cents: 100 });
        await ctx.bus.publish(t, null, { key: 's2' });
        await ctx.bus.publish(t, { sku: 'new', cents: 7 });
        const second = createView(ctx.bus, t, { persist: { path } });
        await second.ready({ timeout: '30s' });
        assert.deepEqual(
          { restored: second.stats().restored, applied: second.stats().applied },
          { restored: 30, applied: 3 },
        );
        assert.equal(second.size, 30);
        assert.deepEqual(second.get('s1'), { sku: 's1', cents: 100 });
        assert.equal(second.has('s2'), false);
        assert.deepEqual(second.get('s29'), { sku: 's29', cents: 29 });
        assert.deepEqual(second.get('new'), { sku: 'new', cents: 7 });
        await second.close();
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  },
];

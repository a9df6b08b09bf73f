import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { parse } from 'yaml';
import { EventlineMetrics } from '../../src/observability/metrics.ts';
import { parsePrometheus } from './prometheus.ts';

const FILE = new URL('../../../../deploy/prometheus/eventline-alerts.yml', import.meta.url);

interface Rule {
  alert?: unknown;
  expr?: unknown;
  for?: unknown;
  labels?: Record<string, unknown>;
  annotations?: Record<string, unknown>;
}

/** Metric names in a PromQL expression: identifiers followed by `{`, `[`, `)` or an operator, not functions. */
function metricNames(expr: string): string[] {
  return [...expr.matchAll(/\b(eventline_[a-z_]+)\b/g)].map((m) => m[1]!);
}

test('the example alert rules parse and use only metrics Eventline exposes', async () => {
  const doc = parse(readFileSync(FILE, 'utf8')) as { groups?: { name?: unknown; rules?: Rule[] }[] };
  assert.ok(Array.isArray(doc.groups) && doc.groups.length > 0, 'a rules file has groups');
  const exposed = parsePrometheus(await new EventlineMetrics().text());
  const families = new Set(exposed.types.keys());
  const alerts = new Set<string>();
  const covered = new Set<string>();
  for (const group of doc.groups) {
    assert.equal(typeof group.name, 'string');
    assert.ok(Array.isArray(group.rules) && group.rules.length > 0);
    for (const rule of group.rules) {
      assert.match(String(rule.alert), /^[A-Z][A-Za-z]+$/, 'alert names are CamelCase');
      assert.ok(!alerts.has(String(rule.alert)), `${rule.alert} is defined twice`);
      alerts.add(String(rule.alert));
      assert.equal(typeof rule.expr, 'string');
      const expr = rule.expr as string;
      let depth = 0;
      for (const c of expr) {
        depth += c === '(' ? 1 : c === ')' ? -1 : 0;
        assert.ok(depth >= 0, `${rule.alert}: unbalanced parentheses`);
      }
      assert.equal(depth, 0, `${rule.alert}: unbalanced parentheses`);
      if (rule.for !== undefined) assert.match(String(rule.for), /^\d+[smhd]$/, `${rule.alert}: for`);
      assert.ok(['warning', 'critical'].includes(String(rule.labels?.severity)), `${rule.alert}: severity`);
      assert.ok(String(rule.annotations?.summary ?? '').length > 10, `${rule.alert}: summary`);
      assert.ok(String(rule.annotations?.description ?? '').length > 10, `${rule.alert}: description`);
      const names = metricNames(expr);
      assert.ok(names.length > 0, `${rule.alert} uses an Eventline metric`);
      for (const name of names) {
        assert.ok(families.has(name), `${rule.alert} uses ${name}, which Eventline does not expose`);
        covered.add(name);
      }
    }
  }
  // What the issue asks the example to watch: lag, dead letters and outbox age.
  for (const name of [
    'eventline_consumer_lag_seconds',
    'eventline_dead_letters_total',
    'eventline_outbox_oldest_age_seconds',
  ]) {
    assert.ok(covered.has(name), `no rule watches ${name}`);
  }
});

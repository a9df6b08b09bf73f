/**
 * The file `eventline topics apply` reads: YAML (or JSON) with a top-level `topics:` list, or map by
 * name, of topic declarations. Field names follow `defineTopic`, with the short names people write
 * in topic tables (`replication`, `cleanup`); every value is checked by the library's own
 * validation, and every problem of the file is reported at once, naming the file, topic and field.
 */
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import {
  defineTopic,
  normalizeTopicConfig,
  type Topic,
  type TopicSettings,
  validateTopicName,
} from '../topic.ts';
import { BadInputError } from './output.ts';

/** A topic as the file declares it. */
export interface DeclaredTopic {
  name: string;
  /** The settings the file gives (nothing else), in the library's names. */
  settings: TopicSettings;
  topic: Topic<unknown, string>;
  /** Documentation only: what the records are keyed by (`userId`). Printed, not enforced. */
  key?: string;
  /** Documentation only. */
  description?: string;
}

/** File field → `TopicSettings` name. */
const SETTINGS: Record<string, keyof TopicSettings> = {
  partitions: 'partitions',
  replication: 'replicationFactor',
  replicationFactor: 'replicationFactor',
  retention: 'retention',
  retentionBytes: 'retentionBytes',
  cleanup: 'cleanupPolicy',
  cleanupPolicy: 'cleanupPolicy',
  deleteRetention: 'deleteRetention',
  compression: 'compression',
  maxMessageBytes: 'maxMessageBytes',
  minInsyncReplicas: 'minInsyncReplicas',
  segmentMs: 'segmentMs',
  segmentBytes: 'segmentBytes',
  minCleanableDirtyRatio: 'minCleanableDirtyRatio',
  fsync: 'fsync',
};
const DOCUMENTATION = ['key', 'description'] as const;
const KNOWN = ['name', ...Object.keys(SETTINGS), ...DOCUMENTATION];

const isMap = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * Reads and checks a topics file. Throws BadInputError (exit code 2) listing every problem when the
 * file cannot be read or parsed, or when any declaration is invalid: then nothing may be applied.
 */
export function readTopicsFile(path: string): DeclaredTopic[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new BadInputError(`cannot read ${path}: ${(err as Error).message}`);
  }
  let doc: unknown;
  try {
    doc = path.toLowerCase().endsWith('.json') ? JSON.parse(text) : parseYaml(text);
  } catch (err) {
    const kind = path.toLowerCase().endsWith('.json') ? 'JSON' : 'YAML';
    const first = (err as Error).message.split('\n')[0]!.replace(/:$/, '');
    throw new BadInputError(`${path}: not valid ${kind}: ${first}`);
  }
  if (!isMap(doc) || !('topics' in doc)) {
    throw new BadInputError(
      `${path}: needs a top-level "topics:" list (or map by name) of topic declarations`,
    );
  }
  const problems: string[] = [];
  const extra = Object.keys(doc).filter((k) => k !== 'topics');
  if (extra.length > 0) problems.push(`unknown top-level field ${extra.map((k) => `"${k}"`).join(', ')}`);

  // Each entry with where it stands, for messages: `topics[2]` in a list, the name in a map.
  const entries: { where: string; name: unknown; fields: Record<string, unknown>; bad?: string }[] = [];
  const topics = doc.topics;
  if (Array.isArray(topics)) {
    topics.forEach((entry, i) => {
      const where = `topics[${i}]`;
      if (isMap(entry)) entries.push({ where, name: entry.name, fields: entry });
      else {
        const bad = `${where}: must be a map of settings with a name, got ${JSON.stringify(entry)}`;
        entries.push({ where, name: undefined, fields: {}, bad });
      }
    });
  } else if (isMap(topics)) {
    for (const [name, entry] of Object.entries(topics)) {
      const where = `topic "${name}"`;
      if (entry !== null && !isMap(entry)) {
        const bad = `${where}: must be a map of settings, got ${JSON.stringify(entry)}`;
        entries.push({ where, name, fields: {}, bad });
      } else if (entry !== null && 'name' in entry && entry.name !== name) {
        const bad = `${where}, field "name": is ${JSON.stringify(entry.name)}, not the name it is listed under`;
        entries.push({ where, name, fields: {}, bad });
      } else entries.push({ where, name, fields: entry ?? {} });
    }
  } else {
    problems.push(
      `"topics" must be a list (or map by name) of topic declarations, got ${JSON.stringify(topics)}`,
    );
  }
  if (entries.length === 0 && problems.length === 0) problems.push('declares no topics');

  const declared: DeclaredTopic[] = [];
  const seen = new Map<string, string>();
  for (const { where, name, fields, bad } of entries) {
    if (bad !== undefined) {
      problems.push(bad);
      continue;
    }
    const before = problems.length;
    let label = where;
    try {
      validateTopicName(name);
      label = `topic "${name}"`;
    } catch (err) {
      problems.push(`${where}, field "name": ${name === undefined ? 'missing' : (err as Error).message}`);
    }
    if (typeof name === 'string' && seen.has(name)) {
      problems.push(`${label}: declared twice (${seen.get(name)} and ${where})`);
    } else if (typeof name === 'string') seen.set(name, where);
    const settings: Record<string, unknown> = {};
    const given = new Map<string, string>();
    for (const [field, value] of Object.entries(fields)) {
      if (field === 'name') continue;
      if ((DOCUMENTATION as readonly string[]).includes(field)) {
        if (typeof value !== 'string' || value === '') {
          problems.push(`${label}, field "${field}": must be text, got ${JSON.stringify(value)}`);
        }
        continue;
      }
      const setting = Object.hasOwn(SETTINGS, field) ? SETTINGS[field] : undefined;
      if (setting === undefined) {
        problems.push(`${label}, field "${field}": unknown field; known fields: ${KNOWN.join(', ')}`);
        continue;
      }
      if (given.has(setting)) {
        problems.push(
          `${label}, field "${field}": says the same as "${given.get(setting)}"; give one of them`,
        );
        continue;
      }
      given.set(setting, field);
      // One setting at a time through the library's validation, so the message names the field.
      try {
        normalizeTopicConfig(String(name), { [setting]: value });
        settings[setting] = value;
      } catch (err) {
        const reason = (err as Error).message
          .replace(`topic ${String(name)}: `, '')
          .replace(new RegExp(`^${setting}:? `), '');
        problems.push(`${label}, field "${field}": ${reason}`);
      }
    }
    if (problems.length > before || typeof name !== 'string') continue;
    try {
      declared.push({
        name,
        settings: settings as TopicSettings,
        topic: defineTopic(name, settings as TopicSettings),
        ...(typeof fields.key === 'string' ? { key: fields.key } : {}),
        ...(typeof fields.description === 'string' ? { description: fields.description } : {}),
      });
    } catch (err) {
      // Settings fine alone but not together.
      problems.push(`${label}: ${(err as Error).message}`);
    }
  }
  if (problems.length > 0) {
    const count = `${problems.length} problem${problems.length === 1 ? '' : 's'}`;
    throw new BadInputError(
      `${path}: ${count}; nothing was applied:\n${problems.map((p) => `  ${p}`).join('\n')}`,
    );
  }
  return declared;
}

import { once } from 'node:events';
import { readFileSync, writeFileSync } from 'node:fs';
import { fail, isEventlineError } from '../../errors.ts';
import { parseSchemaText } from '../../schema/avro-types.ts';
import { generateTypes } from '../../schema/codegen.ts';
import { httpRegistry } from '../../schema/http-registry.ts';
import { openRegistry } from '../../schema/registry.ts';
import { startRegistryServer } from '../../schema/server.ts';
import {
  COMPATIBILITY_LEVELS,
  type CompatibilityLevel,
  type SchemaInput,
  type SchemaRegistry,
} from '../../schema/types.ts';
import { type Command, type CommandContext, intOption } from '../main.ts';
import { table, UsageError } from '../output.ts';

const REGISTRY_OPTION = { registry: { type: 'string' } } as const;

/**
 * `--registry URL`, else EVENTLINE_REGISTRY_URL, else the built-in registry on the engine. Read
 * here rather than through the connection so that an external registry needs no engine at all.
 */
export async function registryOf(ctx: Pick<CommandContext, 'values' | 'bus'>): Promise<SchemaRegistry> {
  const url = (ctx.values.registry as string | undefined) ?? process.env.EVENTLINE_REGISTRY_URL;
  if (url !== undefined && url !== '') return httpRegistry(url);
  return (await ctx.bus()).registry();
}

/** Reads a schema file; the error names the file. */
function readSchema(path: string): SchemaInput {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new UsageError(`cannot read ${path}: ${(err as Error).message}`);
  }
  try {
    parseSchemaText(text);
  } catch (err) {
    fail('EVENTLINE_ERR_SCHEMA_INVALID', `${path} is not JSON: ${(err as Error).message}`);
  }
  return { schema: text };
}

/** Runs a registry call on a file's schema; a refusal of the schema itself names the file. */
async function withFile<T>(file: string, call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (err) {
    if (isEventlineError(err, 'EVENTLINE_ERR_SCHEMA_INVALID')) {
      fail(err.code, `${file}: ${err.message}`, { cause: err, details: err.details });
    }
    throw err;
  }
}

function versionOption(raw: unknown): number | 'latest' {
  if (raw === undefined || raw === 'latest') return 'latest';
  if (typeof raw === 'string' && /^\d+$/.test(raw) && Number(raw) >= 1) return Number(raw);
  throw new UsageError(`--version needs a version number or 'latest', got ${JSON.stringify(raw)}`);
}

function levelOption(raw: string): CompatibilityLevel {
  const level = raw.toUpperCase();
  if (!(COMPATIBILITY_LEVELS as readonly string[]).includes(level)) {
    throw new UsageError(`--set needs one of ${COMPATIBILITY_LEVELS.join(', ')}, got ${JSON.stringify(raw)}`);
  }
  return level as CompatibilityLevel;
}

function pretty(schema: string): string {
  try {
    return JSON.stringify(JSON.parse(schema), null, 2);
  } catch {
    return schema;
  }
}

export const commands: Command[] = [
  {
    words: ['schemas', 'list'],
    usage: 'schemas list [--prefix P] [--deleted] [--registry URL]',
    summary: 'subjects with their latest version and schema id',
    positionals: 0,
    options: { ...REGISTRY_OPTION, prefix: { type: 'string' }, deleted: { type: 'boolean' } },
    async run(ctx) {
      const registry = await registryOf(ctx);
      const prefix = ctx.values.prefix as string | undefined;
      const subjects = await registry.subjects({
        ...(prefix === undefined ? {} : { prefix }),
        deleted: ctx.values.deleted === true,
      });
      const rows: (string | number)[][] = [];
      for (const subject of subjects) {
        const versions = await registry.versions(subject, { deleted: ctx.values.deleted === true });
        const latest = await registry
          .getVersion(subject, versions[versions.length - 1] ?? 'latest', { deleted: true })
          .catch(() => undefined);
        const data = { subject, versions, latestId: latest?.id ?? null };
        if (ctx.out.json) ctx.out.record(data, '');
        rows.push([subject, versions.length, latest?.version ?? '-', latest?.id ?? '-']);
      }
      if (!ctx.out.json) {
        ctx.out.info(
          rows.length === 0
            ? `no subjects in the ${registry.description} registry`
            : table(['SUBJECT', 'VERSIONS', 'LATEST', 'ID'], rows),
        );
      }
      return 0;
    },
  },
  {
    words: ['schemas', 'get'],
    usage: 'schemas get SUBJECT [--version V|latest] [--registry URL]',
    summary: 'print a version of a subject (default: the latest)',
    positionals: 1,
    options: { ...REGISTRY_OPTION, version: { type: 'string' } },
    async run(ctx) {
      const registry = await registryOf(ctx);
      const v = await registry.getVersion(ctx.positionals[0]!, versionOption(ctx.values.version));
      ctx.out.record(
        v,
        `subject ${v.subject}   version ${v.version}   id ${v.id}   type ${v.schemaType}\n${pretty(v.schema)}`,
      );
      return 0;
    },
  },
  {
    words: ['schemas', 'register'],
    usage: 'schemas register SUBJECT FILE [--registry URL]',
    summary: 'register a schema file under a subject (refused with a reason when incompatible)',
    positionals: 2,
    options: REGISTRY_OPTION,
    async run(ctx) {
      const [subject, file] = ctx.positionals as [string, string];
      const input = readSchema(file);
      const registry = await registryOf(ctx);
      const { id, version } = await withFile(file, () => registry.register(subject, input));
      ctx.out.record({ subject, id, version }, `registered ${subject} version ${version}, schema id ${id}`);
      return 0;
    },
  },
  {
    words: ['schemas', 'check'],
    usage: 'schemas check SUBJECT FILE [--version V|latest] [--registry URL]',
    summary: "test a schema file against the subject's compatibility level (exit 1 when incompatible)",
    positionals: 2,
    options: { ...REGISTRY_OPTION, version: { type: 'string' } },
    async run(ctx) {
      const [subject, file] = ctx.positionals as [string, string];
      const input = readSchema(file);
      const registry = await registryOf(ctx);
      const version = ctx.values.version === undefined ? undefined : versionOption(ctx.values.version);
      const result = await withFile(file, () => registry.testCompatibility(subject, input, version));
      ctx.out.record(
        { subject, ...result },
        result.compatible
          ? `compatible with ${subject}`
          : [`incompatible with ${subject}:`, ...result.messages.map((m) => `  - ${m}`)].join('\n'),
      );
      return result.compatible ? 0 : 1;
    },
  },
  {
    words: ['schemas', 'config'],
    usage: 'schemas config [SUBJECT] [--set LEVEL] [--registry URL]',
    summary: 'show or set the compatibility level (global, or of a subject)',
    positionals: [0, 1],
    options: { ...REGISTRY_OPTION, set: { type: 'string' } },
    async run(ctx) {
      const registry = await registryOf(ctx);
      const subject = ctx.positionals[0];
      const set = ctx.values.set as string | undefined;
      const scope = subject === undefined ? 'global' : `subject ${subject}`;
      if (set !== undefined) {
        const level = await registry.setConfig(subject, levelOption(set));
        ctx.out.record({ subject: subject ?? null, compatibilityLevel: level }, `${scope}: ${level}`);
        return 0;
      }
      const own =
        subject === undefined
          ? await registry.getConfig()
          : await registry.getConfig(subject).catch(() => undefined);
      const level = own ?? (await registry.getConfig());
      ctx.out.record(
        { subject: subject ?? null, compatibilityLevel: level, inherited: own === undefined },
        `${scope}: ${level}${own === undefined ? ' (the global level; the subject has none of its own)' : ''}`,
      );
      return 0;
    },
  },
  {
    words: ['schemas', 'codegen'],
    usage: 'schemas codegen [FILE.avsc ...] [--subject S ...] [--out FILE.ts] [--registry URL]',
    summary: 'generate TypeScript types from schema files or registered subjects',
    positionals: [0, 100],
    options: {
      ...REGISTRY_OPTION,
      subject: { type: 'string', multiple: true },
      out: { type: 'string', short: 'o' },
    },
    async run(ctx) {
      const subjects = (ctx.values.subject as string[] | undefined) ?? [];
      if (ctx.positionals.length === 0 && subjects.length === 0) {
        throw new UsageError('give schema files or --subject');
      }
      const schemas: { schema: unknown }[] = ctx.positionals.map((file) => ({
        schema: readSchema(file).schema,
      }));
      if (subjects.length > 0) {
        const registry = await registryOf(ctx);
        for (const s of subjects) {
          schemas.push({ schema: (await registry.getVersion(s, 'latest')).schema });
        }
      }
      const source = generateTypes(schemas, {
        header: `Generated by \`eventline schemas codegen\` from ${[...ctx.positionals, ...subjects].join(', ')}. Do not edit.`,
      });
      const out = ctx.values.out as string | undefined;
      const from = { files: ctx.positionals, subjects };
      if (out !== undefined) {
        writeFileSync(out, source);
        if (ctx.out.json) ctx.out.record({ ...from, out }, '');
        else ctx.out.note(`wrote ${out}`);
      } else if (ctx.out.json) ctx.out.record({ ...from, source }, '');
      else process.stdout.write(source);
      return 0;
    },
  },
  {
    words: ['registry'],
    usage: 'registry [--port 8081] [--host H] [--user U --password P]',
    summary: "serve the built-in schema registry over Confluent's REST API until stopped",
    positionals: 0,
    options: {
      port: { type: 'string', short: 'p' },
      host: { type: 'string' },
      user: { type: 'string' },
      password: { type: 'string' },
    },
    async run(ctx) {
      const port = intOption(ctx.values, 'port') ?? 8081;
      const username = (ctx.values.user as string | undefined) ?? process.env.EVENTLINE_REGISTRY_USER;
      const password = (ctx.values.password as string | undefined) ?? process.env.EVENTLINE_REGISTRY_PASSWORD;
      if ((username === undefined) !== (password === undefined)) {
        throw new UsageError('give both --user and --password (or neither)');
      }
      const bus = await ctx.bus();
      const registry = await openRegistry(bus.engine);
      // Closed on every path: an open registry follows its topic, which would keep the process
      // alive after a failed listen (port in use, unknown host).
      try {
        const server = await startRegistryServer(registry, {
          port,
          ...(ctx.values.host === undefined ? {} : { host: ctx.values.host as string }),
          ...(username !== undefined && password !== undefined ? { basicAuth: { username, password } } : {}),
        });
        ctx.out.record(
          { url: server.url, engine: bus.url, auth: username !== undefined },
          `schema registry on ${server.url} (engine ${bus.url}${username !== undefined ? ', basic auth' : ''}); Ctrl-C stops it`,
        );
        if (!ctx.signal.aborted) await once(ctx.signal, 'abort');
        await server.close();
      } finally {
        await registry.close();
      }
      return 0;
    },
  },
];

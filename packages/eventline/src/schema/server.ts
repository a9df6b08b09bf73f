import { createHash, timingSafeEqual } from 'node:crypto';
import Fastify, { type FastifyReply, type FastifyRequest } from 'fastify';
import { isEventlineError } from '../errors.ts';
import { type Logger, silentLogger } from '../observability/logger.ts';
import { checkVersion, registryError } from './registry.ts';
import {
  COMPATIBILITY_LEVELS,
  type CompatibilityLevel,
  REGISTRY_MODES,
  type RegistryMode,
  type SchemaInput,
  type SchemaReference,
  type SchemaRegistry,
  type SchemaType,
  type SubjectVersion,
} from './types.ts';

/**
 * Confluent Schema Registry's REST API over any {@link SchemaRegistry}, so Confluent's serializers,
 * kafkajs' `@kafkajs/confluent-schema-registry`, `@platformatic/kafka` and Kafka Connect can use
 * the built-in registry.
 *
 * Choices where Confluent leaves room or changed over time:
 * - `schemaType` is left out of responses when it is AVRO (5.5–7.x behaviour; every client reads a
 *   missing type as AVRO).
 * - A body that is not JSON answers 400 with `error_code` 400, as Confluent's rest-utils JSON
 *   exception mappers do; a body over `bodyLimit` answers 422 / 42209 (schema too large).
 * - Unknown routes answer 404 `{"error_code":404,"message":"HTTP 404 Not Found"}` (clients probing
 *   newer endpoints need the Confluent shape), a content type outside the accepted ones 415, and
 *   bad basic-auth credentials 401 — all with `{error_code, message}` bodies.
 * - Unknown query parameters are ignored; `normalize` is accepted and has no effect since schemas
 *   are always canonicalized. Contexts other than the default `.` are not supported.
 */

/** Options of {@link startRegistryServer}. */
export interface RegistryServerOptions {
  /** Default 8081; 0 picks a free port. */
  port?: number;
  /** Default `127.0.0.1`. */
  host?: string;
  /** When set, every request needs these HTTP Basic credentials (else 401). */
  basicAuth?: { username: string; password: string };
  /** Where server errors (5xx) are logged. Default: nothing is logged. */
  logger?: Logger;
  /** The largest request body, in bytes. Default 16 MiB. */
  bodyLimit?: number;
}

export interface RegistryServer {
  /** `http://host:port`, without credentials. */
  readonly url: string;
  readonly port: number;
  close(): Promise<void>;
}

const JSON_TYPE = 'application/vnd.schemaregistry.v1+json';
const ACCEPTED_TYPES = new Set([
  'application/vnd.schemaregistry.v1+json',
  'application/vnd.schemaregistry+json',
  'application/json',
  'application/octet-stream',
]);

/** An error that already knows its HTTP status and Confluent code. */
class HttpError extends Error {
  readonly status: number;
  readonly errorCode: number;
  constructor(status: number, errorCode: number, message: string) {
    super(message);
    this.status = status;
    this.errorCode = errorCode;
  }
}

type Query = Record<string, string | undefined>;
type Params = Record<string, string>;

function flag(query: Query, name: string): boolean {
  return query[name]?.toLowerCase() === 'true';
}

function parseId(raw: string | undefined): number {
  const id = Number(raw);
  if (raw === undefined || !/^\d+$/.test(raw) || !Number.isSafeInteger(id)) {
    throw registryError(40403, `Schema ${raw} not found`);
  }
  return id;
}

function schemaInput(body: unknown): SchemaInput {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new HttpError(400, 400, 'The request body must be a JSON object with a "schema" field');
  }
  const b = body as Record<string, unknown>;
  if (typeof b.schema !== 'string') throw registryError(42201, 'Invalid schema: "schema" must be a string');
  return {
    schema: b.schema,
    ...(b.schemaType === undefined || b.schemaType === null
      ? {}
      : { schemaType: b.schemaType as SchemaType }),
    ...(Array.isArray(b.references) ? { references: b.references as SchemaReference[] } : {}),
  };
}

function versionBody(v: SubjectVersion): Record<string, unknown> {
  return {
    subject: v.subject,
    version: v.version,
    id: v.id,
    ...(v.schemaType === 'AVRO' ? {} : { schemaType: v.schemaType }),
    schema: v.schema,
    ...(v.references === undefined || v.references.length === 0 ? {} : { references: v.references }),
    // Only seen with ?deleted=true; Confluent's clients ignore fields they do not know.
    ...(v.deleted === true ? { deleted: true } : {}),
  };
}

function levelOf(body: unknown): CompatibilityLevel {
  const b = (typeof body === 'object' && body !== null ? body : {}) as Record<string, unknown>;
  const raw = b.compatibility ?? b.compatibilityLevel;
  const level = typeof raw === 'string' ? raw.toUpperCase() : raw;
  if (!(COMPATIBILITY_LEVELS as readonly unknown[]).includes(level)) {
    throw registryError(
      42203,
      `Invalid compatibility level. Valid values are ${COMPATIBILITY_LEVELS.join(', ')}`,
    );
  }
  return level as CompatibilityLevel;
}

function modeOf(body: unknown): RegistryMode {
  const b = (typeof body === 'object' && body !== null ? body : {}) as Record<string, unknown>;
  const mode = typeof b.mode === 'string' ? b.mode.toUpperCase() : b.mode;
  if (!(REGISTRY_MODES as readonly unknown[]).includes(mode)) {
    throw registryError(42204, `Invalid mode. Valid values are ${REGISTRY_MODES.join(', ')}`);
  }
  return mode as RegistryMode;
}

function sha256(s: string): Buffer {
  return createHash('sha256').update(s).digest();
}

/**
 * Serves `registry` over Confluent Schema Registry's REST API. Resolves once listening. The
 * registry stays the caller's: `close()` stops the server only.
 *
 * Throws the listen error (e.g. EADDRINUSE) when the port cannot be bound.
 */
export async function startRegistryServer(
  registry: SchemaRegistry,
  options: RegistryServerOptions = {},
): Promise<RegistryServer> {
  const logger = options.logger ?? silentLogger;
  const bodyLimit = options.bodyLimit ?? 16 * 1024 * 1024;
  const app = Fastify({ logger: false, bodyLimit, return503OnClosing: true, forceCloseConnections: true });

  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'string' }, (req, body, done) => {
    const type = (req.headers['content-type'] ?? '').split(';')[0]?.trim().toLowerCase() ?? '';
    if (type !== '' && !ACCEPTED_TYPES.has(type)) {
      done(new HttpError(415, 415, 'HTTP 415 Unsupported Media Type'), undefined);
      return;
    }
    const text = String(body);
    if (text.trim() === '') {
      done(null, undefined);
      return;
    }
    try {
      done(null, JSON.parse(text));
    } catch (err) {
      done(
        new HttpError(400, 400, `Malformed JSON in the request body: ${(err as Error).message}`),
        undefined,
      );
    }
  });

  if (options.basicAuth !== undefined) {
    const expected = sha256(`${options.basicAuth.username}:${options.basicAuth.password}`);
    app.addHook('onRequest', async (req, reply) => {
      const header = req.headers.authorization ?? '';
      const match = /^Basic\s+(\S+)$/i.exec(header);
      const given = match?.[1] === undefined ? '' : Buffer.from(match[1], 'base64').toString('utf8');
      if (!timingSafeEqual(sha256(given), expected) || match === null) {
        reply.header('www-authenticate', 'Basic realm="eventline-schema-registry"');
        return send(reply, 401, { error_code: 401, message: 'Unauthorized' });
      }
    });
  }

  app.setNotFoundHandler((_req, reply) =>
    send(reply, 404, { error_code: 404, message: 'HTTP 404 Not Found' }),
  );

  app.setErrorHandler((err: unknown, req, reply) => {
    if (err instanceof HttpError)
      return send(reply, err.status, { error_code: err.errorCode, message: err.message });
    if (isEventlineError(err)) {
      const errorCode = err.details.errorCode;
      const status = err.details.status;
      if (typeof errorCode === 'number' && typeof status === 'number') {
        if (status >= 500) logger.error({ err, url: req.url }, 'schema registry request failed');
        return send(reply, status, { error_code: errorCode, message: err.message });
      }
      if (err.code === 'EVENTLINE_ERR_INVALID_ARGUMENT') {
        return send(reply, 422, { error_code: 422, message: err.message });
      }
      logger.error({ err, url: req.url }, 'schema registry request failed');
      return send(reply, 500, {
        error_code: 50001,
        message: `Error in the backend data store: ${err.message}`,
      });
    }
    const code = (err as { code?: unknown }).code;
    if (code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
      return send(reply, 422, {
        error_code: 42209,
        message: `Schema too large: the body exceeds ${bodyLimit} bytes`,
      });
    }
    const status = (err as { statusCode?: unknown }).statusCode;
    if (typeof status === 'number' && status >= 400 && status < 500) {
      return send(reply, status, { error_code: status, message: (err as Error).message });
    }
    logger.error({ err, url: req.url }, 'schema registry request failed');
    return send(reply, 500, { error_code: 500, message: 'Internal Server Error' });
  });

  type Handler = (req: FastifyRequest, query: Query, params: Params) => Promise<unknown>;
  const route = (method: 'GET' | 'POST' | 'PUT' | 'DELETE', url: string, handler: Handler): void => {
    app.route({
      method,
      url,
      handler: async (req, reply) => {
        const body = await handler(req, req.query as Query, req.params as Params);
        // A raw schema is already JSON text; everything else is serialized here.
        return typeof body === 'string' && url.endsWith('/schema')
          ? reply.status(200).header('content-type', JSON_TYPE).send(body)
          : send(reply, 200, body);
      },
    });
  };

  route('GET', '/', async () => ({}));
  route('GET', '/contexts', async () => ['.']);
  route('GET', '/schemas/types', () => registry.schemaTypes());

  route('GET', '/schemas', async (_req, q) => {
    const deleted = flag(q, 'deleted');
    const subjects = await registry.subjects({
      deleted,
      ...(q.subjectPrefix === undefined ? {} : { prefix: q.subjectPrefix }),
    });
    const out: Record<string, unknown>[] = [];
    for (const subject of subjects) {
      if (flag(q, 'latestOnly')) {
        out.push(versionBody(await registry.getVersion(subject, 'latest', { deleted })));
        continue;
      }
      for (const v of await registry.versions(subject, { deleted })) {
        out.push(versionBody(await registry.getVersion(subject, v, { deleted })));
      }
    }
    return out;
  });

  route('GET', '/schemas/ids/:id', async (_req, _q, p) => {
    const s = await registry.getById(parseId(p.id));
    return {
      ...(s.schemaType === 'AVRO' ? {} : { schemaType: s.schemaType }),
      schema: s.schema,
      ...(s.references === undefined || s.references.length === 0 ? {} : { references: s.references }),
    };
  });
  route(
    'GET',
    '/schemas/ids/:id/schema',
    async (_req, _q, p) => (await registry.getById(parseId(p.id))).schema,
  );
  route('GET', '/schemas/ids/:id/subjects', (_req, q, p) =>
    registry.subjectsForId(parseId(p.id), { deleted: flag(q, 'deleted') }),
  );
  route('GET', '/schemas/ids/:id/versions', (_req, q, p) =>
    registry.versionsForId(parseId(p.id), { deleted: flag(q, 'deleted') }),
  );

  route('GET', '/subjects', (_req, q) =>
    registry.subjects({
      deleted: flag(q, 'deleted'),
      deletedOnly: flag(q, 'deletedOnly'),
      ...(q.subjectPrefix === undefined || q.subjectPrefix === ':*:' ? {} : { prefix: q.subjectPrefix }),
    }),
  );
  route('POST', '/subjects/:subject', async (req, q, p) =>
    versionBody(
      await registry.lookup(p.subject ?? '', schemaInput(req.body), { deleted: flag(q, 'deleted') }),
    ),
  );
  route('DELETE', '/subjects/:subject', (_req, q, p) =>
    registry.deleteSubject(p.subject ?? '', { permanent: flag(q, 'permanent') }),
  );
  route('GET', '/subjects/:subject/versions', (_req, q, p) =>
    registry.versions(p.subject ?? '', { deleted: flag(q, 'deleted'), deletedOnly: flag(q, 'deletedOnly') }),
  );
  route('POST', '/subjects/:subject/versions', async (req, _q, p) => {
    const { id } = await registry.register(p.subject ?? '', schemaInput(req.body));
    return { id };
  });
  route('GET', '/subjects/:subject/versions/:version', async (_req, q, p) =>
    versionBody(
      await registry.getVersion(p.subject ?? '', checkVersion(p.version), { deleted: flag(q, 'deleted') }),
    ),
  );
  route(
    'GET',
    '/subjects/:subject/versions/:version/schema',
    async (_req, q, p) =>
      (await registry.getVersion(p.subject ?? '', checkVersion(p.version), { deleted: flag(q, 'deleted') }))
        .schema,
  );
  route('DELETE', '/subjects/:subject/versions/:version', (_req, q, p) =>
    registry.deleteVersion(p.subject ?? '', checkVersion(p.version), { permanent: flag(q, 'permanent') }),
  );
  route('GET', '/subjects/:subject/versions/:version/referencedby', async (_req, _q, p) => {
    const subject = p.subject ?? '';
    const version = checkVersion(p.version);
    const withRefs = registry as SchemaRegistry & {
      referencedBy?: (s: string, v: number | 'latest') => Promise<number[]>;
    };
    if (typeof withRefs.referencedBy === 'function') return withRefs.referencedBy(subject, version);
    await registry.getVersion(subject, version, { deleted: true });
    return [];
  });

  const compatibility = async (req: FastifyRequest, q: Query, p: Params): Promise<unknown> => {
    const version = p.version === undefined ? undefined : checkVersion(p.version);
    const result = await registry.testCompatibility(p.subject ?? '', schemaInput(req.body), version);
    return flag(q, 'verbose')
      ? { is_compatible: result.compatible, messages: result.messages }
      : { is_compatible: result.compatible };
  };
  route('POST', '/compatibility/subjects/:subject/versions/:version', compatibility);
  route('POST', '/compatibility/subjects/:subject/versions', compatibility);

  route('GET', '/config', async (_req, q) => ({
    compatibilityLevel: await registry.getConfig(undefined, { defaultToGlobal: flag(q, 'defaultToGlobal') }),
  }));
  route('PUT', '/config', async (req) => ({
    compatibility: await registry.setConfig(undefined, levelOf(req.body)),
  }));
  route('DELETE', '/config', async () => ({ compatibilityLevel: await registry.deleteConfig() }));
  route('GET', '/config/:subject', async (_req, q, p) => ({
    compatibilityLevel: await registry.getConfig(p.subject ?? '', {
      defaultToGlobal: flag(q, 'defaultToGlobal'),
    }),
  }));
  route('PUT', '/config/:subject', async (req, _q, p) => ({
    compatibility: await registry.setConfig(p.subject ?? '', levelOf(req.body)),
  }));
  route('DELETE', '/config/:subject', async (_req, _q, p) => ({
    compatibilityLevel: await registry.deleteConfig(p.subject ?? ''),
  }));

  route('GET', '/mode', async (_req, q) => ({
    mode: await registry.getMode(undefined, { defaultToGlobal: flag(q, 'defaultToGlobal') }),
  }));
  route('PUT', '/mode', async (req) => ({ mode: await registry.setMode(undefined, modeOf(req.body)) }));
  route('DELETE', '/mode', async () => ({ mode: await registry.deleteMode() }));
  route('GET', '/mode/:subject', async (_req, q, p) => ({
    mode: await registry.getMode(p.subject ?? '', { defaultToGlobal: flag(q, 'defaultToGlobal') }),
  }));
  route('PUT', '/mode/:subject', async (req, _q, p) => ({
    mode: await registry.setMode(p.subject ?? '', modeOf(req.body)),
  }));
  route('DELETE', '/mode/:subject', async (_req, _q, p) => ({
    mode: await registry.deleteMode(p.subject ?? ''),
  }));

  const host = options.host ?? '127.0.0.1';
  await app.listen({ port: options.port ?? 8081, host });
  const address = app.server.address();
  const port = typeof address === 'object' && address !== null ? address.port : (options.port ?? 8081);
  const shown = host.includes(':') ? `[${host}]` : host;
  return {
    url: `http://${shown}:${port}`,
    port,
    close: async () => {
      await app.close();
    },
  };
}

function send(reply: FastifyReply, status: number, body: unknown): FastifyReply {
  return reply.status(status).header('content-type', JSON_TYPE).send(JSON.stringify(body));
}

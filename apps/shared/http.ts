/**
 * The HTTP side every service shares: a Fastify app whose errors are JSON (`{ statusCode, error,
 * message, field? }`, a 400 naming the bad field), small validators for request bodies, the
 * `/metrics` route, and listening with the URL it ended up on.
 */
import { type Eventline, metricsHandler } from 'eventline';
import Fastify, { type FastifyError, type FastifyInstance } from 'fastify';

/** An error with an HTTP status; `field` names the request field that was wrong. */
export class HttpError extends Error {
  readonly statusCode: number;
  readonly field: string | undefined;
  readonly code: string | undefined;

  constructor(statusCode: number, message: string, options: { field?: string; code?: string } = {}) {
    super(message);
    this.name = 'HttpError';
    this.statusCode = statusCode;
    this.field = options.field;
    this.code = options.code;
  }
}

/** A 400 for `field`, whose message says what was expected. */
export function badRequest(field: string, message: string): HttpError {
  return new HttpError(400, message, { field });
}

const STATUS_TEXT: Record<number, string> = {
  400: 'Bad Request',
  404: 'Not Found',
  409: 'Conflict',
  415: 'Unsupported Media Type',
  500: 'Internal Server Error',
  502: 'Bad Gateway',
  503: 'Service Unavailable',
  504: 'Gateway Timeout',
};

export interface AppOptions {
  /** Told about unexpected (500) errors. */
  onServerError?: (err: Error, route: string) => void;
}

/** A Fastify app with JSON errors and a JSON 404 for unknown routes. */
export function buildApp(options: AppOptions = {}): FastifyInstance {
  const app = Fastify({ logger: false, bodyLimit: 1_048_576 });
  app.setErrorHandler((err: FastifyError | HttpError, request, reply) => {
    let status = err.statusCode ?? 500;
    let field = err instanceof HttpError ? err.field : undefined;
    let message = err.message;
    if ('validation' in err && err.validation?.[0]) {
      // A route with a JSON schema: name the field Ajv complained about.
      const v = err.validation[0];
      field =
        (v.params?.missingProperty as string | undefined) ??
        v.instancePath.replace(/^\//, '').replace(/\//g, '.');
      message = `${field || 'body'} ${v.message ?? 'is invalid'}`;
      status = 400;
    }
    if (status >= 500) {
      options.onServerError?.(err, `${request.method} ${request.url}`);
      if (!(err instanceof HttpError)) message = 'internal error; see the service log';
    }
    void reply.status(status).send({
      statusCode: status,
      error: STATUS_TEXT[status] ?? 'Error',
      ...(err instanceof HttpError && err.code ? { code: err.code } : {}),
      message,
      ...(field ? { field } : {}),
    });
  });
  app.setNotFoundHandler((request, reply) => {
    void reply
      .status(404)
      .send({ statusCode: 404, error: 'Not Found', message: `no route ${request.method} ${request.url}` });
  });
  return app;
}

/** Listens on `host:port` (port 0: a free one) and returns the base URL, `http://host:port`. */
export async function listen(app: FastifyInstance, host: string, port: number): Promise<string> {
  await app.listen({ host, port });
  const address = app.server.address();
  if (address === null || typeof address === 'string') return `http://${host}:${port}`;
  const shown = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  return `http://${shown === '0.0.0.0' || shown === '[::]' ? 'localhost' : shown}:${address.port}`;
}

/** `GET /metrics`: the Prometheus text of the client's registry (Eventline's metrics and the service's own). */
export function serveMetrics(app: FastifyInstance, bus: Eventline): void {
  const handler = metricsHandler(bus);
  app.get('/metrics', (request, reply) => {
    reply.hijack();
    handler(request.raw, reply.raw);
  });
}

// ---- request body validation ---------------------------------------------------------------------

/** The body as an object, or a 400 saying a JSON object was expected. */
export function objectBody(body: unknown): Record<string, unknown> {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new HttpError(400, 'the request body must be a JSON object (Content-Type: application/json)', {
      field: 'body',
    });
  }
  return body as Record<string, unknown>;
}

/** A required non-empty string (trimmed), at most `max` characters, optionally matching `pattern`. */
export function requireString(
  body: Record<string, unknown>,
  field: string,
  options: { max?: number; pattern?: RegExp; patternText?: string } = {},
): string {
  const v = body[field];
  if (v === undefined || v === null) throw badRequest(field, `${field} is required`);
  if (typeof v !== 'string') throw badRequest(field, `${field} must be a string, got ${typeName(v)}`);
  const s = v.trim();
  if (s === '') throw badRequest(field, `${field} must not be empty`);
  const max = options.max ?? 1000;
  if (s.length > max) throw badRequest(field, `${field} must be at most ${max} characters, got ${s.length}`);
  if (options.pattern && !options.pattern.test(s)) {
    throw badRequest(
      field,
      `${field} must be ${options.patternText ?? `like ${options.pattern}`}, got "${s}"`,
    );
  }
  return s;
}

/** A required whole number within [min, max]. */
export function requireInt(body: Record<string, unknown>, field: string, min: number, max: number): number {
  const v = body[field];
  if (v === undefined || v === null) throw badRequest(field, `${field} is required`);
  if (typeof v !== 'number' || !Number.isInteger(v)) {
    throw badRequest(field, `${field} must be a whole number, got ${typeName(v)} ${JSON.stringify(v)}`);
  }
  if (v < min || v > max) throw badRequest(field, `${field} must be from ${min} to ${max}, got ${v}`);
  return v;
}

/** A required string among `allowed`. */
export function requireOneOf<T extends string>(
  body: Record<string, unknown>,
  field: string,
  allowed: readonly T[],
): T {
  const v = body[field];
  if (v === undefined || v === null)
    throw badRequest(field, `${field} is required (one of ${allowed.join(', ')})`);
  if (typeof v !== 'string' || !(allowed as readonly string[]).includes(v)) {
    throw badRequest(field, `${field} must be one of ${allowed.join(', ')}, got ${JSON.stringify(v)}`);
  }
  return v as T;
}

function typeName(v: unknown): string {
  return v === null ? 'null' : Array.isArray(v) ? 'array' : typeof v;
}

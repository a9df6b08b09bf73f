import { EventlineError } from '../errors.ts';
import { checkVersion, registryError } from './registry.ts';
import type {
  CompatibilityLevel,
  CompatibilityResult,
  ListOptions,
  RegistryMode,
  SchemaById,
  SchemaInput,
  SchemaReference,
  SchemaRegistry,
  SchemaType,
  SubjectVersion,
} from './types.ts';

/** Options of {@link httpRegistry}. */
export interface HttpRegistryOptions {
  /** HTTP Basic user; overrides one given in the URL. */
  username?: string;
  password?: string;
  /** Per request. Default 10,000 ms; a request that takes longer fails with EVENTLINE_ERR_REGISTRY. */
  timeoutMs?: number;
}

const JSON_TYPE = 'application/vnd.schemaregistry.v1+json';
const ACCEPT = `${JSON_TYPE}, application/vnd.schemaregistry+json; qs=0.9, application/json; qs=0.5`;

type Body = Record<string, unknown>;

/**
 * A client of an external Confluent-compatible schema registry (Confluent, Karapace, Apicurio's
 * `/apis/ccompat/v7`, Redpanda, or `eventline registry`). Credentials come from the options or from
 * the URL (`http://user:pass@host:8081`); they never appear in `description` or error messages.
 * Schemas fetched by id are cached, since ids are immutable.
 *
 * Errors are EventlineErrors mapped from the server's `error_code`, as the built-in registry throws
 * them: 404xx → EVENTLINE_ERR_SCHEMA_NOT_FOUND, 409 / 409xx → EVENTLINE_ERR_SCHEMA_INCOMPATIBLE,
 * 42201 / 42209 → EVENTLINE_ERR_SCHEMA_INVALID, 42205 → EVENTLINE_ERR_REGISTRY_READONLY, other 4xx
 * → EVENTLINE_ERR_INVALID_ARGUMENT (401/403 → EVENTLINE_ERR_NOT_AUTHORIZED), and network errors,
 * timeouts and 5xx → EVENTLINE_ERR_REGISTRY (retryable). `details.errorCode` and `details.status`
 * carry the server's code and HTTP status.
 */
export function httpRegistry(url: string, options: HttpRegistryOptions = {}): SchemaRegistry {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch (err) {
    throw new EventlineError('EVENTLINE_ERR_INVALID_ARGUMENT', 'the schema registry URL cannot be parsed', {
      cause: err,
    });
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
    throw new EventlineError('EVENTLINE_ERR_INVALID_ARGUMENT', 'the schema registry URL must be http(s)', {
      details: { protocol: parsed.protocol },
    });
  }
  const username =
    options.username ?? (parsed.username === '' ? undefined : decodeURIComponent(parsed.username));
  const password = options.password ?? decodeURIComponent(parsed.password);
  parsed.username = '';
  parsed.password = '';
  parsed.search = '';
  parsed.hash = '';
  const base = parsed.toString().replace(/\/+$/, '');
  return new HttpRegistry(
    base,
    username === undefined ? undefined : { username, password },
    options.timeoutMs ?? 10_000,
  );
}

function typeOf(raw: unknown): SchemaType {
  return raw === 'JSON' || raw === 'PROTOBUF' ? raw : 'AVRO';
}

function refsOf(raw: unknown): { references?: SchemaReference[] } {
  return Array.isArray(raw) && raw.length > 0 ? { references: raw as SchemaReference[] } : {};
}

function seg(s: string): string {
  return encodeURIComponent(s);
}

function versionSeg(v: number | 'latest'): string {
  return String(checkVersion(v));
}

function listQuery(options: ListOptions): Record<string, string> {
  return {
    ...(options.deleted === true ? { deleted: 'true' } : {}),
    ...(options.deletedOnly === true ? { deletedOnly: 'true' } : {}),
  };
}

class HttpRegistry implements SchemaRegistry {
  readonly description: string;
  readonly #auth: string | undefined;
  readonly #timeoutMs: number;
  readonly #byId = new Map<number, Promise<SchemaById>>();

  constructor(base: string, auth: { username: string; password: string } | undefined, timeoutMs: number) {
    this.description = base;
    this.#auth =
      auth === undefined
        ? undefined
        : `Basic ${Buffer.from(`${auth.username}:${auth.password}`).toString('base64')}`;
    this.#timeoutMs = timeoutMs;
  }

  async #request<T = Body>(
    method: string,
    path: string,
    body?: unknown,
    query: Record<string, string> = {},
  ): Promise<T> {
    const qs = new URLSearchParams(query).toString();
    const target = `${this.description}${path}${qs === '' ? '' : `?${qs}`}`;
    const headers: Record<string, string> = { accept: ACCEPT };
    if (body !== undefined) headers['content-type'] = JSON_TYPE;
    if (this.#auth !== undefined) headers.authorization = this.#auth;
    let response: Response;
    let text: string;
    try {
      response = await fetch(target, {
        method,
        headers,
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        signal: AbortSignal.timeout(this.#timeoutMs),
      });
      text = await response.text();
    } catch (err) {
      const timedOut = (err as Error).name === 'TimeoutError';
      throw new EventlineError(
        'EVENTLINE_ERR_REGISTRY',
        timedOut
          ? `schema registry ${this.description} did not answer ${method} ${path} within ${this.#timeoutMs} ms`
          : `schema registry ${this.description} cannot be reached: ${(err as Error).message}`,
        { cause: err, retryable: true, details: { method, path } },
      );
    }
    let parsed: unknown;
    try {
      parsed = text === '' ? undefined : JSON.parse(text);
    } catch {
      parsed = text;
    }
    if (response.ok) return parsed as T;
    const status = response.status;
    const errBody = (typeof parsed === 'object' && parsed !== null ? parsed : {}) as Body;
    const errorCode = typeof errBody.error_code === 'number' ? errBody.error_code : status;
    const message =
      typeof errBody.message === 'string'
        ? errBody.message
        : `schema registry ${this.description} answered HTTP ${status} to ${method} ${path}`;
    throw registryError(errorCode, message, {
      status,
      details: { method, path },
      ...(status >= 500 || status === 408 || status === 429 ? { retryable: true } : {}),
    });
  }

  #toVersion(b: Body): SubjectVersion {
    return {
      subject: String(b.subject),
      version: Number(b.version),
      id: Number(b.id),
      schemaType: typeOf(b.schemaType),
      schema: String(b.schema),
      ...refsOf(b.references),
      ...(b.deleted === true ? { deleted: true } : {}),
    };
  }

  #payload(input: SchemaInput): Body {
    return {
      schema: input.schema,
      ...(input.schemaType === undefined || input.schemaType === 'AVRO'
        ? {}
        : { schemaType: input.schemaType }),
      ...(input.references === undefined || input.references.length === 0
        ? {}
        : { references: input.references }),
    };
  }

  async register(subject: string, input: SchemaInput): Promise<{ id: number; version: number }> {
    const r = await this.#request('POST', `/subjects/${seg(subject)}/versions`, this.#payload(input));
    const id = Number(r.id);
    if (typeof r.version === 'number') return { id, version: r.version };
    // Registries before Confluent 8 answer with the id only.
    const found = await this.lookup(subject, input);
    return { id, version: found.version };
  }

  async lookup(
    subject: string,
    input: SchemaInput,
    options: { deleted?: boolean } = {},
  ): Promise<SubjectVersion> {
    const query: Record<string, string> = options.deleted === true ? { deleted: 'true' } : {};
    const r = await this.#request('POST', `/subjects/${seg(subject)}`, this.#payload(input), query);
    return this.#toVersion(r);
  }

  getById(id: number): Promise<SchemaById> {
    let hit = this.#byId.get(id);
    if (hit === undefined) {
      hit = this.#request('GET', `/schemas/ids/${id}`).then((r) => ({
        schema: String(r.schema),
        schemaType: typeOf(r.schemaType),
        ...refsOf(r.references),
      }));
      this.#byId.set(id, hit);
      hit.catch(() => this.#byId.delete(id));
    }
    return hit;
  }

  subjectsForId(id: number, options: ListOptions = {}): Promise<string[]> {
    return this.#request<string[]>('GET', `/schemas/ids/${id}/subjects`, undefined, listQuery(options));
  }

  versionsForId(id: number, options: ListOptions = {}): Promise<{ subject: string; version: number }[]> {
    return this.#request('GET', `/schemas/ids/${id}/versions`, undefined, listQuery(options));
  }

  subjects(options: ListOptions & { prefix?: string } = {}): Promise<string[]> {
    const query = {
      ...listQuery(options),
      ...(options.prefix === undefined ? {} : { subjectPrefix: options.prefix }),
    };
    return this.#request<string[]>('GET', '/subjects', undefined, query);
  }

  versions(subject: string, options: ListOptions = {}): Promise<number[]> {
    return this.#request<number[]>(
      'GET',
      `/subjects/${seg(subject)}/versions`,
      undefined,
      listQuery(options),
    );
  }

  async getVersion(
    subject: string,
    version: number | 'latest',
    options: { deleted?: boolean } = {},
  ): Promise<SubjectVersion> {
    const query: Record<string, string> = options.deleted === true ? { deleted: 'true' } : {};
    const path = `/subjects/${seg(subject)}/versions/${versionSeg(version)}`;
    return this.#toVersion(await this.#request('GET', path, undefined, query));
  }

  deleteSubject(subject: string, options: { permanent?: boolean } = {}): Promise<number[]> {
    const query: Record<string, string> = options.permanent === true ? { permanent: 'true' } : {};
    return this.#request<number[]>('DELETE', `/subjects/${seg(subject)}`, undefined, query);
  }

  async deleteVersion(
    subject: string,
    version: number | 'latest',
    options: { permanent?: boolean } = {},
  ): Promise<number> {
    const query: Record<string, string> = options.permanent === true ? { permanent: 'true' } : {};
    const path = `/subjects/${seg(subject)}/versions/${versionSeg(version)}`;
    return Number(await this.#request<number>('DELETE', path, undefined, query));
  }

  async testCompatibility(
    subject: string,
    input: SchemaInput,
    version?: number | 'latest',
  ): Promise<CompatibilityResult> {
    const path =
      version === undefined
        ? `/compatibility/subjects/${seg(subject)}/versions`
        : `/compatibility/subjects/${seg(subject)}/versions/${versionSeg(version)}`;
    const r = await this.#request('POST', path, this.#payload(input), { verbose: 'true' });
    const messages = Array.isArray(r.messages)
      ? r.messages.map((m) => (typeof m === 'string' ? m : JSON.stringify(m)))
      : [];
    return { compatible: r.is_compatible === true, messages };
  }

  async getConfig(
    subject?: string,
    options: { defaultToGlobal?: boolean } = {},
  ): Promise<CompatibilityLevel> {
    const query: Record<string, string> = options.defaultToGlobal === true ? { defaultToGlobal: 'true' } : {};
    const r = await this.#request(
      'GET',
      subject === undefined ? '/config' : `/config/${seg(subject)}`,
      undefined,
      query,
    );
    return (r.compatibilityLevel ?? r.compatibility) as CompatibilityLevel;
  }

  async setConfig(subject: string | undefined, level: CompatibilityLevel): Promise<CompatibilityLevel> {
    const path = subject === undefined ? '/config' : `/config/${seg(subject)}`;
    const r = await this.#request('PUT', path, { compatibility: level });
    return (r.compatibility ?? r.compatibilityLevel ?? level) as CompatibilityLevel;
  }

  async deleteConfig(subject?: string): Promise<CompatibilityLevel> {
    const r = await this.#request('DELETE', subject === undefined ? '/config' : `/config/${seg(subject)}`);
    return (r.compatibilityLevel ?? r.compatibility) as CompatibilityLevel;
  }

  async getMode(subject?: string, options: { defaultToGlobal?: boolean } = {}): Promise<RegistryMode> {
    const query: Record<string, string> = options.defaultToGlobal === true ? { defaultToGlobal: 'true' } : {};
    const r = await this.#request(
      'GET',
      subject === undefined ? '/mode' : `/mode/${seg(subject)}`,
      undefined,
      query,
    );
    return r.mode as RegistryMode;
  }

  async setMode(subject: string | undefined, mode: RegistryMode): Promise<RegistryMode> {
    const r = await this.#request('PUT', subject === undefined ? '/mode' : `/mode/${seg(subject)}`, { mode });
    return (r.mode ?? mode) as RegistryMode;
  }

  async deleteMode(subject?: string): Promise<RegistryMode> {
    const r = await this.#request('DELETE', subject === undefined ? '/mode' : `/mode/${seg(subject)}`);
    return r.mode as RegistryMode;
  }

  schemaTypes(): Promise<SchemaType[]> {
    return this.#request<SchemaType[]>('GET', '/schemas/types');
  }

  async close(): Promise<void> {
    this.#byId.clear();
  }
}

/**
 * Reading a service's settings from the environment. Every reader takes the variable's name and a
 * default, and throws a message naming the variable when a value is malformed, so a typo fails at
 * start-up instead of surfacing later as a strange behaviour.
 */
import { DEFAULT_URL, parseDuration } from 'eventline';

type Env = Readonly<Record<string, string | undefined>>;

/** A variable's value, or `fallback` when it is unset or empty. */
export function envString(name: string, fallback: string, env: Env = process.env): string {
  const v = env[name];
  return v === undefined || v.trim() === '' ? fallback : v.trim();
}

/** A variable that may be absent: its trimmed value, or undefined. */
export function envOptional(name: string, env: Env = process.env): string | undefined {
  const v = env[name];
  return v === undefined || v.trim() === '' ? undefined : v.trim();
}

/** A TCP port (0 picks a free one). Throws naming the variable for anything else. */
export function envPort(name: string, fallback: number, env: Env = process.env): number {
  const v = envOptional(name, env);
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0 || n > 65_535) {
    throw new Error(`${name} must be a port number from 0 to 65535, got "${v}"`);
  }
  return n;
}

/** A whole number within [min, max]. Throws naming the variable otherwise. */
export function envInt(
  name: string,
  fallback: number,
  min: number,
  max: number,
  env: Env = process.env,
): number {
  const v = envOptional(name, env);
  if (v === undefined) return fallback;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min || n > max) {
    throw new Error(`${name} must be a whole number from ${min} to ${max}, got "${v}"`);
  }
  return n;
}

/** A duration in Eventline's notation (`500ms`, `30s`, `5m`), returned in milliseconds. */
export function envDuration(name: string, fallback: string, env: Env = process.env): number {
  const v = envString(name, fallback, env);
  try {
    return parseDuration(v, name);
  } catch {
    throw new Error(`${name} must be a duration such as 500ms, 30s or 5m, got "${v}"`);
  }
}

/** Settings every service shares: where it listens, which engine it uses, where its data lives. */
export interface CommonConfig {
  /** Interface to listen on. `HOST`, default `127.0.0.1`. */
  host: string;
  /** Port; 0 picks a free one. */
  port: number;
  /** The Eventline engine. `EVENTLINE_URL`, default the embedded `sqlite:.eventline/events.db`. */
  eventlineUrl: string;
  /**
   * The service's own database: `postgres://…` or `sqlite:PATH`. `DATABASE_URL`; unset means
   * SQLite at `.eventline/apps/<service>.db` (the folder: `APPS_DATA_DIR`).
   */
  databaseUrl: string | undefined;
}

/** Reads {@link CommonConfig} for a service whose port variable is `portVariable`. */
export function commonConfig(
  portVariable: string,
  defaultPort: number,
  env: Env = process.env,
): CommonConfig {
  return {
    host: envString('HOST', '127.0.0.1', env),
    port: envPort(portVariable, defaultPort, env),
    eventlineUrl: envString('EVENTLINE_URL', DEFAULT_URL, env),
    databaseUrl: envOptional('DATABASE_URL', env),
  };
}

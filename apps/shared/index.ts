/**
 * What every service under `apps/` shares: its own database, settings from the environment, the
 * HTTP app with JSON errors, and running as a process. Services import Eventline only through its
 * public entry point (`eventline`).
 */
export {
  type CommonConfig,
  commonConfig,
  envDuration,
  envInt,
  envOptional,
  envPort,
  envString,
} from './config.ts';
export {
  type OutboxSql,
  openDatabase,
  type Row,
  type ServiceDatabase,
  type ServiceOutbox,
  type Sql,
  type SqlValue,
} from './db.ts';
export {
  type AppOptions,
  badRequest,
  buildApp,
  HttpError,
  listen,
  objectBody,
  requireInt,
  requireOneOf,
  requireString,
  serveMetrics,
} from './http.ts';
export {
  type Closer,
  type RunningService,
  runMain,
  type SystemSetup,
  serviceBus,
  serviceDatabase,
  serviceLogger,
  startService,
} from './service.ts';

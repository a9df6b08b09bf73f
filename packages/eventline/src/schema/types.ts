/**
 * The schema registry contract. The built-in registry (stored in a `_schemas` topic on the
 * connected engine) and the client of an external Confluent-compatible registry both implement it,
 * so codecs, the CLI and the HTTP server work the same against either.
 *
 * Semantics follow Confluent Schema Registry; errors are EventlineErrors whose
 * `details.errorCode` carries the Confluent error code (40401, 42201, 409, ...) and
 * `details.status` the HTTP status a server answers with.
 */

export type SchemaType = 'AVRO' | 'JSON' | 'PROTOBUF';

export const COMPATIBILITY_LEVELS = [
  'NONE',
  'BACKWARD',
  'BACKWARD_TRANSITIVE',
  'FORWARD',
  'FORWARD_TRANSITIVE',
  'FULL',
  'FULL_TRANSITIVE',
] as const;
export type CompatibilityLevel = (typeof COMPATIBILITY_LEVELS)[number];

export const REGISTRY_MODES = ['READWRITE', 'READONLY', 'IMPORT'] as const;
export type RegistryMode = (typeof REGISTRY_MODES)[number];

/** A named type defined in another subject's version (Avro named-type references). */
export interface SchemaReference {
  name: string;
  subject: string;
  version: number;
}

/** A schema as it is registered: its text and type (AVRO when absent). */
export interface SchemaInput {
  schema: string;
  schemaType?: SchemaType;
  references?: SchemaReference[];
}

/** A version of a subject. */
export interface SubjectVersion {
  subject: string;
  version: number;
  id: number;
  schemaType: SchemaType;
  /** The canonical schema text. */
  schema: string;
  references?: SchemaReference[];
  /** True for a soft-deleted version (only returned when deleted ones are asked for). */
  deleted?: boolean;
}

/** A schema found by id. */
export interface SchemaById {
  schema: string;
  schemaType: SchemaType;
  references?: SchemaReference[];
}

export interface CompatibilityResult {
  compatible: boolean;
  /** One line per broken rule (empty when compatible). */
  messages: string[];
}

export interface ListOptions {
  /** Include soft-deleted entries. */
  deleted?: boolean;
  /** Only soft-deleted entries. */
  deletedOnly?: boolean;
}

export interface SchemaRegistry {
  /** Where the registry lives, for messages (`built-in` or a URL without credentials). */
  readonly description: string;
  /**
   * Registers a schema under a subject, or returns the existing version when the same schema is
   * already there (no compatibility check then). Throws EVENTLINE_ERR_SCHEMA_INVALID,
   * EVENTLINE_ERR_SCHEMA_INCOMPATIBLE, EVENTLINE_ERR_REGISTRY_READONLY.
   */
  register(subject: string, input: SchemaInput): Promise<{ id: number; version: number }>;
  /** Finds the version of a subject holding this schema; EVENTLINE_ERR_SCHEMA_NOT_FOUND (40401/40403) if none. */
  lookup(subject: string, input: SchemaInput, options?: { deleted?: boolean }): Promise<SubjectVersion>;
  /** A schema by its global id; soft-deleted schemas still resolve. EVENTLINE_ERR_SCHEMA_NOT_FOUND (40403). */
  getById(id: number): Promise<SchemaById>;
  /** Subjects using a schema id. */
  subjectsForId(id: number, options?: ListOptions): Promise<string[]>;
  /** (subject, version) pairs using a schema id. */
  versionsForId(id: number, options?: ListOptions): Promise<{ subject: string; version: number }[]>;
  subjects(options?: ListOptions & { prefix?: string }): Promise<string[]>;
  versions(subject: string, options?: ListOptions): Promise<number[]>;
  /** A version, or the newest live one with `'latest'`. */
  getVersion(
    subject: string,
    version: number | 'latest',
    options?: { deleted?: boolean },
  ): Promise<SubjectVersion>;
  /** Soft-deletes every version (or removes them for good with `permanent`, after a soft delete). */
  deleteSubject(subject: string, options?: { permanent?: boolean }): Promise<number[]>;
  deleteVersion(
    subject: string,
    version: number | 'latest',
    options?: { permanent?: boolean },
  ): Promise<number>;
  /**
   * Tests a schema against one version (or `'latest'`), or against what registering would check
   * when `version` is undefined. A subject with no versions is compatible.
   */
  testCompatibility(
    subject: string,
    input: SchemaInput,
    version?: number | 'latest',
  ): Promise<CompatibilityResult>;
  /**
   * The compatibility level: global when `subject` is undefined. A subject without its own level
   * throws EVENTLINE_ERR_SCHEMA_NOT_FOUND (40408) unless `defaultToGlobal`.
   */
  getConfig(subject?: string, options?: { defaultToGlobal?: boolean }): Promise<CompatibilityLevel>;
  setConfig(subject: string | undefined, level: CompatibilityLevel): Promise<CompatibilityLevel>;
  /** Removes a subject's level (or resets the global one to BACKWARD); returns the old level. */
  deleteConfig(subject?: string): Promise<CompatibilityLevel>;
  getMode(subject?: string, options?: { defaultToGlobal?: boolean }): Promise<RegistryMode>;
  setMode(subject: string | undefined, mode: RegistryMode): Promise<RegistryMode>;
  deleteMode(subject?: string): Promise<RegistryMode>;
  /** Schema types this registry accepts. */
  schemaTypes(): Promise<SchemaType[]>;
  close(): Promise<void>;
}

/**
 * Avro schema compatibility, with the reader/writer rules of Apache Avro Java's
 * `SchemaCompatibility` (1.9+) and the level semantics Confluent Schema Registry puts on top of
 * them. Pure TypeScript: the registry's verdict must not depend on which Avro library parsed the
 * schema.
 *
 * Deliberate differences from the Java checker:
 * - A reader alias written as a short name also matches a writer of that short name in another
 *   namespace (Java qualifies the alias with the reader's namespace first). Since record and enum
 *   names are compared unqualified anyway, refusing this would be inconsistent.
 * - When a union branch cannot be read, the branch is reported (MISSING_UNION_BRANCH, as Java
 *   does) together with the deeper reason, such as the field missing a default inside a nullable
 *   record, which Java drops.
 * - A reader field of an enum type that has an enum default but no field default, and that is
 *   missing from the writer, is READER_FIELD_MISSING_DEFAULT_VALUE; Java compares the enum with
 *   the writer record and so reports TYPE_MISMATCH. Both are incompatible.
 * The last two change only what is reported, not the verdict.
 */

import { fail } from '../errors.ts';
import type { CompatibilityLevel } from './types.ts';

export type IncompatibilityType =
  | 'NAME_MISMATCH'
  | 'FIXED_SIZE_MISMATCH'
  | 'MISSING_ENUM_SYMBOLS'
  | 'READER_FIELD_MISSING_DEFAULT_VALUE'
  | 'TYPE_MISMATCH'
  | 'MISSING_UNION_BRANCH';

export interface Incompatibility {
  type: IncompatibilityType;
  /** JSON-pointer-like location in the reader schema, e.g. '/fields/1/type' (as Java's checker reports). */
  path: string;
  /** Human sentence naming the field/type and the rule, e.g. "reader field 'email' at /fields/2 has no default value and is missing from the writer schema". */
  message: string;
}

// ---------------------------------------------------------------------------------------------
// Schema graph: parsed Avro JSON with named-type references resolved to the same node object, so
// a recursive schema is a cyclic graph and reader/writer pairs can be memoized by identity.

const PRIMITIVES = ['null', 'boolean', 'int', 'long', 'float', 'double', 'bytes', 'string'] as const;
type PrimitiveType = (typeof PRIMITIVES)[number];

interface PrimitiveNode {
  readonly kind: PrimitiveType;
}
interface NamedBase {
  /** Unqualified name, which is what Java compares. */
  readonly name: string;
  readonly fullName: string;
  /** The aliases as written and qualified with the type's namespace. */
  readonly aliases: ReadonlySet<string>;
}
interface RecordNode extends NamedBase {
  readonly kind: 'record';
  readonly fields: FieldNode[];
}
interface FieldNode {
  readonly name: string;
  readonly aliases: readonly string[];
  readonly type: Node;
  readonly hasDefault: boolean;
}
interface EnumNode extends NamedBase {
  readonly kind: 'enum';
  readonly symbols: readonly string[];
  readonly defaultSymbol: string | undefined;
}
interface FixedNode extends NamedBase {
  readonly kind: 'fixed';
  readonly size: number;
}
interface ArrayNode {
  readonly kind: 'array';
  readonly items: Node;
}
interface MapNode {
  readonly kind: 'map';
  readonly values: Node;
}
interface UnionNode {
  readonly kind: 'union';
  readonly branches: readonly Node[];
}
type NamedNode = RecordNode | EnumNode | FixedNode;
type Node = PrimitiveNode | NamedNode | ArrayNode | MapNode | UnionNode;

const PRIMITIVE_NODES: ReadonlyMap<string, PrimitiveNode> = new Map(
  PRIMITIVES.map((kind) => [kind, { kind }]),
);

/** Reader type → the writer types it can read by promotion. */
const PROMOTIONS: Readonly<Partial<Record<PrimitiveType, readonly PrimitiveType[]>>> = {
  long: ['int'],
  float: ['int', 'long'],
  double: ['int', 'long', 'float'],
  bytes: ['string'],
  string: ['bytes'],
};

function invalid(where: string, problem: string): never {
  fail('EVENTLINE_ERR_SCHEMA_INVALID', `Avro schema at ${where || '/'} ${problem}`, {
    details: { path: where || '/' },
  });
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function stringList(value: unknown, where: string, what: string): string[] {
  if (value === undefined) return [];
  if (!Array.isArray(value) || !value.every((v) => typeof v === 'string')) {
    invalid(where, `has ${what} that are not an array of strings`);
  }
  return value;
}

class SchemaParser {
  private readonly names = new Map<string, NamedNode>();

  parse(json: unknown, namespace: string, where: string): Node {
    if (typeof json === 'string') return this.resolve(json, namespace, where);
    if (Array.isArray(json)) {
      const branches = json.map((branch, i) => this.parse(branch, namespace, `${where}/${i}`));
      if (branches.some((b) => b.kind === 'union')) invalid(where, 'is a union directly containing a union');
      return { kind: 'union', branches };
    }
    if (!isObject(json)) invalid(where, 'is not a type name, a type object or a union array');
    const type = json.type;
    if (typeof type !== 'string') invalid(where, 'has no string "type"');
    switch (type) {
      case 'record':
      case 'error':
        return this.parseRecord(json, namespace, where);
      case 'enum': {
        if (json.symbols === undefined) invalid(where, 'is an enum type without "symbols"');
        const symbols = stringList(json.symbols, where, 'symbols');
        const def = json.default;
        const node: EnumNode = {
          kind: 'enum',
          ...this.naming(json, namespace, where),
          symbols,
          // Java only honours a default that is one of the symbols.
          defaultSymbol: typeof def === 'string' && symbols.includes(def) ? def : undefined,
        };
        return this.define(node, where);
      }
      case 'fixed': {
        const size = json.size;
        if (typeof size !== 'number' || !Number.isInteger(size) || size < 0) {
          invalid(where, 'is a fixed type without a non-negative integer "size"');
        }
        return this.define({ kind: 'fixed', ...this.naming(json, namespace, where), size }, where);
      }
      case 'array':
        if (!('items' in json)) invalid(where, 'is an array type without "items"');
        return { kind: 'array', items: this.parse(json.items, namespace, `${where}/items`) };
      case 'map':
        if (!('values' in json)) invalid(where, 'is a map type without "values"');
        return { kind: 'map', values: this.parse(json.values, namespace, `${where}/values`) };
      default:
        // A primitive with attributes (logical types are ignored) or a reference in object form.
        return this.resolve(type, namespace, where);
    }
  }

  private parseRecord(json: Record<string, unknown>, namespace: string, where: string): RecordNode {
    const node: RecordNode = { kind: 'record', ...this.naming(json, namespace, where), fields: [] };
    // Defined before its fields are parsed, so the record can refer to itself.
    this.define(node, where);
    const inner = namespaceOf(node.fullName);
    if (!Array.isArray(json.fields)) invalid(where, `is record '${node.fullName}' without a "fields" array`);
    json.fields.forEach((field: unknown, i) => {
      const at = `${where}/fields/${i}`;
      if (!isObject(field) || typeof field.name !== 'string')
        invalid(at, 'is a field without a string "name"');
      if (!('type' in field)) invalid(at, `is field '${field.name}' without a "type"`);
      node.fields.push({
        name: field.name,
        aliases: stringList(field.aliases, at, 'aliases'),
        type: this.parse(field.type, inner, `${at}/type`),
        // `"default": null` is a default value too.
        hasDefault: Object.hasOwn(field, 'default'),
      });
    });
    return node;
  }

  private naming(json: Record<string, unknown>, enclosing: string, where: string): NamedBase {
    const name = json.name;
    if (typeof name !== 'string' || name === '') invalid(where, 'is a named type without a "name"');
    let fullName: string;
    if (name.includes('.')) fullName = name;
    else {
      const ns = typeof json.namespace === 'string' ? json.namespace : enclosing;
      fullName = ns === '' ? name : `${ns}.${name}`;
    }
    const space = namespaceOf(fullName);
    const aliases = new Set<string>();
    for (const alias of stringList(json.aliases, where, 'aliases')) {
      aliases.add(alias);
      if (!alias.includes('.') && space !== '') aliases.add(`${space}.${alias}`);
    }
    return { name: fullName.slice(fullName.lastIndexOf('.') + 1), fullName, aliases };
  }

  private define<T extends NamedNode>(node: T, where: string): T {
    if (PRIMITIVE_NODES.has(node.name)) invalid(where, `redefines the primitive type '${node.name}'`);
    if (this.names.has(node.fullName)) invalid(where, `redefines the type '${node.fullName}'`);
    this.names.set(node.fullName, node);
    return node;
  }

  private resolve(name: string, namespace: string, where: string): Node {
    const primitive = PRIMITIVE_NODES.get(name);
    if (primitive !== undefined) return primitive;
    // Like Java's Names.get: a short name is looked up in the enclosing namespace, then in the null one.
    const found = name.includes('.')
      ? this.names.get(name)
      : ((namespace === '' ? undefined : this.names.get(`${namespace}.${name}`)) ?? this.names.get(name));
    if (found === undefined) invalid(where, `refers to the unknown type '${name}'`);
    return found;
  }
}

function namespaceOf(fullName: string): string {
  const dot = fullName.lastIndexOf('.');
  return dot < 0 ? '' : fullName.slice(0, dot);
}

function parseSchema(json: unknown): Node {
  return new SchemaParser().parse(json, '', '');
}

// ---------------------------------------------------------------------------------------------
// The reader/writer check. Issues carry locations relative to the pair that produced them, so a
// memoized result can be reused wherever the same pair shows up again.

interface Issue {
  readonly type: IncompatibilityType;
  /** Path segments below the pair's location. */
  readonly segments: readonly string[];
  /** Reader field names below the pair's location, for naming the field in the message. */
  readonly fields: readonly string[];
  /** The rule that broke, phrased for the end of a sentence. */
  readonly text: string;
}

type Memo = Map<Node, Map<Node, readonly Issue[]>>;

function issue(type: IncompatibilityType, text: string, segments: readonly string[] = []): Issue {
  return { type, segments, fields: [], text };
}

function under(issues: readonly Issue[], segments: readonly string[], field?: string): Issue[] {
  return issues.map((i) => ({
    ...i,
    segments: [...segments, ...i.segments],
    fields: field === undefined ? i.fields : [field, ...i.fields],
  }));
}

function describe(node: Node): string {
  switch (node.kind) {
    case 'record':
    case 'enum':
    case 'fixed':
      return `${node.kind} '${node.fullName}'`;
    case 'array':
      return `array<${describe(node.items)}>`;
    case 'map':
      return `map<${describe(node.values)}>`;
    case 'union':
      return `union [${node.branches.map(describe).join(', ')}]`;
    default:
      return node.kind;
  }
}

function check(memo: Memo, reader: Node, writer: Node): readonly Issue[] {
  let byWriter = memo.get(reader);
  const known = byWriter?.get(writer);
  if (known !== undefined) return known;
  if (byWriter === undefined) {
    byWriter = new Map();
    memo.set(reader, byWriter);
  }
  // A pair met again while it is still being checked is assumed compatible, as in Java: this is
  // what makes recursive schemas terminate, and any real problem is reported by the outer visit.
  byWriter.set(writer, []);
  const issues = compare(memo, reader, writer);
  byWriter.set(writer, issues);
  return issues;
}

function compare(memo: Memo, reader: Node, writer: Node): Issue[] {
  if (writer.kind === 'union') return compareWriterUnion(memo, reader, writer);
  if (reader.kind === 'union') return compareReaderUnion(memo, reader, writer);
  if (reader.kind === 'array' && writer.kind === 'array') {
    return under(check(memo, reader.items, writer.items), ['items']);
  }
  if (reader.kind === 'map' && writer.kind === 'map') {
    return under(check(memo, reader.values, writer.values), ['values']);
  }
  if (reader.kind === 'record' && writer.kind === 'record') {
    return [...compareNames(reader, writer), ...compareFields(memo, reader, writer)];
  }
  if (reader.kind === 'enum' && writer.kind === 'enum') {
    return [...compareNames(reader, writer), ...compareSymbols(reader, writer)];
  }
  if (reader.kind === 'fixed' && writer.kind === 'fixed') {
    const issues = compareNames(reader, writer);
    if (reader.size !== writer.size) {
      issues.push(
        issue(
          'FIXED_SIZE_MISMATCH',
          `reader fixed '${reader.fullName}' has size ${reader.size} but writer fixed '${writer.fullName}' has size ${writer.size}`,
          ['size'],
        ),
      );
    }
    return issues;
  }
  if (reader.kind === writer.kind) return []; // the same primitive
  if (isPrimitive(reader) && isPrimitive(writer)) {
    if (PROMOTIONS[reader.kind]?.includes(writer.kind)) return [];
    return [
      issue(
        'TYPE_MISMATCH',
        `writer type ${writer.kind} cannot be read as reader type ${reader.kind} (not an Avro promotion)`,
      ),
    ];
  }
  return [
    issue('TYPE_MISMATCH', `reader type ${describe(reader)} cannot read writer type ${describe(writer)}`),
  ];
}

function isPrimitive(node: Node): node is PrimitiveNode {
  return PRIMITIVE_NODES.get(node.kind) === node;
}

/** Every writer branch must be readable, whatever the reader is. */
function compareWriterUnion(memo: Memo, reader: Node, writer: UnionNode): Issue[] {
  const issues: Issue[] = [];
  writer.branches.forEach((branch, i) => {
    const inner = check(memo, reader, branch);
    if (inner.length === 0) return;
    const who =
      reader.kind === 'union'
        ? `no branch of reader ${describe(reader)} can read`
        : `reader type ${describe(reader)} cannot read`;
    // Java locates the branch by its writer index.
    issues.push(
      issue('MISSING_UNION_BRANCH', `${who} writer union branch ${i} (${describe(branch)})`, [String(i)]),
    );
    // Deeper reasons are already reader locations; one at the pair itself is what the line above says.
    issues.push(...inner.filter((x) => x.segments.length > 0));
  });
  return issues;
}

/** Some reader branch must read the (non-union) writer. */
function compareReaderUnion(memo: Memo, reader: UnionNode, writer: Node): Issue[] {
  if (reader.branches.some((branch) => check(memo, branch, writer).length === 0)) return [];
  const issues = [
    issue(
      'MISSING_UNION_BRANCH',
      `no branch of reader ${describe(reader)} can read writer type ${describe(writer)}`,
    ),
  ];
  // Say why the branch that was evidently meant for this writer type fails.
  const meant = intendedBranch(reader, writer);
  if (meant !== undefined) {
    const inner = check(memo, reader.branches[meant] as Node, writer);
    issues.push(...under(inner, [String(meant)]).filter((x) => x.segments.length > 1));
  }
  return issues;
}

function intendedBranch(reader: UnionNode, writer: Node): number | undefined {
  const sameKind = reader.branches.flatMap((b, i) => (b.kind === writer.kind ? [i] : []));
  if ('name' in writer) {
    const sameName = sameKind.find((i) => {
      const b = reader.branches[i];
      return b !== undefined && 'name' in b && b.name === writer.name;
    });
    if (sameName !== undefined) return sameName;
  }
  return sameKind.length === 1 ? sameKind[0] : undefined;
}

function compareNames(reader: NamedNode, writer: NamedNode): Issue[] {
  if (reader.name === writer.name || reader.aliases.has(writer.fullName) || reader.aliases.has(writer.name)) {
    return [];
  }
  return [
    issue(
      'NAME_MISMATCH',
      `reader ${reader.kind} '${reader.fullName}' cannot read writer ${writer.kind} '${writer.fullName}': the names differ and no reader alias matches`,
      ['name'],
    ),
  ];
}

function compareFields(memo: Memo, reader: RecordNode, writer: RecordNode): Issue[] {
  const issues: Issue[] = [];
  reader.fields.forEach((field, pos) => {
    const match =
      writer.fields.find((w) => w.name === field.name) ??
      field.aliases.map((alias) => writer.fields.find((w) => w.name === alias)).find((w) => w !== undefined);
    if (match === undefined) {
      if (!field.hasDefault) {
        issues.push({
          ...issue('READER_FIELD_MISSING_DEFAULT_VALUE', '', ['fields', String(pos)]),
          fields: [field.name],
        });
      }
      return;
    }
    issues.push(...under(check(memo, field.type, match.type), ['fields', String(pos), 'type'], field.name));
  });
  return issues;
}

function compareSymbols(reader: EnumNode, writer: EnumNode): Issue[] {
  if (reader.defaultSymbol !== undefined) return [];
  const missing = writer.symbols.filter((s) => !reader.symbols.includes(s)).sort();
  if (missing.length === 0) return [];
  return [
    issue(
      'MISSING_ENUM_SYMBOLS',
      `reader enum '${reader.fullName}' lacks writer symbols [${missing.join(', ')}] and has no default symbol`,
      ['symbols'],
    ),
  ];
}

function render(found: Issue): Incompatibility {
  const path = `/${found.segments.join('/')}`;
  const field = found.fields.join('.');
  const message =
    found.type === 'READER_FIELD_MISSING_DEFAULT_VALUE'
      ? `reader field '${field}' at ${path} has no default value and is missing from the writer schema`
      : `${field === '' ? 'reader schema' : `field '${field}'`} at ${path}: ${found.text}`;
  return { type: found.type, path, message };
}

function compareParsed(reader: Node, writer: Node): Incompatibility[] {
  return check(new Map(), reader, writer).map(render);
}

/**
 * Can data written with `writer` be read with `reader`? Schemas are parsed Avro JSON (object,
 * array or string as JSON.parse gives). Returns every incompatibility found (empty = compatible).
 *
 * Throws EVENTLINE_ERR_SCHEMA_INVALID when a schema is not walkable Avro (unknown type name,
 * record without fields, redefined named type, ...); `details.path` locates the problem.
 */
export function checkReaderWriter(reader: unknown, writer: unknown): Incompatibility[] {
  return compareParsed(parseSchema(reader), parseSchema(writer));
}

/**
 * Checks a new schema against earlier versions (oldest first) under a level, the way Confluent does:
 * BACKWARD: reader=new, writer=latest; FORWARD: reader=latest, writer=new; FULL: both; *_TRANSITIVE: against every earlier version (newest to oldest, stop at the first failing version); NONE: always compatible. No previous versions: compatible.
 * `messages` are human-readable lines, each naming the rule, the field path and the earlier version number it broke against (`versions[i]` gives the version numbers parallel to `previous`).
 *
 * `versions` defaults to 1, 2, 3, ... Under FULL levels the lines for a failing version cover both
 * directions. Throws EVENTLINE_ERR_SCHEMA_INVALID for a schema that cannot be walked (NONE parses
 * nothing) and EVENTLINE_ERR_INVALID_ARGUMENT when `versions` and `previous` differ in length.
 */
export function checkCompatibility(
  level: CompatibilityLevel,
  next: unknown,
  previous: readonly unknown[],
  versions?: readonly number[],
): { compatible: boolean; messages: string[] } {
  if (versions !== undefined && versions.length !== previous.length) {
    fail(
      'EVENTLINE_ERR_INVALID_ARGUMENT',
      `checkCompatibility got ${previous.length} previous schemas but ${versions.length} version numbers`,
    );
  }
  if (level === 'NONE' || previous.length === 0) return { compatible: true, messages: [] };
  const newReads = level !== 'FORWARD' && level !== 'FORWARD_TRANSITIVE';
  const oldReads = level !== 'BACKWARD' && level !== 'BACKWARD_TRANSITIVE';
  const against = level.endsWith('_TRANSITIVE') ? previous.map((_, i) => i).reverse() : [previous.length - 1];
  const parsedNext = parseSchema(next);
  for (const i of against) {
    const old = parseSchema(previous[i]);
    const version = versions?.[i] ?? i + 1;
    const messages: string[] = [];
    const line = (found: Incompatibility, how: string): string =>
      `${found.type} against version ${version} (${how}): ${found.message}`;
    if (newReads) {
      const how = `the new schema reading data written with version ${version}`;
      for (const found of compareParsed(parsedNext, old)) messages.push(line(found, how));
    }
    if (oldReads) {
      const how = `version ${version} reading data written with the new schema`;
      for (const found of compareParsed(old, parsedNext)) messages.push(line(found, how));
    }
    if (messages.length > 0) return { compatible: false, messages };
  }
  return { compatible: true, messages: [] };
}

/**
 * The seed's event schemas (seeds/004: the todo service's TaskCreatedEvent and TaskCompletedEvent),
 * shared by the schema tests and benchmarks.
 */
export const TASK_CREATED = {
  type: 'record',
  name: 'TaskCreatedEvent',
  namespace: 'com.todoapp.events',
  fields: [
    { name: 'eventId', type: 'string', doc: 'Unique event identifier (UUID)' },
    { name: 'eventTimestamp', type: 'long', doc: 'Event creation timestamp (milliseconds)' },
    { name: 'userId', type: 'string', doc: 'User ID who created the task' },
    { name: 'taskId', type: 'string', doc: 'New task ID' },
    { name: 'title', type: 'string', doc: 'Task title' },
    { name: 'description', type: ['null', 'string'], default: null, doc: 'Task description' },
    {
      name: 'priority',
      type: { type: 'enum', name: 'Priority', symbols: ['CRITICAL', 'HIGH', 'MEDIUM', 'LOW'] },
      default: 'MEDIUM',
    },
    { name: 'dueDate', type: ['null', 'long'], default: null, doc: 'Due date timestamp (milliseconds)' },
    { name: 'categoryId', type: ['null', 'string'], default: null },
    { name: 'tags', type: { type: 'array', items: 'string' }, default: [] },
  ],
} as const;

export const TASK_COMPLETED = {
  type: 'record',
  name: 'TaskCompletedEvent',
  namespace: 'com.todoapp.events',
  fields: [
    { name: 'eventId', type: 'string' },
    { name: 'eventTimestamp', type: 'long' },
    { name: 'userId', type: 'string' },
    { name: 'taskId', type: 'string' },
    { name: 'completedAt', type: 'long', doc: 'Completion timestamp' },
    {
      name: 'timeToComplete',
      type: ['null', 'long'],
      default: null,
      doc: 'Time from creation to completion (ms)',
    },
  ],
} as const;

/**
 * Unions as avsc (`wrapUnions: 'auto'`) reads and writes them: wrapped when two branches fall in
 * the same bucket (numbers, buffers, strings and enums, maps and records), plain otherwise. `long`
 * and the codec's logical types are matched by value and never make a union ambiguous. Shared by
 * infer.test.ts (the inferred types, and values round-tripped through the codec) and codegen.test.ts
 * (the generated types agree with InferAvro).
 */
export const UNIONS = {
  type: 'record',
  name: 'Unions',
  namespace: 'ns',
  fields: [
    {
      name: 'either',
      type: [
        'null',
        { type: 'record', name: 'A', fields: [{ name: 'x', type: 'int' }] },
        {
          type: 'record',
          name: 'B',
          namespace: 'other',
          fields: [{ name: 'y', type: 'string', default: '' }],
        },
      ],
    },
    { name: 'amount', type: ['null', 'int', 'double'] },
    { name: 'big', type: ['null', 'string', 'long'] },
    { name: 'intOrLong', type: ['null', 'int', 'long'] },
    { name: 'symbol', type: ['string', { type: 'enum', name: 'E', symbols: ['X', 'Y'] }] },
    { name: 'mapOrRecord', type: [{ type: 'map', values: 'int' }, 'A'] },
    { name: 'bytesOrFixed', type: ['bytes', { type: 'fixed', name: 'F', size: 2 }], default: 'ab' },
    {
      name: 'decimalOrFixed',
      type: [{ type: 'bytes', logicalType: 'decimal', precision: 4, scale: 2 }, 'F'],
    },
    // A scale above the precision is refused: the branch is plain bytes, next to a fixed.
    { name: 'badDecimal', type: [{ type: 'bytes', logicalType: 'decimal', precision: 2, scale: 3 }, 'F'] },
    { name: 'timed', type: ['null', { type: 'long', logicalType: 'timestamp-millis' }, 'int', 'float'] },
    { name: 'day', type: [{ type: 'int', logicalType: 'date' }, 'double'] },
    // time-millis is not one of the codec's logical types: it is a plain int.
    { name: 'clock', type: [{ type: 'int', logicalType: 'time-millis' }, 'double'] },
    { name: 'list', type: ['null', { type: 'array', items: ['int', 'float'] }, 'boolean'] },
    { name: 'byFullName', type: ['null', 'other.B', 'A'] },
    { name: 'nested', type: { type: 'map', values: ['null', 'A', 'other.B'] } },
  ],
} as const;

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

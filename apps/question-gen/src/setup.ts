/**
 * Seed 002 in `npm start`: its topics, a first request (the seed document's own example event,
 * `req-123`), and the seed's curl commands to try.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Eventline } from 'eventline';
import { questionTopics, topicNames } from './events.ts';

/** Creates `question.request`, `question.response` and `question.generate` (3 partitions each). */
export async function setup(bus: Eventline): Promise<string[]> {
  const topics = questionTopics(topicNames());
  const plans = await bus.ensureTopics([topics.request, topics.response, topics.generate]);
  return [
    `seed 002 topics: ${plans.map((p) => `${p.topic} (${p.action === 'create' ? 'created' : p.action})`).join(', ')}`,
  ];
}

/** Sends the seed's example request `req-123` ("Python Loops", 5, medium) once. */
export async function seed(urls: Readonly<Record<string, string>>): Promise<string[]> {
  const ai = urls['ai-service'];
  const content = urls['content-service'];
  if (!ai || !content) return [];
  const res = await fetch(`${ai}/llm/questions/generate-for-content-service`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      request_id: 'req-123',
      topic: 'Python Loops',
      num_questions: 5,
      difficulty: 'medium',
    }),
  });
  const body = (await res.json()) as { status?: string; duplicate?: boolean; message?: string };
  if (res.status !== 200) return [`seed 002: the example request was refused: ${res.status} ${body.message}`];
  // The request travels through both topics; wait a little for the content service to store it.
  for (let i = 0; i < 100; i++) {
    const r = await fetch(`${content}/api/requests/req-123`);
    if (r.status === 200) {
      const stored = (await r.json()) as { status: string; total_questions: number };
      if (stored.status !== 'pending') {
        return [
          `seed 002: example request req-123 ${body.duplicate ? '(from an earlier run) ' : ''}is ${stored.status} with ${stored.total_questions} questions`,
        ];
      }
    }
    await sleep(100);
  }
  return ['seed 002: example request req-123 accepted; its questions are still on their way'];
}

/** The seed document's curl examples, pointed at the running services. */
export function tryIt(urls: Readonly<Record<string, string>>): string[] {
  const ai = urls['ai-service'];
  const content = urls['content-service'];
  if (!ai || !content) return [];
  return [
    "# seed 002: ask the AI service for questions (the seed document's own example)",
    `curl -X POST "${ai}/llm/questions/generate-for-content-service" -H "Content-Type: application/json" \\`,
    `  -d '{"request_id": "test-123", "topic": "Python Basics", "num_questions": 3, "difficulty": "easy"}'`,
    '# ... and read what the content service stored',
    `curl ${content}/api/requests/test-123`,
    "# the same through Eventline's request/reply, answered in one call",
    `curl -X POST ${content}/api/requests -H "Content-Type: application/json" \\`,
    `  -d '{"topic": "SQL joins", "num_questions": 2, "difficulty": "medium"}'`,
  ];
}

import type { EmbeddedEngineOptions } from './embedded/engine.ts';
import type { KafkaEngineOptions } from './kafka/engine.ts';
import type { Engine } from './types.ts';
import { parseEngineUrl } from './url.ts';

export interface EngineOptions {
  embedded?: EmbeddedEngineOptions;
  kafka?: KafkaEngineOptions;
}

/** Opens the engine a URL names. Engine modules load lazily, so a process only pays for its own. */
export async function openEngine(url: string, options: EngineOptions = {}): Promise<Engine> {
  const parsed = parseEngineUrl(url);
  if (parsed.kind === 'sqlite') {
    const { EmbeddedEngine } = await import('./embedded/engine.ts');
    return EmbeddedEngine.open(parsed.path, options.embedded);
  }
  const { KafkaEngine } = await import('./kafka/engine.ts');
  return KafkaEngine.open(parsed, options.kafka);
}

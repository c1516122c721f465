import { REDIS_SCRIPTS } from './redis-scripts.generated';
import type { SharedSessionRedis } from './redis-connection';

/**
 * The library's Redis scripts: the `.lua` files of the one folder of Redis
 * scripts (resty/lib/resty/shared_session/scripts/), which the build writes
 * into redis-scripts.generated.ts (scripts/write-redis-scripts.js).
 */
export type RedisScriptName = keyof typeof REDIS_SCRIPTS;

/**
 * Defines the script `name` on the client as the command `command` (ioredis
 * sends EVALSHA, and EVAL once on NOSCRIPT). Without `numberOfKeys`, each call
 * gives it first.
 */
export function defineScript(client: SharedSessionRedis, command: string, name: RedisScriptName, numberOfKeys?: number): void {
  const lua = REDIS_SCRIPTS[name];
  client.defineCommand(command, numberOfKeys === undefined ? { lua } : { numberOfKeys, lua });
}

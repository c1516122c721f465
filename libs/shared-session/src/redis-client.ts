import Redis, { RedisOptions } from 'ioredis';
import type { SharedSessionConfig } from './shared-session.options';

/**
 * Defaults for a client this module creates: fail fast instead of queueing
 * while Redis is down (a request then gets a 503 at once, not after a hang),
 * and reconnect quickly so sessions come back within about a second of Redis.
 */
export const REDIS_CLIENT_DEFAULTS: RedisOptions = {
  enableOfflineQueue: false,
  maxRetriesPerRequest: 1,
  connectTimeout: 1000,
  commandTimeout: 1000,
  retryStrategy: (attempt: number) => Math.min(attempt * 100, 1000),
};

/** True for an ioredis client (or anything that quacks like one) rather than options. */
export function isRedisClient(value: unknown): value is Redis {
  return !!value && typeof value === 'object' && typeof (value as Redis).multi === 'function' && typeof (value as Redis).on === 'function';
}

/** The client to use, and whether this module owns it (and so closes it on shutdown). */
export function createRedisClient(redis: SharedSessionConfig['redis']): { client: Redis; owned: boolean } {
  if (isRedisClient(redis)) return { client: redis, owned: false };
  const client = typeof redis === 'string' ? new Redis(redis, REDIS_CLIENT_DEFAULTS) : new Redis({ ...REDIS_CLIENT_DEFAULTS, ...redis });
  return { client, owned: true };
}

/** Resolves when the client is ready, or after `timeoutMs` (the app starts anyway and answers 503 until Redis is up). */
export function whenReady(client: Redis, timeoutMs: number): Promise<boolean> {
  if (client.status === 'ready') return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => finish(false), timeoutMs);
    const onReady = () => finish(true);
    function finish(ready: boolean) {
      clearTimeout(timer);
      client.off('ready', onReady);
      resolve(ready);
    }
    client.on('ready', onReady);
  });
}

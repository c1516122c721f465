import { Inject, Injectable, Logger, OnApplicationShutdown, OnModuleInit } from '@nestjs/common';
import Redis, { Cluster, RedisOptions } from 'ioredis';
import { SHARED_SESSION_CONFIG, SHARED_SESSION_REDIS } from './shared-session.constants';
import type { SharedSessionRedis, SharedSessionRedisOption } from './redis-connection';
import { SessionRepository } from './session-repository';

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

/** How long start-up waits for Redis before the app starts anyway (and answers 503 until Redis is up). */
const READY_TIMEOUT_MS = 3000;

export type { SharedSessionRedis };

/** True for an ioredis client or cluster (or anything that quacks like one) rather than options. */
export function isRedisClient(value: unknown): value is SharedSessionRedis {
  return !!value && typeof value === 'object' && typeof (value as Redis).multi === 'function' && typeof (value as Redis).on === 'function';
}

/**
 * The topology the `redis` option names: true for a Redis Cluster (its
 * options, or an ioredis Cluster; an ioredis client has a cluster() command,
 * so a client is asked what it is, and only options are looked into).
 */
export function namesRedisCluster(redis: SharedSessionRedisOption): boolean {
  if (isRedisClient(redis)) return (redis as { isCluster?: boolean }).isCluster === true;
  return typeof redis === 'object' && redis !== null && 'cluster' in redis;
}

/** The client of the `redis` option: the user's own, or one created with the fail-fast defaults. */
export function createRedisClient(redis: SharedSessionRedisOption): SharedSessionRedis {
  if (isRedisClient(redis)) return redis;
  if (typeof redis === 'string') return new Redis(redis, REDIS_CLIENT_DEFAULTS);
  if ('cluster' in redis) {
    const { retryStrategy: _perNode, ...perNode } = REDIS_CLIENT_DEFAULTS;
    return new Cluster(redis.cluster, {
      enableOfflineQueue: false,
      clusterRetryStrategy: REDIS_CLIENT_DEFAULTS.retryStrategy,
      ...redis.options,
      redisOptions: { ...perNode, ...redis.options?.redisOptions },
    });
  }
  return new Redis({ ...REDIS_CLIENT_DEFAULTS, ...redis });
}

/** Resolves when the client is ready, or after `timeoutMs`. */
/**
 * Whether Redis answers: PING on the client's connection, or on the
 * connection to every primary of a cluster, each within `timeoutMs`. A
 * client that is not connected is not reachable (no PING waits for it).
 */
export async function redisReachable(client: SharedSessionRedis, timeoutMs: number): Promise<boolean> {
  if (client.status !== 'ready') return false;
  const nodes = (client as { isCluster?: boolean }).isCluster === true ? (client as Cluster).nodes('master') : [client];
  if (nodes.length === 0) return false;
  const answers = await Promise.all(nodes.map((node) => withTimeout(node.ping(), timeoutMs).catch(() => undefined)));
  return answers.every((answer) => answer === 'PONG');
}

function withTimeout<T>(pending: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error('timed out')), ms);
  });
  return Promise.race([pending, timeout]).finally(() => clearTimeout(timer));
}

export function whenReady(client: SharedSessionRedis, timeoutMs: number): Promise<boolean> {
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

/**
 * The client's life in the application: start-up waits a little for Redis
 * (and says so when it is not there), and shutdown closes the client when
 * this module created it; a client the user passed in stays open.
 */
@Injectable()
export class RedisClientLifecycle implements OnModuleInit, OnApplicationShutdown {
  private readonly logger = new Logger('SharedSession');

  constructor(
    @Inject(SHARED_SESSION_REDIS) private readonly client: SharedSessionRedis,
    @Inject(SHARED_SESSION_CONFIG) private readonly config: { redis: SharedSessionRedisOption },
    private readonly sessions: SessionRepository,
  ) {}

  async onModuleInit(): Promise<void> {
    if (!(await whenReady(this.client, READY_TIMEOUT_MS))) {
      this.logger.error('Redis is not reachable yet: logins and guarded routes answer 503 until it is');
      return;
    }
    // Section 9: what eviction may do to a session depends on the layout (section 15's one key goes whole).
    const eviction = await this.sessions.evictionRisk();
    if (eviction) this.logger.warn(eviction);
  }

  async onApplicationShutdown(): Promise<void> {
    if (isRedisClient(this.config.redis)) return;
    await this.client.quit().catch(() => this.client.disconnect());
  }
}

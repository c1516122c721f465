import type { Cluster, ClusterNode, ClusterOptions, Redis, RedisOptions } from 'ioredis';

/** The module's Redis client: one server (or Sentinel), or a Redis Cluster. */
export type SharedSessionRedis = Redis | Cluster;

/** Redis Cluster: the startup nodes and ioredis' cluster options. */
export interface SharedSessionClusterOption {
  cluster: ClusterNode[];
  options?: ClusterOptions;
}

/** The `redis` option: a client, a URL, options for one Redis (or Sentinel), or a Redis Cluster's. */
export type SharedSessionRedisOption = Redis | Cluster | string | RedisOptions | SharedSessionClusterOption;

/** The sockets corked by `batchUntilCheckPhase`, until their `setImmediate` runs. */
const corked = new WeakSet<object>();

/**
 * Holds the client's commands until this turn of the event loop reaches its
 * check phase (`setImmediate`), so that the reads of all the requests that
 * one poll of the loop brought leave in one write to Redis, and its replies
 * come back in one read: fewer system calls for the app and for Redis, where
 * a write per request would cost each of them one. Commands keep their
 * order. A no-op on a Redis Cluster client (it has a socket per node).
 */
export function batchUntilCheckPhase(client: SharedSessionRedis): void {
  const stream = (client as Partial<Redis>).stream;
  if (!stream || corked.has(stream)) return;
  corked.add(stream);
  stream.cork();
  setImmediate(() => {
    corked.delete(stream);
    stream.uncork();
  });
}

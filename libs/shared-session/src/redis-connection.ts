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

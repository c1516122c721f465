import type { Cluster, Redis } from 'ioredis';

/** The module's Redis client: one server (or Sentinel), or a Redis Cluster. */
export type SharedSessionRedis = Redis | Cluster;

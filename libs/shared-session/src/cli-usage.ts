/** The operator tool's global flags (cli.ts). */
export interface GlobalOptions {
  redis: string;
  /** `host:port,...`: a Redis Cluster (in the cluster layout, PROTOCOL.md section 14.1, unless `layout` says compact) instead of `redis`. */
  cluster?: string;
  /** The key layout: `v1` (default on --redis), `cluster` (default on --cluster) or `compact` (section 15). */
  layout?: string;
  prefix: string;
  userField: string;
  ttl: string;
  json?: boolean;
}

/** A bad flag or argument: exit code 2. */
export class UsageError extends Error {}

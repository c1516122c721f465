import type { SharedSessionRefusalReason } from './refusal-reason';

/**
 * What the module counts (issue 22's vocabulary, the same names as the
 * rock's where both doors count the same thing). The module talks to this
 * interface only; `metrics` off gives the one that does nothing, on gives
 * the prom-client one (prometheus-session-metrics.ts), loaded only then.
 * Label values come from the fixed lists below, never from a request.
 */

/** A prom-client `Registry` (typed loosely so that apps without prom-client compile). */
export interface SharedSessionMetricsRegistry {
  getSingleMetric(name: string): unknown;
  registerMetric(metric: never): void;
}

/** The module's `metrics` option, when an object. */
export interface SharedSessionMetricsOptions {
  /** The prom-client registry to register the metrics in. Default: prom-client's default registry. */
  registry?: SharedSessionMetricsRegistry;
}

/** null: off; `registry` null: prom-client's default registry. */
export type SharedSessionMetricsConfig = { registry: SharedSessionMetricsRegistry | null } | null;

/** Validates the `metrics` option (off by default; true, or `{ registry }`); `error` builds the module's options error. */
export function resolveMetricsOption(value: unknown, error: (option: string, problem: string) => Error): SharedSessionMetricsConfig {
  if (value === undefined || value === false) return null;
  if (value === true) return { registry: null };
  if (!value || typeof value !== 'object' || Array.isArray(value)) throw error('metrics', 'must be true, false or an object');
  for (const key of Object.keys(value)) if (key !== 'registry') throw error(`metrics.${key}`, 'is not a known option');
  const registry = (value as SharedSessionMetricsOptions).registry;
  if (registry === undefined) return { registry: null };
  const looksLikeRegistry = !!registry && typeof registry.getSingleMetric === 'function' && typeof registry.registerMetric === 'function';
  if (!looksLikeRegistry) throw error('metrics.registry', 'must be a prom-client Registry');
  return { registry };
}

/** `shared_session_decisions_total{result}`. */
export type DecisionResult = 'allowed' | 'refused' | 'unavailable';
/** `shared_session_decisions_total{reason}`: PROTOCOL.md section 16.3, or `none` when allowed. */
export type DecisionReason = SharedSessionRefusalReason | 'none';
/** The store's Redis operations: `shared_session_store_operations_total{op}`, `shared_session_redis_seconds{op}`. */
export type StoreOperation = 'get' | 'set' | 'destroy' | 'touch';
/** `shared_session_redis_errors_total{kind}`. */
export type RedisErrorKind = 'timeout' | 'connection' | 'reply' | 'other';
/** `shared_session_redis_errors_total{op}`: the store's operations, and the control methods' `control`. */
export type RedisErrorOperation = StoreOperation | 'control';

/** The control methods, by name: `shared_session_control_operations_total{op}`, `shared_session_control_seconds{op}`. */
export const CONTROL_OPERATIONS = [
  'listSessions',
  'revokeSession',
  'revokeUser',
  'revokeIssuedBefore',
  'setUserGroups',
  'addUserToGroup',
  'removeUserFromGroup',
  'invalidateGroupCache',
  'revokeOwnSession',
  'revokeOtherSessions',
] as const;
export type ControlOperation = (typeof CONTROL_OPERATIONS)[number];

/** Seconds; the same buckets at both doors. */
export const SECONDS_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];

/** What the module reports. Every method is cheap and never throws. */
export abstract class SessionMetrics {
  /** False: nothing is measured (callers skip taking the time). */
  abstract readonly enabled: boolean;
  /** A GroupGuard or session-availability decision. */
  abstract decision(result: DecisionResult, reason: DecisionReason): void;
  abstract login(): void;
  abstract logout(): void;
  /** One of the store's Redis operations: its duration, and its error when it failed. */
  abstract storeOperation(op: StoreOperation, seconds: number, error?: unknown): void;
  abstract crossSiteRefusal(): void;
  /** A control method: its duration, and its error when it failed. */
  abstract controlOperation(op: ControlOperation, seconds: number, error?: unknown): void;
  /** One wait for acknowledgements (PROTOCOL.md section 13.4): readers expected, acknowledged, and not in time. */
  abstract acknowledgements(expected: number, received: number, timedOut: number): void;
  /** From the publish of a barrier to one reader's acknowledgement. */
  abstract revocationLag(seconds: number): void;
}

/** `metrics` off: counts nothing, loads nothing. */
export class NoSessionMetrics extends SessionMetrics {
  readonly enabled = false;
  decision(): void {}
  login(): void {}
  logout(): void {}
  storeOperation(): void {}
  crossSiteRefusal(): void {}
  controlOperation(): void {}
  acknowledgements(): void {}
  revocationLag(): void {}
}

export const NO_METRICS: SessionMetrics = new NoSessionMetrics();

/** A start time for `secondsSince`, or 0 when nothing is measured (no clock read). */
export function metricsClock(metrics: SessionMetrics): number {
  return metrics.enabled ? performance.now() : 0;
}

export function secondsSince(start: number): number {
  return (performance.now() - start) / 1000;
}

/** How a Redis call failed, for `shared_session_redis_errors_total{kind}`: from ioredis's errors. */
export function redisErrorKind(error: unknown): RedisErrorKind {
  const err = error as { name?: unknown; message?: unknown; code?: unknown } | null;
  const name = typeof err?.name === 'string' ? err.name : '';
  const message = typeof err?.message === 'string' ? err.message : '';
  if (
    name === 'ReplyError' ||
    /^(ERR|WRONGTYPE|NOSCRIPT|READONLY|OOM|BUSY|LOADING|MOVED|ASK|CROSSSLOT|CLUSTERDOWN|NOPERM)\b/.test(message)
  ) {
    return 'reply';
  }
  if (/timed? ?out/i.test(message)) return 'timeout';
  if (
    name === 'MaxRetriesPerRequestError' ||
    typeof err?.code === 'string' ||
    /connection|closed|ECONNREFUSED|ECONNRESET|EPIPE|offline queue|not reachable|stream isn't writeable/i.test(message)
  ) {
    return 'connection';
  }
  return 'other';
}

import { Logger } from '@nestjs/common';
import type * as PromClient from 'prom-client';
import {
  CONTROL_OPERATIONS,
  ControlOperation,
  DecisionReason,
  DecisionResult,
  redisErrorKind,
  RedisErrorOperation,
  SECONDS_BUCKETS,
  SessionMetrics,
  SharedSessionMetricsConfig,
  SharedSessionMetricsRegistry,
  StoreOperation,
} from './shared-session.metrics';
import { SharedSessionOptionsError } from './shared-session.options';

type Prom = typeof PromClient;

/**
 * prom-client, loaded when `metrics` is on and only then: it is an optional
 * peer dependency, and an app without metrics must not need it.
 */
export function loadPromClient(): Prom {
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return require('prom-client') as Prom;
  } catch (err) {
    throw new SharedSessionOptionsError(
      'metrics',
      `is on, but prom-client cannot be loaded (${(err as Error)?.message ?? err}): install it beside the module (npm install prom-client)`,
    );
  }
}

const DECISIONS: [DecisionResult, DecisionReason][] = [
  ['allowed', 'none'],
  ['refused', 'no_session'],
  ['refused', 'two_sessions'],
  ['refused', 'session_ended'],
  ['refused', 'not_member'],
  ['unavailable', 'unavailable'],
];
const STORE_OPERATIONS: StoreOperation[] = ['get', 'set', 'destroy', 'touch'];
const REDIS_ERROR_OPERATIONS: RedisErrorOperation[] = [...STORE_OPERATIONS, 'control'];
const REDIS_ERROR_KINDS = ['timeout', 'connection', 'reply', 'other'] as const;
const ACK_OUTCOMES = ['expected', 'received', 'timed_out'] as const;

/**
 * The module's metrics in a prom-client registry (prom-client's default one,
 * or the `metrics.registry` option's). A metric already in the registry under
 * the same name is reused: a second app in the same process (tests, a
 * reload) adds to the same series instead of failing to start. Every series
 * with a fixed label set exists from the start at 0, so that `increase()`
 * sees the first event. A metrics failure never fails a request: it is
 * logged once and counted in `shared_session_metrics_errors_total`.
 */
export class PrometheusSessionMetrics extends SessionMetrics {
  readonly enabled = true;
  private readonly logger = new Logger('SharedSessionMetrics');
  private failedOnce = false;
  private readonly errors: PromClient.Counter;
  private readonly decisions: PromClient.Counter<'result' | 'reason'>;
  private readonly logins: PromClient.Counter;
  private readonly logouts: PromClient.Counter;
  private readonly storeOperations: PromClient.Counter<'op' | 'result'>;
  private readonly redisSeconds: PromClient.Histogram<'op'>;
  private readonly redisErrors: PromClient.Counter<'op' | 'kind'>;
  private readonly crossSiteRefusals: PromClient.Counter;
  private readonly controlOperations: PromClient.Counter<'op' | 'result'>;
  private readonly controlSeconds: PromClient.Histogram<'op'>;
  private readonly acks: PromClient.Counter<'outcome'>;
  private readonly lag: PromClient.Histogram;

  constructor(prom: Prom, registry: SharedSessionMetricsRegistry | null) {
    super();
    const registers = [(registry ?? prom.register) as PromClient.Registry];
    const existing = <M>(name: string): M | undefined => registers[0].getSingleMetric(name) as M | undefined;
    const counter = <L extends string>(name: string, help: string, labelNames: L[] = []) =>
      existing<PromClient.Counter<L>>(name) ?? new prom.Counter<L>({ name, help, labelNames, registers });
    const histogram = <L extends string>(name: string, help: string, labelNames: L[] = []) =>
      existing<PromClient.Histogram<L>>(name) ?? new prom.Histogram<L>({ name, help, labelNames, buckets: SECONDS_BUCKETS, registers });

    this.errors = counter('shared_session_metrics_errors_total', 'Metrics updates that failed (a metrics failure never fails a request).');
    this.decisions = counter('shared_session_decisions_total', 'GroupGuard and session-availability decisions, by result and reason.', [
      'result',
      'reason',
    ]);
    this.logins = counter('shared_session_logins_total', 'Logins (new sessions).');
    this.logouts = counter('shared_session_logouts_total', 'Logouts.');
    this.storeOperations = counter('shared_session_store_operations_total', 'Session store operations on Redis, by operation and result.', [
      'op',
      'result',
    ]);
    this.redisSeconds = histogram('shared_session_redis_seconds', 'Redis round trips of the session store, in seconds, by operation.', [
      'op',
    ]);
    this.redisErrors = counter('shared_session_redis_errors_total', 'Redis errors, by operation and kind.', ['op', 'kind']);
    this.crossSiteRefusals = counter('shared_session_cross_site_refusals_total', 'Requests refused as cross-site (CSRF).');
    this.controlOperations = counter('shared_session_control_operations_total', 'Control operations, by method and result.', [
      'op',
      'result',
    ]);
    this.controlSeconds = histogram('shared_session_control_seconds', 'Control operations, in seconds, by method.', ['op']);
    this.acks = counter('shared_session_acknowledgements_total', 'Acknowledgements of readers (nginx) expected, received and timed out.', [
      'outcome',
    ]);
    this.lag = histogram('shared_session_revocation_lag_seconds', 'From the publish of a notice to a reader acknowledging it, in seconds.');

    this.zero();
  }

  /** Every series of a fixed label set at 0; a metric that cannot (another one of that name in the registry) is a metrics failure. */
  private zero(): void {
    const zeroes: (() => void)[] = [
      () => this.errors.inc(0),
      () => this.logins.inc(0),
      () => this.logouts.inc(0),
      () => this.crossSiteRefusals.inc(0),
      () => DECISIONS.forEach(([result, reason]) => this.decisions.inc({ result, reason }, 0)),
      () => STORE_OPERATIONS.forEach((op) => ['ok', 'error'].forEach((result) => this.storeOperations.inc({ op, result }, 0))),
      () => STORE_OPERATIONS.forEach((op) => this.redisSeconds.zero({ op })),
      () => REDIS_ERROR_OPERATIONS.forEach((op) => REDIS_ERROR_KINDS.forEach((kind) => this.redisErrors.inc({ op, kind }, 0))),
      () => CONTROL_OPERATIONS.forEach((op) => ['ok', 'error'].forEach((result) => this.controlOperations.inc({ op, result }, 0))),
      () => CONTROL_OPERATIONS.forEach((op) => this.controlSeconds.zero({ op })),
      () => ACK_OUTCOMES.forEach((outcome) => this.acks.inc({ outcome }, 0)),
      () => this.lag.zero({}),
    ];
    for (const zero of zeroes) {
      try {
        zero();
      } catch (err) {
        this.failed(err);
      }
    }
  }

  decision(result: DecisionResult, reason: DecisionReason): void {
    try {
      this.decisions.inc({ result, reason });
    } catch (err) {
      this.failed(err);
    }
  }

  login(): void {
    try {
      this.logins.inc();
    } catch (err) {
      this.failed(err);
    }
  }

  logout(): void {
    try {
      this.logouts.inc();
    } catch (err) {
      this.failed(err);
    }
  }

  storeOperation(op: StoreOperation, seconds: number, error?: unknown): void {
    try {
      this.storeOperations.inc({ op, result: error === undefined ? 'ok' : 'error' });
      this.redisSeconds.observe({ op }, seconds);
      if (error !== undefined) this.redisErrors.inc({ op, kind: redisErrorKind(error) });
    } catch (err) {
      this.failed(err);
    }
  }

  crossSiteRefusal(): void {
    try {
      this.crossSiteRefusals.inc();
    } catch (err) {
      this.failed(err);
    }
  }

  controlOperation(op: ControlOperation, seconds: number, error?: unknown): void {
    try {
      this.controlOperations.inc({ op, result: error === undefined ? 'ok' : 'error' });
      this.controlSeconds.observe({ op }, seconds);
      // A bad argument (TypeError) is the caller's, not Redis's.
      if (error !== undefined && !(error instanceof TypeError)) this.redisErrors.inc({ op: 'control', kind: redisErrorKind(error) });
    } catch (err) {
      this.failed(err);
    }
  }

  acknowledgements(expected: number, received: number, timedOut: number): void {
    try {
      if (expected > 0) this.acks.inc({ outcome: 'expected' }, expected);
      if (received > 0) this.acks.inc({ outcome: 'received' }, received);
      if (timedOut > 0) this.acks.inc({ outcome: 'timed_out' }, timedOut);
    } catch (err) {
      this.failed(err);
    }
  }

  revocationLag(seconds: number): void {
    try {
      this.lag.observe(seconds);
    } catch (err) {
      this.failed(err);
    }
  }

  private failed(err: unknown): void {
    try {
      this.errors.inc();
    } catch {
      // Counting the failure failed too: the log line below is all there is.
    }
    if (this.failedOnce) return;
    this.failedOnce = true;
    this.logger.error(
      `a metrics update failed (${(err as Error)?.message ?? err}); requests go on, failures are counted in shared_session_metrics_errors_total`,
    );
  }
}

/** The module's metrics for its resolved `metrics` option: nothing (and no prom-client) when off. */
export function createSessionMetrics(option: SharedSessionMetricsConfig, none: SessionMetrics): SessionMetrics {
  if (option === null) return none;
  return new PrometheusSessionMetrics(loadPromClient(), option.registry);
}

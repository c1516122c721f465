import { Inject, Injectable } from '@nestjs/common';
import type { DemoConfig } from './demo.config';
import { DEMO_CONFIG } from './demo.tokens';

/** One figure by door (the scrape job: `nginx` or `app`) and, for decisions, by result. */
export interface StatusFigure {
  job: string;
  result?: string;
  value: number;
}

/** The admin page's status panel: the figures an operator looks at first, from Prometheus. */
export interface StatusFigures {
  /** Decisions per second over the last minute, by door and result (allowed, refused, unavailable). */
  decisionsPerSecond: StatusFigure[];
  /** nginx's decision-cache hit rate over the last minute (worker and dict hits over all lookups), 0 to 1; NaN without lookups. */
  cacheHitRate: number;
  /** Revocation lag (publish to acknowledgement), 99th percentile over 5 minutes, in seconds; NaN without acknowledgements. */
  revocationLagP99: number;
  /** One Redis round trip, 99th percentile over the last minute, by door, in seconds. */
  redisP99: StatusFigure[];
}

/** What the panel shows instead, when it has no figures: why. */
export interface StatusUnavailable {
  unavailable: string;
}

/** PromQL of each figure: the same names the README's operations section lists. */
export const STATUS_QUERIES = {
  decisionsPerSecond: 'sum by (job, result) (rate(shared_session_decisions_total[1m]))',
  cacheHitRate: 'sum(rate(shared_session_decision_cache_total{result!="miss"}[1m])) / sum(rate(shared_session_decision_cache_total[1m]))',
  revocationLagP99: 'histogram_quantile(0.99, sum by (le) (rate(shared_session_revocation_lag_seconds_bucket[5m])))',
  redisP99: 'histogram_quantile(0.99, sum by (job, le) (rate(shared_session_redis_seconds_bucket[1m])))',
} as const;

interface VectorResult {
  metric: Record<string, string>;
  value: [number, string];
}

/**
 * Asks Prometheus's HTTP API (PROMETHEUS_URL) for the panel's figures, with
 * a short timeout: the admin page never waits long for it, and never fails
 * because of it.
 */
@Injectable()
export class StatusPanel {
  constructor(@Inject(DEMO_CONFIG) private readonly config: DemoConfig) {}

  async figures(): Promise<StatusFigures | StatusUnavailable> {
    const base = this.config.prometheusUrl;
    if (!base)
      return { unavailable: 'no Prometheus (PROMETHEUS_URL is not set; `npm run demo` starts one when Debian’s prometheus is installed)' };
    try {
      const [decisions, hit, lag, redis] = await Promise.all([
        this.query(base, STATUS_QUERIES.decisionsPerSecond),
        this.query(base, STATUS_QUERIES.cacheHitRate),
        this.query(base, STATUS_QUERIES.revocationLagP99),
        this.query(base, STATUS_QUERIES.redisP99),
      ]);
      const figure = (r: VectorResult): StatusFigure => ({
        job: r.metric.job ?? '',
        ...(r.metric.result !== undefined ? { result: r.metric.result } : {}),
        value: Number(r.value[1]),
      });
      const order = (a: StatusFigure, b: StatusFigure) => `${a.job} ${a.result ?? ''}`.localeCompare(`${b.job} ${b.result ?? ''}`);
      return {
        decisionsPerSecond: decisions.map(figure).sort(order),
        cacheHitRate: hit.length ? Number(hit[0].value[1]) : NaN,
        revocationLagP99: lag.length ? Number(lag[0].value[1]) : NaN,
        redisP99: redis.map(figure).sort(order),
      };
    } catch (err) {
      return { unavailable: `Prometheus at ${base} did not answer (${(err as Error).message})` };
    }
  }

  private async query(base: string, expr: string): Promise<VectorResult[]> {
    const res = await fetch(`${base}/api/v1/query?query=${encodeURIComponent(expr)}`, { signal: AbortSignal.timeout(1_000) });
    const body = (await res.json()) as { status: string; error?: string; data?: { result: VectorResult[] } };
    if (!res.ok || body.status !== 'success' || !body.data) throw new Error(body.error ?? `HTTP ${res.status}`);
    return body.data.result;
  }
}

import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { request } from './http-client';
import { REPO_ROOT } from './nginx-platform';
import { freePort } from './ports';
import { ServerProcess, ServerStartError } from './server-process';
import { waitFor } from './wait';

/** One scrape job: a name (the `job` label) and the `host:port` targets it scrapes at `metricsPath`. */
export interface ScrapeJob {
  job: string;
  targets: string[];
  metricsPath?: string;
}

export interface PrometheusOptions {
  jobs: ScrapeJob[];
  /** Seconds between two scrapes of a target, and two evaluations of the rules (default 5; the tests use 1). */
  scrapeIntervalSeconds?: number;
  /** Alerting rule files to load (absolute paths), e.g. ALERT_RULES. */
  ruleFiles?: string[];
  /** The port of its web UI and HTTP API (default: a free one). */
  port?: number;
  /** The binary (default $PROMETHEUS_BIN, else `prometheus` on PATH: Debian's package). */
  bin?: string;
}

/** One series of an instant vector: its labels and its value at the query's time. */
export interface PromSample {
  metric: Record<string, string>;
  value: number;
  /** The evaluation time, in seconds since the epoch. */
  time: number;
}

/** The Prometheus binary to run: $PROMETHEUS_BIN, or `prometheus` on PATH; undefined when there is none. */
export function prometheusBinary(env: NodeJS.ProcessEnv = process.env): string | undefined {
  if (env.PROMETHEUS_BIN) return existsSync(env.PROMETHEUS_BIN) ? env.PROMETHEUS_BIN : undefined;
  for (const dir of (env.PATH ?? '').split(delimiter)) {
    if (dir && existsSync(join(dir, 'prometheus'))) return join(dir, 'prometheus');
  }
  return undefined;
}

/** The project's alerting rules (the README's "Operations"): docker-compose's Prometheus loads them too. */
export const ALERT_RULES = join(REPO_ROOT, 'prometheus-alerts.yml');

/** prometheus.yml for `jobs` (JSON is YAML: no YAML writer needed). */
export function prometheusConfig(jobs: ScrapeJob[], scrapeIntervalSeconds = 5, ruleFiles: string[] = []): string {
  const interval = `${scrapeIntervalSeconds}s`;
  return JSON.stringify(
    {
      global: { scrape_interval: interval, scrape_timeout: `${Math.min(scrapeIntervalSeconds, 10)}s`, evaluation_interval: interval },
      ...(ruleFiles.length ? { rule_files: ruleFiles } : {}),
      scrape_configs: jobs.map((j) => ({
        job_name: j.job,
        metrics_path: j.metricsPath ?? '/metrics',
        static_configs: [{ targets: j.targets }],
      })),
    },
    null,
    2,
  );
}

/**
 * A real Prometheus server on 127.0.0.1, on a free port, with its
 * configuration and its TSDB in a temporary folder (deleted at dispose()),
 * ready once /-/ready answers; stopped by PID. Never Debian's system service.
 */
export class PrometheusServer {
  private constructor(
    private readonly process: ServerProcess,
    readonly port: number,
    readonly dir: string,
  ) {}

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  get pid(): number | undefined {
    return this.process.child.pid;
  }

  /** What it printed so far (its log). */
  get output(): string {
    return this.process.output;
  }

  static async start(options: PrometheusOptions): Promise<PrometheusServer> {
    const bin = options.bin ?? prometheusBinary();
    if (!bin)
      throw new Error('no prometheus binary: install Debian\'s "prometheus" package (scripts/install.sh does) or set PROMETHEUS_BIN');
    const dir = mkdtempSync(join(tmpdir(), 'rss-prometheus-'));
    const config = join(dir, 'prometheus.yml');
    writeFileSync(config, prometheusConfig(options.jobs, options.scrapeIntervalSeconds, options.ruleFiles));
    const check = spawnSync(join(bin, '..', 'promtool'), ['check', 'config', config], { encoding: 'utf8' });
    if (check.status !== null && check.status !== 0 && !check.error) {
      rmSync(dir, { recursive: true, force: true });
      throw new Error(`promtool check config failed:\n${check.stdout}${check.stderr}`);
    }
    for (let attempt = 1; ; attempt++) {
      const port = options.port ?? (await freePort());
      const args = [
        `--config.file=${config}`,
        `--storage.tsdb.path=${join(dir, 'data')}`,
        `--web.listen-address=127.0.0.1:${port}`,
        // Its own console templates are not needed; the HTTP API and the UI are.
        '--log.level=warn',
      ];
      try {
        const proc = await ServerProcess.start(bin, args, { PATH: process.env.PATH }, { port, path: '/-/ready' });
        return new PrometheusServer(proc, port, dir);
      } catch (error) {
        const retry = options.port === undefined && attempt < 3 && error instanceof ServerStartError && error.portTaken;
        if (!retry) {
          rmSync(dir, { recursive: true, force: true });
          throw error;
        }
      }
    }
  }

  /** An instant query through the HTTP API (`/api/v1/query`), at `time` (seconds) or now. */
  async query(expr: string, time?: number): Promise<PromSample[]> {
    const params = new URLSearchParams({ query: expr });
    if (time !== undefined) params.set('time', String(time));
    const res = await request(this.port, `/api/v1/query?${params.toString()}`, { timeoutMs: 5_000 });
    const body = JSON.parse(res.body) as {
      status: string;
      error?: string;
      data?: { resultType: string; result: { metric: Record<string, string>; value: [number, string] }[] };
    };
    if (res.status !== 200 || body.status !== 'success' || !body.data) {
      throw new Error(`query ${expr}: ${res.status} ${body.error ?? res.body}`);
    }
    if (body.data.resultType !== 'vector') throw new Error(`query ${expr}: a ${body.data.resultType}, not an instant vector`);
    return body.data.result.map((r) => ({ metric: r.metric, value: Number(r.value[1]), time: r.value[0] }));
  }

  /** The one value of `expr` (0 when it has no series: a counter never incremented); an error if it has several. */
  async value(expr: string, time?: number): Promise<number> {
    const samples = await this.query(expr, time);
    if (samples.length > 1) throw new Error(`query ${expr}: ${samples.length} series, not one`);
    return samples[0]?.value ?? 0;
  }

  /**
   * Waits until every target of `job` has been scraped at or after `afterMs`
   * (Date.now() terms), and that scrape succeeded: a query then sees what the
   * targets exposed at that moment.
   */
  async scrapedAfter(job: string, afterMs: number, timeoutMs = 15_000): Promise<void> {
    await waitFor(
      `a scrape of job "${job}" after ${new Date(afterMs).toISOString()}`,
      async () => {
        const up = await this.query(`up{job="${job}"}`);
        const scraped = await this.query(`timestamp(up{job="${job}"})`);
        return (
          up.length > 0 && up.every((s) => s.value === 1) && scraped.length === up.length && scraped.every((s) => s.value * 1000 >= afterMs)
        );
      },
      timeoutMs,
    );
  }

  /** The alerts firing or pending now, by name and labels (`ALERTS`). */
  async alerts(): Promise<{ alertname: string; alertstate: string; [label: string]: string }[]> {
    const samples = await this.query('ALERTS');
    return samples.map((s) => s.metric as { alertname: string; alertstate: string });
  }

  /** Stops it by PID (SIGTERM, SIGKILL after 5 s) and removes its folder. */
  async dispose(): Promise<void> {
    await this.process.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

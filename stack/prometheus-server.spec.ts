import { createServer, Server } from 'node:http';
import { AddressInfo } from 'node:net';
import { prometheusBinary, prometheusConfig, PrometheusServer } from './prometheus-server';

const bin = prometheusBinary();
if (!bin)
  console.warn('stack/prometheus-server.spec.ts: skipped, no prometheus binary (scripts/install.sh installs Debian\'s "prometheus")');
const withPrometheus = bin ? describe : describe.skip;

describe('prometheusConfig', () => {
  it('writes one scrape job per target list, at the interval asked for', () => {
    const config = JSON.parse(prometheusConfig([{ job: 'nginx', targets: ['127.0.0.1:9145'] }], 1));
    expect(config.global.scrape_interval).toBe('1s');
    expect(config.scrape_configs).toEqual([
      { job_name: 'nginx', metrics_path: '/metrics', static_configs: [{ targets: ['127.0.0.1:9145'] }] },
    ]);
  });
});

withPrometheus('PrometheusServer: a real Prometheus, scraping a target of the test', () => {
  let target: Server;
  let prometheus: PrometheusServer;
  let hits = 0;

  beforeAll(async () => {
    target = createServer((_req, res) => {
      res.setHeader('Content-Type', 'text/plain; version=0.0.4');
      res.end(`# TYPE demo_hits_total counter\ndemo_hits_total{kind="a"} ${hits}\n`);
    });
    await new Promise<void>((resolve) => target.listen(0, '127.0.0.1', resolve));
    const port = (target.address() as AddressInfo).port;
    prometheus = await PrometheusServer.start({ jobs: [{ job: 'probe', targets: [`127.0.0.1:${port}`] }], scrapeIntervalSeconds: 1 });
  }, 30_000);
  afterAll(async () => {
    await prometheus?.dispose();
    await new Promise((resolve) => target?.close(resolve));
  });

  it('answers instant queries with what it scraped after a given moment', async () => {
    hits = 7;
    const after = Date.now();
    await prometheus.scrapedAfter('probe', after);
    expect(await prometheus.value('demo_hits_total{job="probe",kind="a"}')).toBe(7);
    // A series that was never exposed reads as 0; a malformed query is an error that names it.
    expect(await prometheus.value('demo_hits_total{kind="b"}')).toBe(0);
    await expect(prometheus.query('sum(')).rejects.toThrow(/query sum\(: 400/);
  });

  it('runs from its own folder and is gone after dispose()', async () => {
    const other = await PrometheusServer.start({ jobs: [] });
    const pid = other.pid!;
    expect(process.kill(pid, 0)).toBe(true);
    await other.dispose();
    expect(() => process.kill(pid, 0)).toThrow();
  });
});

import { demoConfig } from './demo.config';
import { statusPanel } from './pages';

describe('demoConfig: the operations port and Prometheus (issue 22)', () => {
  const dev = { DEMO_DEV_MODE: '1' };

  it('opens the operations port on 9464 unless APP_ADMIN_PORT says otherwise, never on the public port', () => {
    expect(demoConfig(dev)).toMatchObject({ port: 5017, adminPort: 9464, prometheusUrl: undefined });
    expect(demoConfig({ ...dev, APP_ADMIN_PORT: '19464' }).adminPort).toBe(19464);
    expect(() => demoConfig({ ...dev, APP_PORT: '9000', APP_ADMIN_PORT: '9000' })).toThrow(
      /APP_ADMIN_PORT must differ from APP_PORT \(9000\)/,
    );
    expect(() => demoConfig({ ...dev, APP_ADMIN_PORT: 'metrics' })).toThrow(/APP_ADMIN_PORT must be a whole number/);
  });

  it('takes PROMETHEUS_URL as an http(s) URL, and nothing else', () => {
    expect(demoConfig({ ...dev, PROMETHEUS_URL: 'http://127.0.0.1:9090/' }).prometheusUrl).toBe('http://127.0.0.1:9090');
    expect(demoConfig({ ...dev, PROMETHEUS_URL: 'http://prometheus:9090' }).prometheusUrl).toBe('http://prometheus:9090');
    for (const bad of ['127.0.0.1:9090', 'file:///etc/passwd', 'javascript:alert(1)']) {
      expect(() => demoConfig({ ...dev, PROMETHEUS_URL: bad })).toThrow(/PROMETHEUS_URL must be an http\(s\) URL/);
    }
  });

  it('runs the periodic acknowledgement barrier every 5 s unless REVOCATION_BARRIER_MS says otherwise (0: off)', () => {
    expect(demoConfig(dev).session.revocation).toEqual({ wait: true, barrierIntervalMs: 5000 });
    expect(demoConfig({ ...dev, REVOCATION_BARRIER_MS: '0' }).session.revocation).toEqual({ wait: true, barrierIntervalMs: 0 });
    expect(() => demoConfig({ ...dev, REVOCATION_BARRIER_MS: 'often' })).toThrow(/REVOCATION_BARRIER_MS must be a whole number/);
  });

  it('logs every event of the library (PROTOCOL.md section 16) as a JSON line', () => {
    expect(demoConfig(dev).session.events).toEqual({ log: true });
  });
});

describe('statusPanel: the admin page’s figures', () => {
  it('shows each figure by door, in the units an operator reads', () => {
    const html = statusPanel({
      decisionsPerSecond: [
        { job: 'app', result: 'allowed', value: 0.5 },
        { job: 'nginx', result: 'allowed', value: 12.345 },
        { job: 'nginx', result: 'refused', value: 0 },
      ],
      cacheHitRate: 0.875,
      revocationLagP99: 0.0042,
      redisP99: [{ job: 'nginx', value: 0.00095 }],
    });
    expect(html).toContain('<tr id="status-decisions"><th>Decisions per second, by door and result (last minute)</th>');
    expect(html).toContain('app allowed: 0.50/s<br>nginx allowed: 12.35/s<br>nginx refused: 0.00/s');
    expect(html).toMatch(/id="status-hit-rate">.*<td>87\.5%<\/td>/);
    expect(html).toMatch(/id="status-revocation-lag">.*<td>4\.2 ms<\/td>/);
    expect(html).toMatch(/id="status-redis-p99">.*<td>nginx: 0\.9 ms<\/td>/);
  });

  it('says "no data yet" for a figure Prometheus has no samples for (NaN: no lookups, no acknowledgement)', () => {
    const html = statusPanel({ decisionsPerSecond: [], cacheHitRate: NaN, revocationLagP99: NaN, redisP99: [] });
    expect(html.match(/no data yet/g)).toHaveLength(4);
  });

  it('says why there are no figures, escaped', () => {
    expect(statusPanel({ unavailable: 'Prometheus at http://x did not answer (<timeout>)' })).toBe(
      '<h2>Status</h2><p id="status-panel">Prometheus at http://x did not answer (&#60;timeout&#62;)</p>',
    );
  });
});

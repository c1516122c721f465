import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { load } from 'js-yaml';
import { demoConfig } from '../apps/demo/src/demo.config';
import { COMPOSE_FILE, composeEnvironment, composeServices } from './docker-compose';
import { dockerNginxConf, REPO_ROOT } from './nginx-conf';
import { ALERT_RULES, prometheusBinary } from './prometheus-server';

/**
 * docker-compose.yml's `metrics` profile: a Prometheus service whose scrape
 * configuration (prometheus.yml, beside the compose file) reaches both doors
 * on the operations ports the other services really open, and nothing of it
 * in the default stack. No Docker engine runs here: the file is read as
 * Compose reads it, checked by docker-compose (v1) and promtool.
 */
const SECRET = 'Qm9xLCBub3QgYSByZWFsIHNlY3JldCwgYnV0IGxvbmc=';
const PROMETHEUS_YML = join(REPO_ROOT, 'prometheus.yml');

interface ScrapeConfig {
  job_name: string;
  metrics_path?: string;
  static_configs: { targets: string[] }[];
}

describe('docker-compose.yml: the metrics profile', () => {
  const services = composeServices({ SESSION_SECRET: SECRET });
  const prometheus = services.prometheus;
  const config = load(readFileSync(PROMETHEUS_YML, 'utf8')) as { scrape_configs: ScrapeConfig[]; rule_files: string[] };
  const scrape = config.scrape_configs;
  const targets = (job: string) => scrape.find((s) => s.job_name === job)?.static_configs.flatMap((c) => c.targets);

  it('runs Prometheus only in the profile, with prometheus.yml mounted and its UI on 127.0.0.1', () => {
    expect(prometheus.profiles).toEqual(['metrics']);
    expect(prometheus.image).toMatch(/^prom\/prometheus:v\d+\.\d+\.\d+$/);
    expect(prometheus.volumes).toEqual([
      './prometheus.yml:/etc/prometheus/prometheus.yml:ro',
      './prometheus-alerts.yml:/etc/prometheus/alerts.yml:ro',
    ]);
    expect(prometheus.command).toContain('--config.file=/etc/prometheus/prometheus.yml');
    expect(prometheus.ports).toEqual(['127.0.0.1:9090:9090']);
    expect(composeServices({ SESSION_SECRET: SECRET, PROMETHEUS_PORT: '19090' }).prometheus.ports).toEqual(['127.0.0.1:19090:9090']);
    const inProfile = Object.entries(services).filter(([, s]) => s.profiles?.includes('metrics'));
    expect(inProfile.map(([name]) => name)).toEqual(['prometheus']);
  });

  it("scrapes nginx's and the app's operations ports, which those services open and do not publish", () => {
    expect(scrape.map((s) => [s.job_name, s.metrics_path ?? '/metrics'])).toEqual([
      ['nginx', '/metrics'],
      ['app', '/metrics'],
    ]);
    // nginx: the operations server of the rendered nginx.conf.
    const conf = dockerNginxConf(composeEnvironment(services['nginx-conf']));
    const [host, port] = targets('nginx')![0].split(':');
    expect(host).toBe('nginx');
    expect(conf).toMatch(new RegExp(`listen ${port};\\s+access_log off;[^]*location = /metrics[^]*serve_metrics\\(\\)`));
    expect(services.nginx.ports!.join()).not.toContain(port);
    // The app: its APP_ADMIN_PORT, as demoConfig reads it.
    const [appHost, appPort] = targets('app')![0].split(':');
    expect(appHost).toBe('demo');
    expect(demoConfig(composeEnvironment(services.demo)).adminPort).toBe(Number(appPort));
    expect(services.demo.ports).toBeUndefined();
    // The admin page's status panel asks the profile's Prometheus.
    expect(demoConfig(composeEnvironment(services.demo)).prometheusUrl).toBe('http://prometheus:9090');
  });

  it('is valid for docker-compose with the profile', () => {
    const config = spawnSync('docker-compose', ['-f', COMPOSE_FILE, '--profile', 'metrics', 'config'], {
      encoding: 'utf8',
      env: { ...process.env, SESSION_SECRET: SECRET },
    });
    expect([config.status, config.stderr]).toEqual([0, '']);
    expect(config.stdout).toMatch(/prometheus:\n(.*\n)*?\s+image: prom\/prometheus/);
  });

  const promtool = prometheusBinary() ? join(prometheusBinary()!, '..', 'promtool') : undefined;
  it('loads the alerting rules from where the service mounts them', () => {
    expect(config.rule_files).toEqual(['/etc/prometheus/alerts.yml']);
  });

  (promtool ? it : it.skip)('prometheus.yml and the alerting rules pass promtool', () => {
    // The rule file's path is the container's: the syntax here, the rules on their own below.
    const check = spawnSync(promtool!, ['check', 'config', '--syntax-only', PROMETHEUS_YML], { encoding: 'utf8' });
    expect([check.status, check.stdout]).toEqual([0, expect.stringContaining('SUCCESS')]);
    const rules = spawnSync(promtool!, ['check', 'rules', ALERT_RULES], { encoding: 'utf8' });
    expect([rules.status, rules.stdout]).toEqual([0, expect.stringMatching(/SUCCESS: \d+ rules found/)]);
  });
});

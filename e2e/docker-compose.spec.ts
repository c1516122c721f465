import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { REPO_ROOT } from '../stack/nginx-conf';

/**
 * No Docker engine runs here: docker-compose (v1) validates the file without
 * one, and the test checks that the stack is the same one the local demo runs.
 */
describe('docker-compose.yml', () => {
  const file = resolve(REPO_ROOT, 'docker-compose.yml');
  const config = spawnSync('docker-compose', ['-f', file, 'config'], {
    encoding: 'utf8',
    env: { ...process.env, SESSION_SECRET: 'compose-test' },
  });

  it('is valid for docker-compose, with the cluster profile too', () => {
    expect(config.stderr).not.toMatch(/ERROR/);
    expect(config.status).toBe(0);
    const cluster = spawnSync('docker-compose', ['-f', file, '--profile', 'cluster', 'config'], {
      encoding: 'utf8',
      env: { ...process.env, SESSION_SECRET: 'compose-test' },
    });
    expect([cluster.status, cluster.stderr]).toEqual([0, '']);
    expect(cluster.stdout).toContain('SESSION_KEY_LAYOUT: cluster');
  });

  it('runs the official OpenResty image with the rock, Redis 7 and the demo built from its Dockerfile', () => {
    expect(config.stdout).toMatch(/image: openresty\/openresty:[\w.-]+/);
    expect(config.stdout).toMatch(/image: redis:7/);
    expect(config.stdout).toContain('dockerfile: apps/demo/Dockerfile');
    expect(config.stdout).toContain(`${resolve(REPO_ROOT, 'resty/lib')}:/opt/resty-shared-session/lib:ro`);
  });

  it('renders nginx.conf from the same template the local stack uses', () => {
    expect(config.stdout).toContain(`${resolve(REPO_ROOT, 'resty/conf/nginx.conf.template')}:/app/resty/conf/nginx.conf.template:ro`);
    expect(readFileSync(resolve(REPO_ROOT, 'stack/render-nginx-conf.ts'), 'utf8')).toContain('dockerNginxConf(');
    expect(readFileSync(resolve(REPO_ROOT, 'stack/nginx-conf.ts'), 'utf8')).toMatch(/function dockerNginxConf[^]*renderNginxConf\(/);
    expect(readFileSync(resolve(REPO_ROOT, 'stack/demo-stack.ts'), 'utf8')).toContain('renderNginxConf(');
  });

  it('passes the secret to nginx and the app from the environment, not from a file', () => {
    expect(config.stdout.match(/SESSION_SECRET: compose-test/g)?.length).toBeGreaterThanOrEqual(3);
  });

  it('requires a SESSION_SECRET: there is no published default to fall back on (issue 12, finding 6)', () => {
    const env = { ...process.env };
    delete env.SESSION_SECRET;
    const without = spawnSync('docker-compose', ['-f', file, 'config'], { encoding: 'utf8', env });
    expect(without.status).not.toBe(0);
    expect(without.stderr).toMatch(/set SESSION_SECRET to 32 or more random bytes/);
    expect(readFileSync(file, 'utf8')).not.toContain('demo-secret-change-me');
  });

  it('the render step the nginx container waits for fills in every placeholder', () => {
    const rendered = spawnSync(process.execPath, [resolve(REPO_ROOT, 'stack/dist/stack/render-nginx-conf.js')], {
      encoding: 'utf8',
      env: { PATH: process.env.PATH, REDIS_URL: 'redis://redis:6379', APP_UPSTREAM: 'demo:5017', NGINX_LISTEN: '8089' },
    });
    expect(rendered.stderr).toBe('');
    expect(rendered.status).toBe(0);
    expect(rendered.stdout).not.toMatch(/\{\{\w+\}\}/);
    expect(rendered.stdout).toMatch(/listen 8089;/);
    expect(rendered.stdout).toMatch(/server demo:5017;/);
    expect(rendered.stdout).toMatch(/host = "redis", port = 6379/);
    expect(rendered.stdout).not.toMatch(/load_module/);
    expect(rendered.stdout).not.toMatch(/demo-secret|compose-test/);
    const clustered = spawnSync(process.execPath, [resolve(REPO_ROOT, 'stack/dist/stack/render-nginx-conf.js')], {
      encoding: 'utf8',
      env: { PATH: process.env.PATH, REDIS_CLUSTER_NODES: 'redis-node-1:6379,redis-node-2:6379', NGINX_RESOLVER: '127.0.0.11' },
    });
    expect([clustered.status, clustered.stderr]).toEqual([0, '']);
    expect(clustered.stdout).toContain('key_layout = "cluster"');
    expect(clustered.stdout).toContain(
      'cluster = { nodes = { { host = "redis-node-1", port = 6379 }, { host = "redis-node-2", port = 6379 } } }',
    );
    expect(clustered.stdout).toContain('resolver 127.0.0.11 ipv6=off valid=10s;');
  });
});

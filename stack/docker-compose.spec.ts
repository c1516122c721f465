import { demoConfig } from '../apps/demo/src/demo.config';
import { ComposeService, composeEnvironment, composeServices } from './docker-compose';
import { dockerNginxConf } from './nginx-conf';

/**
 * docker-compose.yml, read as Compose reads it (no Docker engine runs here),
 * against what the demo app (demoConfig) and the nginx.conf renderer
 * (dockerNginxConf) make of each service's environment: the default stack on
 * one Redis, and the `cluster` profile on six Redis Cluster nodes.
 * e2e/demo-cluster.e2e-spec.ts runs the profile's cluster-making script and
 * the demo on a real cluster.
 */
const SECRET = 'Qm9xLCBub3QgYSByZWFsIHNlY3JldCwgYnV0IGxvbmc=';

describe('docker-compose.yml: the default stack and the cluster profile', () => {
  const services = composeServices({ SESSION_SECRET: SECRET });
  const cluster = Object.entries(services).filter(([, s]) => s.profiles?.includes('cluster'));
  const nodes = cluster.filter(([name]) => /^redis-node-\d+$/.test(name));
  const env = (name: string) => composeEnvironment(services[name]);
  const dependsOn = (s: ComposeService) => (Array.isArray(s.depends_on) ? s.depends_on : Object.keys(s.depends_on ?? {}));

  it('keeps the default stack out of any profile, on one Redis, and every cluster service in the profile', () => {
    for (const name of ['redis', 'demo', 'nginx-conf', 'nginx']) expect([name, services[name].profiles]).toEqual([name, undefined]);
    expect(cluster.map(([name]) => name).sort()).toEqual(
      [...nodes.map(([name]) => name), 'redis-cluster-init', 'demo-cluster', 'nginx-conf-cluster', 'nginx-cluster'].sort(),
    );
    const single = demoConfig(env('demo')).session;
    expect([single.redis, single.keyLayout]).toEqual(['redis://redis:6379', 'v1']);
    const conf = dockerNginxConf(env('nginx-conf'));
    expect(conf).toContain('key_layout = "v1"');
    expect(conf).toContain('redis = { host = "redis", port = 6379, db = 0,');
    expect(conf).toContain('server demo:5017;');
    // Lua's sockets reach Redis by its service name only through Docker's DNS.
    expect(conf).toContain('resolver 127.0.0.11 ipv6=off valid=10s;');
  });

  it('puts the default stack in the compact layout at both doors when SESSION_KEY_LAYOUT says so', () => {
    const compact = composeServices({ SESSION_SECRET: SECRET, SESSION_KEY_LAYOUT: 'compact' });
    expect(demoConfig(composeEnvironment(compact.demo)).session.keyLayout).toBe('compact');
    expect(dockerNginxConf(composeEnvironment(compact['nginx-conf']))).toContain('key_layout = "compact"');
  });

  it("leaves nginx's refresh interval to its default, which follows the idle timeout, unless SESSION_REFRESH_INTERVAL sets it", () => {
    expect(dockerNginxConf(env('nginx-conf'))).toContain('refresh = { interval = nil },');
    const set = composeServices({ SESSION_SECRET: SECRET, SESSION_REFRESH_INTERVAL: '30' });
    expect(dockerNginxConf(composeEnvironment(set['nginx-conf']))).toContain('refresh = { interval = 30 },');
  });

  it('runs six Redis 7 nodes with cluster mode on, and makes them one cluster of three primaries with a replica each', () => {
    expect(nodes).toHaveLength(6);
    for (const [, node] of nodes) {
      expect(node.image).toBe('redis:7');
      expect(node.command?.join(' ')).toMatch(/^redis-server --port 6379 --cluster-enabled yes /);
    }
    const init = services['redis-cluster-init'];
    expect(init.image).toBe('redis:7');
    expect(dependsOn(init).sort()).toEqual(nodes.map(([name]) => name).sort());
    expect(init.command?.[2]).toMatch(/redis-cli --cluster create \$addresses --cluster-replicas 1 --cluster-yes/);
  });

  it('points the demo, the renderer and the init script at exactly those nodes, in the cluster layout', () => {
    const list = nodes.map(([name]) => `${name}:6379`).join(',');
    for (const name of ['redis-cluster-init', 'demo-cluster', 'nginx-conf-cluster'])
      expect([name, env(name).REDIS_CLUSTER_NODES]).toEqual([name, list]);

    const session = demoConfig(env('demo-cluster')).session;
    expect(session.keyLayout).toBe('cluster');
    expect(session.redis).toEqual({ cluster: list.split(',') });
    expect(session.keyPrefix).toBe(env('nginx-conf-cluster').SESSION_KEY_PREFIX);

    const conf = dockerNginxConf(env('nginx-conf-cluster'));
    expect(conf).toContain('key_layout = "cluster"');
    expect(conf).toContain(`redis = { cluster = { nodes = { ${nodes.map(([name]) => `{ host = "${name}", port = 6379 }`).join(', ')} } },`);
    expect(conf).toContain('server demo-cluster:5017;');
    expect(conf).toContain('resolver 127.0.0.11 ipv6=off valid=10s;');
    expect(conf).not.toMatch(/\{\{\w+\}\}/);
  });

  it('starts the cluster demo once the cluster is made, and nginx on its own port with its own rendered conf', () => {
    expect(services['demo-cluster'].depends_on).toEqual({ 'redis-cluster-init': { condition: 'service_completed_successfully' } });
    expect(services['demo-cluster'].build).toEqual(services.demo.build);
    expect(dependsOn(services['nginx-cluster']).sort()).toEqual(['demo-cluster', 'nginx-conf-cluster']);
    expect(services['nginx-conf-cluster'].volumes).toContain('nginx-conf-cluster:/conf');
    expect(services['nginx-cluster'].volumes).toContain('nginx-conf-cluster:/etc/resty:ro');
    expect(services['nginx-cluster'].ports).toEqual(['127.0.0.1:8090:8089']);
    expect(services.nginx.ports).toEqual(['127.0.0.1:8089:8089']);
    expect(env('nginx-cluster')).toEqual({ SESSION_SECRET: SECRET, SESSION_SECRET_FALLBACKS: '' });
  });

  it('refuses a Redis Cluster and a single Redis at once, and a layout it does not know, naming the variable', () => {
    const dev = { DEMO_DEV_MODE: '1' };
    expect(() => demoConfig({ ...dev, REDIS_URL: 'redis://r:6379', REDIS_CLUSTER_NODES: 'a:1' })).toThrow(
      /REDIS_URL .* or REDIS_CLUSTER_NODES/,
    );
    expect(() => demoConfig({ ...dev, SESSION_KEY_LAYOUT: 'three-keys' })).toThrow(/SESSION_KEY_LAYOUT must be v1, cluster or compact/);
    expect(demoConfig({ ...dev, SESSION_KEY_LAYOUT: 'compact' }).session).toMatchObject({ keyLayout: 'compact' });
    expect(demoConfig({ ...dev, SESSION_KEY_LAYOUT: 'cluster' }).session).toMatchObject({ keyLayout: 'cluster', redis: undefined });
    expect(() => dockerNginxConf({ REDIS_CLUSTER_NODES: 'a:1,nowhere' })).toThrow(/not host:port: nowhere/);
    expect(() => dockerNginxConf({ SESSION_KEY_LAYOUT: 'three-keys' })).toThrow(/SESSION_KEY_LAYOUT/);
    expect(dockerNginxConf({ SESSION_KEY_LAYOUT: 'compact' })).toContain('key_layout = "compact"');
  });
});

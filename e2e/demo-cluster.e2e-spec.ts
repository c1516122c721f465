import type { Cluster } from 'ioredis';
import { PROTOCOL_DEFAULTS, readSession, sessionIdOf, sessionKeyCount, sessionKeys } from '../protocol/testkit';
import { mustLogin as loginAt } from '../stack/demo-login';
import { DemoStack } from '../stack/demo-stack';
import { composeEnvironment, composeServices, runComposeClusterInit } from '../stack/docker-compose';
import { request } from '../stack/http-client';
import { expectPurgeOfOneGroup } from './admin-purge';
import { RedisClusterStack } from '../stack/redis-cluster';

/**
 * docker-compose.yml's `cluster` profile without Docker: a Redis Cluster of
 * 3 primaries and 3 replicas made by the profile's own one-shot script
 * (`redis-cluster-init`), the demo app with the environment of the profile's
 * `demo-cluster` service, and nginx with the nginx.conf the renderer makes
 * for a cluster (`key_layout = "cluster"`, `redis.cluster.nodes`): logins,
 * group resources allowed and refused at nginx, logout, and the admin page
 * (a user's sessions listed, regrouped and revoked; the not-before mark and
 * a group's cache purged, everyone logged out by the not-before mark).
 */
const SECRET = 'Qm9xLCBub3QgYSByZWFsIHNlY3JldCwgYnV0IGxvbmc=';
const PREFIX = PROTOCOL_DEFAULTS.keyPrefix;

describe('the demo on Redis Cluster (docker-compose profile "cluster", without Docker)', () => {
  let cluster: RedisClusterStack;
  let client: Cluster;
  let stack: DemoStack;
  let created = '';

  const get = (path: string, cookie?: string) =>
    request(stack.nginx.port, path, { headers: cookie === undefined ? {} : { Cookie: `session=${cookie}` } });
  const post = (path: string, cookie: string) =>
    request(stack.nginx.port, path, { method: 'POST', headers: { Cookie: `session=${cookie}` } });
  const mustLogin = (email: string, password: string) => loginAt(stack.nginx.port, email, password);

  beforeAll(async () => {
    cluster = await RedisClusterStack.start(3, async (addresses) => {
      created = await runComposeClusterInit(addresses);
    });
    client = cluster.client();
    const demoEnv = composeEnvironment(composeServices({ SESSION_SECRET: SECRET })['demo-cluster']);
    stack = await DemoStack.start({ cluster, env: { ...process.env, ...demoEnv } });
  }, 90_000);
  afterAll(async () => {
    await stack?.stop();
    client?.disconnect();
    await cluster?.dispose();
  });

  it('the profile’s script made the cluster, and running it again changes nothing', async () => {
    expect(created).toMatch(/\[OK\] All 16384 slots covered/);
    expect(await runComposeClusterInit(cluster.startupNodes.map((n) => `${n.host}:${n.port}`))).toBe('the cluster is already there\n');
  });

  it('logs in through nginx, allows a group resource to a member and refuses a non-member, and logs out', async () => {
    const joe = await mustLogin('joe@example.com', 'itsjoe'); // groups one, three
    const sam = await mustLogin('sam@example.com', 'itssam'); // group two
    const sid = sessionIdOf(joe, SECRET, PROTOCOL_DEFAULTS.salt)!;
    // The session is in the cluster layout (PROTOCOL.md section 14), on the cluster.
    expect((await readSession(client, PREFIX, sid, 'cluster')).groups).toEqual(['one', 'three']);
    expect(await client.exists(`${PREFIX}:data:${sid}`)).toBe(0);

    expect((await get('/app', joe)).body).toContain("Logged in as 'joe@example.com'");
    const first = await get('/app/group/one/cacheable/summary', joe);
    expect(first.status).toBe(200);
    expect((await get('/app/group/one/cacheable/summary', joe)).headers['x-cache-status']).toEqual(['HIT']);
    expect((await get('/app/api/v1/group/three/uncacheable/live', joe)).status).toBe(200);
    expect((await get('/app/group/one/cacheable/summary', sam)).status).toBe(403);
    expect((await get('/app/group/two/cacheable/summary', sam)).status).toBe(200);
    expect((await get('/app/group/one/cacheable/summary')).status).toBe(401);

    expect((await post('/app/logout', joe)).status).toBe(303);
    expect(await sessionKeyCount(client, PREFIX, sid, 'cluster')).toBe(0);
    expect((await get('/app/group/one/cacheable/summary', joe)).status).toBe(403);
    expect((await get('/app', joe)).body).toContain('You are not logged in!');
  });

  it("the admin page on the cluster layout: a user's sessions on several primaries listed, regrouped and logged out, refused at nginx at once (PROTOCOL.md section 14.1)", async () => {
    const admin = await mustLogin('admin@example.com', 'itsadmin');
    const joes: string[] = [];
    const primaries = new Set<number>();
    while (joes.length < 4 || (primaries.size < 2 && joes.length < 30)) {
      const joe = await mustLogin('joe@example.com', 'itsjoe'); // groups one, three
      joes.push(joe);
      const sid = sessionIdOf(joe, SECRET, PROTOCOL_DEFAULTS.salt)!;
      primaries.add((await cluster.primaryOf(Number(await client.cluster('KEYSLOT', sessionKeys(PREFIX, sid, 'cluster').data)))).port);
    }
    expect(primaries.size).toBeGreaterThanOrEqual(2);
    const one = '/app/group/one/cacheable/admin-cluster';
    const three = '/app/group/three/cacheable/admin-cluster';
    // Every session allowed once: nginx keeps the decisions (its subscriber is on every primary).
    for (const joe of joes) {
      expect((await get(one, joe)).status).toBe(200);
      expect((await get(three, joe)).status).toBe(200);
    }
    const page = await get('/app/admin', admin);
    expect(page.status).toBe(200);
    expect(page.body).toMatch(new RegExp(`joe@example.com</td><td><span class="count">${joes.length}<`));

    expect((await post('/app/admin/users/joe%40example.com/groups/one/remove', admin)).status).toBe(303);
    for (const joe of joes) {
      expect((await get(one, joe)).status).toBe(403);
      expect((await get(three, joe)).status).toBe(200);
    }

    expect((await post('/app/admin/users/joe%40example.com/logout-everywhere', admin)).status).toBe(303);
    for (const joe of joes) {
      expect((await get(three, joe)).status).toBe(403);
      expect((await get('/app/api/v1/myself', joe)).status).toBe(401);
    }
    expect((await get('/app/admin', admin)).body).toMatch(/joe@example.com<\/td><td><span class="count">0</);

    expect((await get('/app', admin)).body).toContain("Logged in as 'admin@example.com'");
    expect(stack.appLog).not.toMatch(/ERROR/);
  });

  it('purging group one’s cache on the cluster layout: the next member’s request is a MISS, then HITs again; other groups keep their HITs (PROTOCOL.md section 14.2)', async () => {
    await expectPurgeOfOneGroup({ get, post, login: mustLogin });
    expect(stack.appLog).not.toMatch(/ERROR/);
  });

  it('the not-before mark on the cluster layout: every session issued before it is refused at once, at nginx and at the app; new logins work (PROTOCOL.md section 14.3)', async () => {
    const admin = await mustLogin('admin@example.com', 'itsadmin');
    const joe = await mustLogin('joe@example.com', 'itsjoe');
    const path = '/app/api/v1/group/three/cacheable/not-before';
    await get(path, joe);
    expect((await get(path, joe)).headers['x-cache-status']).toEqual(['HIT']);
    const marked = await post('/app/admin/not-before', admin);
    expect(marked.status).toBe(303);
    expect((await get(path, joe)).status).toBe(403);
    expect((await get('/app/api/v1/myself', joe)).status).toBe(401);
    expect((await get('/app/admin', admin)).status).toBe(401);
    await new Promise((resolve) => setTimeout(resolve, 5)); // a new id's issue time is after the mark
    const again = await mustLogin('joe@example.com', 'itsjoe');
    expect((await get(path, again)).status).toBe(200);
    expect(stack.appLog).not.toMatch(/ERROR/);
  });
});

import type { INestApplication } from '@nestjs/common';
import type { Cluster } from 'ioredis';
import request from 'supertest';
import { readSession, sessionKeyCount, sessionKeys } from '../../../protocol/testkit';
import { RedisClusterStack } from '../../../stack/redis-cluster';
import { sleep } from '../../../stack/wait';
import { resolveSharedSessionOptions, SharedSessionOptionsError } from '../src/shared-session.options';
import { createTestApp } from './test-app';

/**
 * The module on a real Redis Cluster (3 primaries, 3 replicas) with the
 * cluster layout (PROTOCOL.md section 14): sessions on every primary, the
 * atomic writes of section 8 within each session's slot, logout, and a
 * failover (503s until the replica is promoted, never a session that is not
 * there).
 */
const PREFIX = 'app_cl';
const SECRET = 'a-secret-of-at-least-32-bytes!!!';

describe('SharedSessionModule on Redis Cluster (cluster layout)', () => {
  let cluster: RedisClusterStack;
  let client: Cluster;
  let app: INestApplication;
  const http = () => request(app.getHttpServer());

  async function login(username: string, groups: string[]): Promise<{ cookie: string; sid: string }> {
    const res = await http().post('/login').send({ username, groups }).expect(204);
    const cookie = ([] as string[]).concat(res.headers['set-cookie'] ?? [])[0].split(';')[0];
    return { cookie, sid: cookie.slice(cookie.indexOf('=') + 1, cookie.indexOf('.')) };
  }

  beforeAll(async () => {
    cluster = await RedisClusterStack.start();
    client = cluster.client();
    app = await createTestApp({ secret: SECRET, keyPrefix: PREFIX, keyLayout: 'cluster', redis: { cluster: cluster.startupNodes } });
  }, 60_000);
  afterAll(async () => {
    await app?.close();
    client?.disconnect();
    await cluster?.dispose();
  });

  it('logs in, guards, changes groups and logs out, each session in its own slot on one of the three primaries', async () => {
    const primaries = new Set<number>();
    // Until sessions have landed on all three primaries (slots are random; 40 logins leave ~1e-7 of chance).
    for (let i = 0; i < 40 && (i < 6 || primaries.size < 3); i++) {
      const { cookie, sid } = await login(`user${i}@example.com`, ['one']);
      const stored = await readSession(client, PREFIX, sid, 'cluster');
      expect(stored.groups).toEqual(['one']);
      expect(stored.data).toMatchObject({ username: `user${i}@example.com` });
      primaries.add((await cluster.primaryOf(Number(await client.cluster('KEYSLOT', sessionKeys(PREFIX, sid, 'cluster').data)))).port);
      await http().get('/groups/one/report').set('Cookie', cookie).expect(200);
      await http().get('/groups/two/report').set('Cookie', cookie).expect(403);
      await http()
        .post('/groups')
        .set('Cookie', cookie)
        .send({ groups: ['two'] })
        .expect(204);
      await http().get('/groups/two/report').set('Cookie', cookie).expect(200);
      expect((await readSession(client, PREFIX, sid, 'cluster')).groups).toEqual(['two']);
      await http().post('/logout').set('Cookie', cookie).expect(204);
      expect(await sessionKeyCount(client, PREFIX, sid, 'cluster')).toBe(0);
    }
    expect(primaries.size).toBe(3);
  });

  it('failover: 503 while the primary of a session is down, the session again once its replica is promoted', async () => {
    const { cookie, sid } = await login('joe@example.com', ['one']);
    const primary = await cluster.primaryOf(Number(await client.cluster('KEYSLOT', sessionKeys(PREFIX, sid, 'cluster').data)));
    // Replication is asynchronous: a session written just before its primary
    // dies can be lost with it (its user logs in again). Here the replica has it.
    await cluster.waitReplicated(primary, sessionKeys(PREFIX, sid, 'cluster').data);
    await primary.stop();
    const killedAt = performance.now();
    const seen: Record<number, number> = {};
    let back = 0;
    while (performance.now() - killedAt < 20_000) {
      const { status } = await http().get('/groups/one/report').set('Cookie', cookie);
      seen[status] = (seen[status] ?? 0) + 1;
      expect([200, 503]).toContain(status);
      if (status === 200) {
        back = performance.now() - killedAt;
        break;
      }
      await sleep(50);
    }
    console.log(
      `Cluster failover at the app: the session was served again ${Math.round(back)} ms after its primary was killed; answers ${JSON.stringify(seen)}`,
    );
    expect(back).toBeGreaterThan(0);
  }, 30_000);

  it('refuses Redis Cluster without the cluster layout, and a prefix that would be the hash tag, naming the option', () => {
    expect(() => resolveSharedSessionOptions({ secret: SECRET, redis: { cluster: [{ host: '127.0.0.1', port: 7000 }] } })).toThrow(
      new SharedSessionOptionsError('keyLayout', "must be 'cluster' with Redis Cluster (the v1 keys of a session are in three slots)"),
    );
    expect(() => resolveSharedSessionOptions({ secret: SECRET, keyLayout: 'cluster', keyPrefix: '{app}' })).toThrow(/option "keyPrefix"/);
    expect(() => resolveSharedSessionOptions({ secret: SECRET, keyLayout: 'cluster', redis: { cluster: [] } })).toThrow(
      /option "redis.cluster"/,
    );
    expect(() => resolveSharedSessionOptions({ secret: SECRET, keyLayout: 'compact' as never })).toThrow(/option "keyLayout"/);
  });
});

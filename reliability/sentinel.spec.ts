import type { INestApplication } from '@nestjs/common';
import Redis from 'ioredis';
import request from 'supertest';
import { createTestApp } from '../libs/shared-session/test/test-app';
import { SessionCookieSigner } from '../libs/shared-session/src';
import { RedisSentinelCluster } from '../stack/redis-sentinel';
import { sleep } from '../stack/ports';

/**
 * The Nest module on a Sentinel-managed Redis (ioredis' Sentinel options):
 * sessions made before a failover still work after it, and logins work again
 * once a replica is promoted.
 */
describe('SharedSessionModule through a Redis Sentinel failover', () => {
  let cluster: RedisSentinelCluster;
  let app: INestApplication;
  const signer = new SessionCookieSigner({ secret: 'sentinel-secret' });

  beforeAll(async () => {
    cluster = await RedisSentinelCluster.start();
    app = await createTestApp({ secret: 'sentinel-secret', redis: { sentinels: cluster.sentinelAddresses, name: cluster.masterName } });
  }, 60_000);
  afterAll(async () => {
    await app?.close();
    await cluster?.dispose();
  });

  it('keeps the sessions made before the failover, and logs in again after it', async () => {
    const login = (username: string) => request(app.getHttpServer()).post('/login').send({ username, groups: ['g1'] });
    const res = await login('before@example.com').expect(204);
    const cookie = String(res.headers['set-cookie']).split(';')[0];
    expect(signer.unsign(cookie.slice('session='.length))).not.toBeNull();
    // A session counts as made once a replica has it.
    const primary = new Redis(cluster.primary.url);
    expect(await primary.call('WAIT', '1', '2000')).toBe(1);
    primary.disconnect();

    const oldPrimary = cluster.primary.port;
    const killedAt = Date.now();
    await cluster.primary.stop();

    let firstOk: number | undefined;
    const statuses = new Set<number>();
    while (Date.now() - killedAt < 30_000) {
      const status = (await request(app.getHttpServer()).get('/groups/g1/report').set('Cookie', cookie)).status;
      statuses.add(status);
      if (status === 200) {
        firstOk = Date.now();
        break;
      }
      await sleep(100);
    }
    expect(firstOk).toBeDefined();
    // While no primary is known the answer is 503, never a 500 or an allow for someone else.
    statuses.delete(200);
    expect([...statuses].every((s) => s === 503)).toBe(true);
    expect(await cluster.currentPrimaryPort()).not.toBe(oldPrimary);

    await login('after@example.com').expect(204);
    console.log(`Sentinel failover: the app served the old session again ${firstOk! - killedAt} ms after the primary was killed (down-after 1000 ms)`);
  }, 60_000);
});

import type { INestApplication } from '@nestjs/common';
import Redis from 'ioredis';
import supertest from 'supertest';
import { forEachAdapter } from '../libs/shared-session/test/support';
import { createTestApp } from '../libs/shared-session/test/test-app';
import { cookieValue, PROTOCOL_DEFAULTS, sessionIdOf, signature, writeSession } from '../protocol/testkit';
import { request } from '../stack/http-client';
import { NginxServer } from '../stack/nginx-server';
import { RedisSentinelCluster } from '../stack/redis-sentinel';
import { sleep } from '../stack/wait';

// Both the app and nginx use the protocol's default salt and key prefix.
const SECRET = 'sentinel-secret';

/**
 * The Nest module on a Sentinel-managed Redis (ioredis' Sentinel options), on each adapter:
 * sessions made before a failover still work after it, and logins work again
 * once a replica is promoted.
 */
forEachAdapter((adapter) =>
  describe('SharedSessionModule through a Redis Sentinel failover', () => {
    let cluster: RedisSentinelCluster;
    let app: INestApplication;

    beforeAll(async () => {
      cluster = await RedisSentinelCluster.start();
      app = await createTestApp(
        { secret: SECRET, redis: { sentinels: cluster.sentinelAddresses, name: cluster.masterName } },
        false,
        adapter,
      );
    }, 60_000);
    afterAll(async () => {
      await app?.close();
      await cluster?.dispose();
    });

    it('keeps the sessions made before the failover, and logs in again after it', async () => {
      const login = (username: string) =>
        supertest(app.getHttpServer())
          .post('/login')
          .send({ username, groups: ['g1'] });
      const res = await login('before@example.com').expect(204);
      const cookie = String(res.headers['set-cookie']).split(';')[0];
      expect(sessionIdOf(cookie.slice('session='.length), SECRET, PROTOCOL_DEFAULTS.salt)).not.toBeNull();
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
        const status = (await supertest(app.getHttpServer()).get('/groups/g1/report').set('Cookie', cookie)).status;
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
      console.log(
        `Sentinel failover (${adapter}): the app served the old session again ${firstOk! - killedAt} ms after the primary was killed (down-after 1000 ms)`,
      );
    }, 60_000);
  }),
);

describe('resty.shared_session through a Redis Sentinel failover', () => {
  let cluster: RedisSentinelCluster;
  let nginx: NginxServer;
  const sid = '5e1f0c2a-8b7d-4e6f-9a3b-2c1d0e9f8a7b';

  beforeAll(async () => {
    cluster = await RedisSentinelCluster.start();
    const sentinels = cluster.sentinelAddresses.map((s) => `{ host = "${s.host}", port = ${s.port} }`).join(', ');
    nginx = await NginxServer.start({
      conf: (ctx) => `${ctx.preamble}
events { worker_connections 64; }
http {
  ${ctx.httpPreamble}
  init_by_lua_block {
    require("resty.shared_session").configure{
      secret = "${SECRET}",
      redis = { sentinels = { ${sentinels} }, master_name = "${cluster.masterName}", connect_timeout = 200, read_timeout = 500 },
    }
  }
  server {
    listen 127.0.0.1:${ctx.port};
    location /check {
      content_by_lua_block {
        local status = require("resty.shared_session").authorize("g1")
        ngx.status = status
        ngx.say(status)
      }
    }
  }
}
`,
    });
  }, 60_000);
  afterAll(async () => {
    await nginx?.dispose();
    await cluster?.dispose();
  });

  it('finds the primary through the sentinels, and the new one after a failover', async () => {
    const primary = new Redis(cluster.primary.url);
    await writeSession(
      primary,
      PROTOCOL_DEFAULTS.keyPrefix,
      sid,
      { groups: ['g1'] },
      { signature: signature(sid, SECRET, PROTOCOL_DEFAULTS.salt) },
    );
    expect(await primary.call('WAIT', '1', '2000')).toBe(1);
    primary.disconnect();
    const check = async () =>
      (await request(nginx.port, '/check', { headers: { Cookie: `session=${cookieValue(sid, SECRET, PROTOCOL_DEFAULTS.salt)}` } })).status;
    expect(await check()).toBe(200);

    const killedAt = Date.now();
    await cluster.primary.stop();
    const statuses = new Set<number>();
    let back: number | undefined;
    while (Date.now() - killedAt < 30_000) {
      const status = await check();
      if (status === 200 && Date.now() - killedAt > 100) {
        back = Date.now();
        break;
      }
      statuses.add(status);
      await sleep(100);
    }
    expect(back).toBeDefined();
    statuses.delete(200);
    expect([...statuses].every((s) => s === 503)).toBe(true);
    expect(nginx.errorLog()).not.toMatch(/signal \d+/);
    console.log(`Sentinel failover: nginx allowed the old session again ${back! - killedAt} ms after the primary was killed`);
  }, 60_000);
});

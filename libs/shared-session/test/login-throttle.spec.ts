import { Body, Controller, Get, HttpCode, HttpException, INestApplication, Module, Param, Post, Req } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import type { Request } from 'express';
import Redis from 'ioredis';
import request from 'supertest';
import { RedisServer } from '../../../stack/redis-server';
import { waitFor } from '../../../stack/wait';
import { LoginThrottle, SharedSessionModule, SharedSessionModuleOptions, SharedSessionOptionsError, SharedSessionService } from '../src';
import { createSessionLayout } from '../src/layouts/create-session-layout';
import { resolveSharedSessionOptions } from '../src/shared-session.options';
import { forEachAdapter, quietLogger, TestAdapter } from './support';
import { startTestApp } from './test-app';

/**
 * Login throttling (issue 23, item 6) as an application uses it, on a real
 * redis-server: the app checks before it verifies the password and reports
 * each outcome; the client address is `req.ip` (here `trust proxy` is on, so
 * X-Forwarded-For names it).
 */
const PASSWORD = 'right';

@Controller()
class LoginController {
  constructor(
    private readonly sessions: SharedSessionService,
    private readonly throttle: LoginThrottle,
  ) {}

  @Post('login')
  @HttpCode(204)
  async login(@Req() req: Request, @Body() body: { username: string; password: string }) {
    await this.throttle.check(req, body.username);
    if (body.password !== PASSWORD) {
      const ban = await this.throttle.failed(req, body.username);
      throw new HttpException({ wrong: true, ban }, 403);
    }
    await this.throttle.succeeded(req, body.username);
    await this.sessions.login(req, { username: body.username });
  }

  @Get('bans')
  bans() {
    return this.throttle.bans();
  }

  @Post('bans/:subject/lift')
  @HttpCode(200)
  lift(@Param('subject') subject: string) {
    return this.throttle.liftBans(subject);
  }
}

async function startApp(options: SharedSessionModuleOptions, adapter: TestAdapter = 'express'): Promise<INestApplication> {
  @Module({ imports: [SharedSessionModule.forRoot(options)], controllers: [LoginController] })
  class AppModule {}
  const moduleRef = await Test.createTestingModule({ imports: [AppModule] }).compile();
  return startTestApp(moduleRef, adapter, { trustProxy: true });
}

forEachAdapter((adapter) =>
  describe('LoginThrottle on a real redis-server', () => {
    let server: RedisServer;
    let admin: Redis;
    let app: INestApplication;
    const attempt = (username: string, password: string, address: string) =>
      request(app.getHttpServer()).post('/login').set('X-Forwarded-For', address).send({ username, password });

    beforeAll(async () => {
      server = await RedisServer.start();
      admin = new Redis(server.url);
      app = await startApp(
        {
          secret: 'throttle-secret-throttle-secret-32',
          redis: server.url,
          keyPrefix: 'thr',
          loginThrottle: { maxFailures: 3, maxFailuresPerAddress: 5, windowSeconds: 2, banSeconds: 60 },
        },
        adapter,
      );
    });
    afterAll(async () => {
      await app?.close();
      admin?.disconnect();
      await server?.dispose();
    });
    beforeEach(() => admin.flushall());

    it('bans a user at an address after 3 failures: the right password then gets a 429 with Retry-After', async () => {
      await attempt('alice', PASSWORD, '10.0.0.1').expect(204);
      for (let i = 1; i <= 2; i++) expect((await attempt('alice', 'wrong', '10.0.0.1').expect(403)).body).toEqual({ wrong: true, ban: 0 });
      expect((await attempt('alice', 'wrong', '10.0.0.1').expect(403)).body).toEqual({ wrong: true, ban: 60 });
      const refused = await attempt('alice', PASSWORD, '10.0.0.1').expect(429);
      expect(Number(refused.headers['retry-after'])).toBeGreaterThanOrEqual(59);
      expect(Number(refused.headers['retry-after'])).toBeLessThanOrEqual(60);
      expect(refused.body.message).toMatch(/^Too many failed logins; try again in 6\d s\.$/);
      expect(refused.headers['set-cookie']).toBeUndefined();
    });

    it('a stranger at another address who fails the victim’s password 10 times does not lock the victim out', async () => {
      for (let i = 0; i < 10; i++) await attempt('victim', 'wrong', '203.0.113.66').expect(i < 3 ? 403 : 429);
      await attempt('victim', PASSWORD, '203.0.113.66').expect(429);
      await attempt('victim', PASSWORD, '198.51.100.7').expect(204);
      expect(await request(app.getHttpServer()).get('/bans').expect(200)).toMatchObject({
        body: [{ user: 'victim', address: '203.0.113.66' }],
      });
    });

    it('an address that fails for many users is banned alone past the higher limit (5), for every user; other addresses are not', async () => {
      for (const user of ['u1', 'u2', 'u3', 'u4']) await attempt(user, 'wrong', '10.9.9.9').expect(403);
      expect((await attempt('u5', 'wrong', '10.9.9.9').expect(403)).body.ban).toBe(60);
      const refused = await attempt('someone-else', PASSWORD, '10.9.9.9').expect(429);
      expect(Number(refused.headers['retry-after'])).toBeGreaterThan(0);
      await attempt('someone-else', PASSWORD, '10.9.9.10').expect(204);
      const bans = (await request(app.getHttpServer()).get('/bans').expect(200)).body;
      expect(bans).toEqual([{ address: '10.9.9.9', until: expect.any(String) }]);
    });

    it('lifting a ban (by user or by address) lets the login through at once', async () => {
      for (let i = 0; i < 3; i++) await attempt('bob', 'wrong', '10.1.1.1');
      for (const user of ['x1', 'x2', 'x3', 'x4', 'x5']) await attempt(user, 'wrong', '10.2.2.2');
      await attempt('bob', PASSWORD, '10.1.1.1').expect(429);
      const lifted = (await request(app.getHttpServer()).post('/bans/bob/lift').expect(200)).body;
      expect(lifted).toEqual([{ user: 'bob', address: '10.1.1.1', until: expect.any(String) }]);
      await attempt('bob', PASSWORD, '10.1.1.1').expect(204);

      await attempt('bob', PASSWORD, '10.2.2.2').expect(429);
      expect((await request(app.getHttpServer()).post('/bans/10.2.2.2/lift').expect(200)).body).toEqual([
        { address: '10.2.2.2', until: expect.any(String) },
      ]);
      await attempt('bob', PASSWORD, '10.2.2.2').expect(204);
      expect((await request(app.getHttpServer()).get('/bans').expect(200)).body).toEqual([]);
    });

    it('the window slides: failures older than windowSeconds no longer count; a success forgets the pair’s failures', async () => {
      await attempt('carol', 'wrong', '10.3.3.3').expect(403);
      await attempt('carol', 'wrong', '10.3.3.3').expect(403);
      await new Promise((resolve) => setTimeout(resolve, 2100));
      await attempt('carol', 'wrong', '10.3.3.3').expect(403);
      await attempt('carol', 'wrong', '10.3.3.3').expect(403);
      await attempt('carol', PASSWORD, '10.3.3.3').expect(204); // 2 in the window: not banned
      await attempt('carol', 'wrong', '10.3.3.3').expect(403);
      await attempt('carol', 'wrong', '10.3.3.3').expect(403);
      await attempt('carol', PASSWORD, '10.3.3.3').expect(204); // the success forgot the two before
      await attempt('carol', 'wrong', '10.3.3.3').expect(403);
      await attempt('carol', PASSWORD, '10.3.3.3').expect(429);
    });

    it('a user id that is not well-formed Unicode is counted like any other (a 403, never a 500 or 503)', async () => {
      for (let i = 0; i < 3; i++) await attempt('x\ud800', 'wrong', '10.5.5.5').expect(403);
      await attempt('x\ud800', 'wrong', '10.5.5.5').expect(429);
    });

    it('Redis down: the throttle answers 503, as login does', async () => {
      await server.stop();
      try {
        await waitFor('503', async () => (await attempt('dave', PASSWORD, '10.4.4.4')).status === 503);
        await attempt('dave', 'wrong', '10.4.4.4').expect(503);
        await request(app.getHttpServer()).get('/bans').expect(503);
      } finally {
        await server.resume();
      }
      await waitFor('login again', async () => (await attempt('dave', PASSWORD, '10.4.4.4')).status === 204, 5000);
    });
  }),
);

forEachAdapter((adapter) =>
  describe('LoginThrottle is off unless the module is given loginThrottle', () => {
    let server: RedisServer;
    let app: INestApplication;
    beforeAll(async () => {
      server = await RedisServer.start();
      app = await startApp({ secret: 'throttle-secret-throttle-secret-32', redis: server.url }, adapter);
    });
    afterAll(async () => {
      await app?.close();
      await server?.dispose();
    });

    it('30 wrong passwords, then the right one, succeed as before; no key is written', async () => {
      for (let i = 0; i < 30; i++) {
        await request(app.getHttpServer()).post('/login').send({ username: 'eve', password: 'wrong' }).expect(403);
      }
      await request(app.getHttpServer()).post('/login').send({ username: 'eve', password: PASSWORD }).expect(204);
      const admin = new Redis(server.url);
      expect(await admin.keys('*throttle*')).toEqual([]);
      admin.disconnect();
    });
  }),
);

/** What Redis Cluster hashes (its specification's hash tag rule): the first non-empty {…}, else the whole key. */
function hashedPart(key: string): string {
  const open = key.indexOf('{');
  const close = open < 0 ? -1 : key.indexOf('}', open + 1);
  return close > open + 1 ? key.slice(open + 1, close) : key;
}

describe('loginThrottle options and keys', () => {
  const resolve = (loginThrottle: unknown) =>
    resolveSharedSessionOptions({ secret: 's', loginThrottle } as SharedSessionModuleOptions).loginThrottle;

  it('off by default; true or {} takes the defaults (3 in 120 s ban for 300 s; 20 per address)', () => {
    expect(resolve(undefined)).toBeNull();
    expect(resolve(false)).toBeNull();
    const defaults = { maxFailures: 3, maxFailuresPerAddress: 20, windowSeconds: 120, banSeconds: 300 };
    expect(resolve(true)).toEqual(defaults);
    expect(resolve({})).toEqual(defaults);
    expect(resolve({ banSeconds: 60 })).toEqual({ ...defaults, banSeconds: 60 });
  });

  it.each([
    [{ maxFailures: 0 }, 'loginThrottle.maxFailures" must be a positive whole number'],
    [{ windowSeconds: 1.5 }, 'loginThrottle.windowSeconds" must be a positive whole number'],
    [{ banSecs: 5 }, 'loginThrottle.banSecs" is not a known option'],
    [{ maxFailures: 10, maxFailuresPerAddress: 5 }, 'loginThrottle.maxFailuresPerAddress" must be at least loginThrottle.maxFailures (10)'],
    ['yes', 'loginThrottle" must be true, false or an object'],
  ])('refuses %j at start-up, naming the option', (value, message) => {
    expect(() => resolve(value)).toThrow(SharedSessionOptionsError);
    expect(() => resolve(value)).toThrow(message);
  });

  it.each(['v1', 'cluster', 'compact'] as const)('%s layout: a subject’s two keys share a slot, whatever the user id holds', (name) => {
    const layout = createSessionLayout(name, {
      client: new Redis({ lazyConnect: true }),
      prefix: 'p',
      userIdField: 'username',
      maxSessionsPerUser: 0,
      logger: quietLogger,
    });
    for (const [address, user] of [
      ['::1', 'a}b{c'],
      ['10.0.0.1', undefined],
      ['10.0.0.1', 'x:y@z'],
    ] as const) {
      const keys = layout.throttleKeys(address, user);
      expect(hashedPart(keys.failures)).toBe(hashedPart(keys.ban));
      expect(hashedPart(keys.ban)).not.toBe(keys.ban);
    }
    expect(layout.throttleKeys('10.0.0.1', 'a').ban).not.toBe(layout.throttleKeys('10.0.0.1').ban);
    const huge = layout.throttleKeys('10.0.0.1', 'u'.repeat(100_000));
    expect(huge.ban.length).toBeLessThan(400);
    expect(huge.ban).not.toBe(layout.throttleKeys('10.0.0.1', 'u'.repeat(100_001)).ban);
    expect(layout.throttleKeys('1', 'a:2').ban).not.toBe(layout.throttleKeys('2', 'a:1').ban);
  });
});

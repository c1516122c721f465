import type { INestApplication } from '@nestjs/common';
import request from 'supertest';
import { RedisServer } from '../../../stack/redis-server';
import { PROTOCOL_DEFAULTS } from '../../../protocol/testkit';
import { forEachAdapter } from './support';
import { createTestApp } from './test-app';

const NAME = PROTOCOL_DEFAULTS.cookieName;
const HOST = 'app.example:3000';
const OWN = `http://${HOST}`;
const EVIL = 'https://evil.example';

/** Browser headers of a request that `origin` started (`Sec-Fetch-Site` only from a browser that sends it). */
const fromSite = (origin: string, site?: string) => ({ Host: HOST, Origin: origin, ...(site ? { 'Sec-Fetch-Site': site } : {}) });

forEachAdapter((adapter) =>
  describe('cross-site request protection in a Nest app (on by default)', () => {
    let server: RedisServer;
    let app: INestApplication;
    const http = () => request(app.getHttpServer());

    async function login(headers: Record<string, string>, status = 204): Promise<request.Response> {
      return http()
        .post('/login')
        .set(headers)
        .send({ username: 'joe', groups: ['one', 'two'] })
        .expect(status);
    }
    const cookieOf = (res: request.Response) =>
      ([] as string[])
        .concat(res.headers['set-cookie'] ?? [])
        .find((c) => c.startsWith(`${NAME}=`))
        ?.split(';')[0];

    beforeAll(async () => {
      server = await RedisServer.start();
      app = await createTestApp(
        { secret: 'csrf-test-secret', redis: server.url, csrf: { trustedOrigins: ['https://admin.example'] } },
        false,
        adapter,
      );
    });
    afterAll(async () => {
      await app.close();
      await server.dispose();
    });

    it('login CSRF: a login form posted from another site is refused with a clear 403, and no session is made', async () => {
      const refused = await login(fromSite(EVIL, 'cross-site'), 403);
      expect(refused.body).toEqual({
        statusCode: 403,
        error: 'Forbidden',
        message: 'Cross-site request refused: a POST that another site sent (Sec-Fetch-Site: cross-site).',
      });
      expect(refused.headers['set-cookie']).toBeUndefined();
      // An older browser, without Sec-Fetch-Site: its Origin decides.
      const old = await login(fromSite(EVIL), 403);
      expect(old.body.message).toBe('Cross-site request refused: a POST that another site sent (Origin: not this site).');
      // A sibling subdomain is same-site, not same-origin: refused too.
      await login(fromSite('http://other.app.example:3000', 'same-site'), 403);
    });

    it('the site’s own pages, an address typed by the user, a trusted origin and non-browser clients may log in', async () => {
      expect(cookieOf(await login(fromSite(OWN, 'same-origin')))).toBeDefined();
      expect(cookieOf(await login({ Host: HOST, 'Sec-Fetch-Site': 'none' }))).toBeDefined();
      expect(cookieOf(await login(fromSite(OWN)))).toBeDefined();
      expect(cookieOf(await login(fromSite('https://admin.example', 'same-site')))).toBeDefined();
      expect(cookieOf(await login({}))).toBeDefined(); // curl, another server: neither header
    });

    it('a session-changing request from another site is refused before the route runs; the session is unchanged', async () => {
      const cookie = cookieOf(await login({}))!;
      const narrow = (headers: Record<string, string>) =>
        http()
          .post('/groups')
          .set({ Cookie: cookie, ...headers })
          .send({ groups: ['one'] });
      await narrow(fromSite(EVIL, 'cross-site')).expect(403);
      await narrow(fromSite(EVIL)).expect(403);
      expect((await http().get('/me').set('Cookie', cookie).expect(200)).body.groups).toEqual(['one', 'two']);
      await http()
        .post('/logout')
        .set({ Cookie: cookie, ...fromSite(EVIL, 'cross-site') })
        .expect(403);
      await http()
        .get('/me')
        .set({ Cookie: cookie, ...fromSite(EVIL, 'cross-site') })
        .expect(200); // a GET changes nothing
      await narrow(fromSite(OWN, 'same-origin')).expect(204);
      expect((await http().get('/me').set('Cookie', cookie).expect(200)).body.groups).toEqual(['one']);
    });

    it('@SkipCsrfCheck() exempts a route', async () => {
      await http().post('/webhook').set(fromSite(EVIL, 'cross-site')).expect(204);
    });

    it('behind a trusted proxy, the origin is X-Forwarded-Proto and X-Forwarded-Host; untrusted, they are ignored', async () => {
      const behindProxy = {
        Host: 'internal:3000',
        Origin: 'https://public.example',
        'X-Forwarded-Proto': 'https',
        'X-Forwarded-Host': 'public.example',
      };
      await login(behindProxy, 403);
      if (adapter === 'express') {
        // Express's own `trust proxy`, set at run time.
        const express = app.getHttpAdapter().getInstance() as { set(name: string, value: unknown): void };
        express.set('trust proxy', true);
        try {
          await login(behindProxy, 204);
        } finally {
          express.set('trust proxy', false);
        }
        return;
      }
      // Fastify's trustProxy is fixed when it is made: the module's `proxy` option says it instead.
      const trusting = await createTestApp({ secret: 'csrf-test-secret', redis: server.url, proxy: true }, false, adapter);
      try {
        await request(trusting.getHttpServer()).post('/login').set(behindProxy).send({ username: 'joe', groups: [] }).expect(204);
      } finally {
        await trusting.close();
      }
    });
  }),
);

forEachAdapter((adapter) =>
  describe('cross-site request protection turned off (csrf.enabled: false)', () => {
    let server: RedisServer;
    let app: INestApplication;
    beforeAll(async () => {
      server = await RedisServer.start();
      app = await createTestApp({ secret: 'csrf-test-secret', redis: server.url, csrf: { enabled: false } }, false, adapter);
    });
    afterAll(async () => {
      await app.close();
      await server.dispose();
    });

    it('lets a cross-site POST through', async () => {
      await request(app.getHttpServer()).post('/login').set(fromSite(EVIL, 'cross-site')).send({ username: 'joe', groups: [] }).expect(204);
    });
  }),
);

import type { INestApplication } from '@nestjs/common';
import request from 'supertest';
import { RedisServer } from '../../../stack/redis-server';
import { PROTOCOL_DEFAULTS } from '../../../protocol/testkit';
import { forEachAdapter } from './support';
import { createTestApp } from './test-app';

/**
 * `cookie.secure`: the session cookie is written only on a connection that
 * is HTTPS, directly or, when the proxy is trusted (`proxy: true`), by its
 * X-Forwarded-Proto; a browser would drop it anywhere else. Alike on both
 * adapters (express-session's rule on Express, the hooks' on Fastify).
 */

const NAME = PROTOCOL_DEFAULTS.cookieName;
const SECRET = 'secure-cookie-secret-secure-cookie';

const sessionCookie = (res: request.Response) =>
  ([] as string[]).concat(res.headers['set-cookie'] ?? []).find((c) => c.startsWith(`${NAME}=`));

forEachAdapter((adapter) =>
  describe('a Secure session cookie', () => {
    let server: RedisServer;
    const apps: INestApplication[] = [];
    const start = async (proxy?: boolean) => {
      const app = await createTestApp(
        { secret: SECRET, redis: server.url, cookie: { secure: true }, ...(proxy === undefined ? {} : { proxy }) },
        false,
        adapter,
      );
      apps.push(app);
      return app;
    };
    const login = (app: INestApplication, headers: Record<string, string> = {}) =>
      request(app.getHttpServer())
        .post('/login')
        .set(headers)
        .send({ username: 'joe', groups: ['one'] })
        .expect(204);

    beforeAll(async () => {
      server = await RedisServer.start();
    });
    afterAll(async () => {
      for (const app of apps) await app.close();
      await server?.dispose();
    });

    it('is not written over plain HTTP, nor on an untrusted proxy’s word', async () => {
      const app = await start();
      expect(sessionCookie(await login(app))).toBeUndefined();
      expect(sessionCookie(await login(app, { 'X-Forwarded-Proto': 'https' }))).toBeUndefined();
    });

    it('is written, Secure, behind a trusted proxy that says HTTPS (proxy: true), and only then', async () => {
      const app = await start(true);
      expect(sessionCookie(await login(app, { 'X-Forwarded-Proto': 'https' }))).toMatch(/; Secure/);
      expect(sessionCookie(await login(app, { 'X-Forwarded-Proto': 'http' }))).toBeUndefined();
      expect(sessionCookie(await login(app))).toBeUndefined();
    });
  }),
);

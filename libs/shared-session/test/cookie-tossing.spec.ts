import type { INestApplication } from '@nestjs/common';
import Redis from 'ioredis';
import request from 'supertest';
import { RedisServer } from '../../../stack/redis-server';
import { cookieValue, sessionKeyCount } from '../../../protocol/testkit';
import { forEachAdapter } from './support';
import { createTestApp } from './test-app';

/**
 * Cookie tossing (issue 23, finding 2) at the module, on a real
 * redis-server: a request that sends two validly signed session cookies is
 * no session and is logged; logout and login end both sessions and clear
 * every copy of the cookie; revocation.wait still holds (no reader here: the
 * wait ends at once).
 */
const SECRET = 'tossing-secret';
const SALT = 'tossing-salt';
const PREFIX = 'tossing';
const NAME = 'session';

const sidOf = (value: string) => value.slice(0, value.indexOf('.'));
const setCookies = (res: request.Response): string[] => ([] as string[]).concat(res.headers['set-cookie'] ?? []);

forEachAdapter((adapter) =>
  describe('two signed session cookies in one request (cookie tossing)', () => {
    let server: RedisServer;
    let admin: Redis;
    let app: INestApplication;
    const warnings: string[] = [];
    const logger = {
      log: () => {},
      error: () => {},
      warn: (m: unknown) => warnings.push(String(m)),
      debug: () => {},
      verbose: () => {},
    };

    async function login(username: string, cookie?: string): Promise<string> {
      const req = request(app.getHttpServer()).post('/login').set('Host', 'app.example.com');
      const res = await (cookie ? req.set('Cookie', cookie) : req).send({ username, groups: ['one'] });
      if (res.status !== 204) throw new Error(res.text);
      return setCookies(res)
        .find((l) => /^session=[^;]/.test(l))!
        .split(';')[0]
        .slice(NAME.length + 1);
    }

    beforeAll(async () => {
      server = await RedisServer.start();
      admin = new Redis(server.url);
      app = await createTestApp(
        {
          secret: SECRET,
          salt: SALT,
          keyPrefix: PREFIX,
          redis: server.url,
          revocation: { wait: true, timeoutMs: 100 },
        },
        logger,
        adapter,
      );
    });
    afterAll(async () => {
      await app.close();
      admin.disconnect();
      await server.dispose();
    });

    it('is no session, and the app logs one warning that holds neither value', async () => {
      const victim = await login('victim@example.com');
      const attacker = await login('attacker@example.com');
      warnings.length = 0;
      await request(app.getHttpServer()).get('/me').set('Cookie', `${NAME}=${victim}; ${NAME}=${attacker}`).expect(401);
      const lines = warnings.filter((w) => w.includes('two different session cookies'));
      expect(lines).toHaveLength(1);
      for (const c of [victim, attacker]) expect(lines[0]).not.toContain(sidOf(c).slice(0, 12));
    });

    it('logout ends both sessions and clears the cookie for the host and each parent domain (two labels or more)', async () => {
      const victim = await login('victim@example.com');
      const attacker = await login('attacker@example.com');
      const res = await request(app.getHttpServer())
        .post('/logout')
        .set('Host', 'app.eu.example.com')
        .set('Cookie', `${NAME}=${victim}; ${NAME}=${attacker}`)
        .expect(204);
      expect(await sessionKeyCount(admin, PREFIX, sidOf(victim))).toBe(0);
      expect(await sessionKeyCount(admin, PREFIX, sidOf(attacker))).toBe(0);
      const cleared = setCookies(res).map((l) => [/Domain=([^;]+)/.exec(l)?.[1] ?? '(host)', /Path=([^;]+)/.exec(l)![1]].join(' '));
      // The configured Path is / here (express-session only serves requests under it); both Paths: session-cookie-clearing.spec.ts.
      expect(cleared.sort()).toEqual(['(host) /', 'eu.example.com /', 'example.com /'].sort());
      expect(setCookies(res).every((l) => /^session=;/.test(l) && /Max-Age=0/.test(l))).toBe(true);
    });

    it('a cookie whose signature is not valid is not ended (only what the signer verifies counts)', async () => {
      const victim = await login('victim@example.com');
      const other = await login('other@example.com');
      const forged = `${sidOf(other)}.${'A'.repeat(27)}`;
      await request(app.getHttpServer()).post('/logout').set('Cookie', `${NAME}=${victim}; ${NAME}=${forged}`).expect(204);
      expect(await sessionKeyCount(admin, PREFIX, sidOf(victim))).toBe(0);
      expect(await sessionKeyCount(admin, PREFIX, sidOf(other))).toBeGreaterThan(0);
    });

    it('login with both cookies ends both old sessions, and its new cookie is the session', async () => {
      const victim = await login('victim@example.com');
      const attacker = await login('attacker@example.com');
      const fresh = await login('victim@example.com', `${NAME}=${victim}; ${NAME}=${attacker}`);
      expect(fresh).toBe(cookieValue(sidOf(fresh), SECRET, SALT));
      expect(await sessionKeyCount(admin, PREFIX, sidOf(victim))).toBe(0);
      expect(await sessionKeyCount(admin, PREFIX, sidOf(attacker))).toBe(0);
      await request(app.getHttpServer()).get('/me').set('Cookie', `${NAME}=${fresh}`).expect(200);
    });
  }),
);

import type { INestApplication } from '@nestjs/common';
import Redis from 'ioredis';
import request from 'supertest';
import { RedisServer } from '../../../stack/redis-server';
import { waitFor } from '../../../stack/wait';
import {
  cookieValue,
  PROTOCOL_DEFAULTS,
  readSession,
  sessionKeyCount,
  sessionKeyList,
  signature,
  writeSession,
  timedSessionId,
} from '../../../protocol/testkit';
import { forEachAdapter } from './support';
import { createTestApp, slowRequestGate } from './test-app';

const SECRET = 'test-secret';
const OLD_SECRET = 'test-secret-2025';
const SALT = 'app_session_salt';
const PREFIX = 'app_session_prefix';
/** The test app leaves the cookie name to the default. */
const NAME = PROTOCOL_DEFAULTS.cookieName;

/** A Cookie header that sends our cookie. */
const asCookie = (value: string) => `${NAME}=${value}`;

/** The session id of a cookie value signed as the protocol signs (current secret); null otherwise. */
function sidOf(value: string): string | null {
  const sid = value.slice(0, value.indexOf('.'));
  return sid.length > 0 && value === cookieValue(sid, SECRET, SALT) ? sid : null;
}

/** The value of our cookie in a response's Set-Cookie, and its attributes. */
function sessionCookie(res: request.Response): { value: string; attributes: string } | undefined {
  const header = ([] as string[]).concat(res.headers['set-cookie'] ?? []).find((c) => c.startsWith(`${NAME}=`));
  if (!header) return undefined;
  const semi = header.indexOf(';');
  return { value: header.slice(NAME.length + 1, semi < 0 ? undefined : semi), attributes: semi < 0 ? '' : header.slice(semi) };
}

forEachAdapter((adapter) =>
  describe('SharedSessionModule in a Nest app, on a real redis-server', () => {
    let server: RedisServer;
    let admin: Redis;
    let app: INestApplication;

    async function login(username: string, groups: string[], extra?: string): Promise<string> {
      const res = await request(app.getHttpServer()).post('/login').send({ username, groups, extra }).expect(204);
      return sessionCookie(res)!.value;
    }

    beforeAll(async () => {
      server = await RedisServer.start();
      admin = new Redis(server.url);
      app = await createTestApp(
        {
          secret: SECRET,
          secretFallbacks: [OLD_SECRET],
          salt: SALT,
          keyPrefix: PREFIX,
          redis: server.url,
          ttlSeconds: 3600,
        },
        false,
        adapter,
      );
    });
    afterAll(async () => {
      await app.close();
      admin.disconnect();
      await server.dispose();
    });
    beforeEach(() => admin.flushall());

    it('logs in: a Flask-format cookie with the default attributes, and the three keys in Redis', async () => {
      const res = await request(app.getHttpServer())
        .post('/login')
        .send({ username: 'joe@example.com', groups: ['one', 'three'] })
        .expect(204);
      const cookie = sessionCookie(res)!;
      const sid = sidOf(cookie.value)!;
      // A timed id (PROTOCOL.md section 11), issued now, with no deadline by default.
      expect(timedSessionId(sid)).toEqual({ issuedMs: expect.any(Number), deadlineMs: 0 });
      expect(Math.abs(timedSessionId(sid)!.issuedMs - Date.now())).toBeLessThan(60_000);
      expect(cookie.attributes).toMatch(/; Path=\//);
      expect(cookie.attributes).toMatch(/; HttpOnly/);
      expect(cookie.attributes).toMatch(/; SameSite=Lax/);
      expect(cookie.attributes).toMatch(/; Expires=/);
      const stored = await readSession(admin, PREFIX, sid);
      expect(stored.data).toEqual({ username: 'joe@example.com', groups: ['one', 'three'], _permanent: true, _idle: 3600 });
      expect(stored.signature).toBe(signature(sid, SECRET, SALT));
      expect(stored.groups).toEqual(['one', 'three']);
    });

    describe('idle and absolute timeouts (PROTOCOL.md section 12)', () => {
      const expiresOf = (attributes: string) => new Date(/Expires=([^;]+)/.exec(attributes)![1]).getTime();

      it('login with timeouts of its own ("keep me signed in"): the deadline in the id and the cookie, _idle in the data and the ttl', async () => {
        const before = Date.now();
        const res = await request(app.getHttpServer())
          .post('/login')
          .send({ username: 'joe', groups: ['one'], idleTimeoutSeconds: 600, absoluteTimeoutSeconds: 7200 })
          .expect(204);
        const cookie = sessionCookie(res)!;
        const sid = sidOf(cookie.value)!;
        const times = timedSessionId(sid)!;
        expect(times.deadlineMs - times.issuedMs).toBe(7_200_000);
        expect(times.issuedMs).toBeGreaterThanOrEqual(before);
        // Expires is the deadline (HTTP dates count whole seconds).
        expect(Math.abs(expiresOf(cookie.attributes) - times.deadlineMs)).toBeLessThan(1000);
        const stored = await readSession(admin, PREFIX, sid);
        expect(stored.data).toMatchObject({ _idle: 600 });
        for (const ttl of Object.values(stored.ttl)) expect(ttl).toBeGreaterThan(590);
        for (const ttl of Object.values(stored.ttl)) expect(ttl).toBeLessThanOrEqual(600);
      });

      it('without an absolute timeout, the cookie lasts 400 days: nginx may keep the session alive without renewing it', async () => {
        const res = await request(app.getHttpServer())
          .post('/login')
          .send({ username: 'joe', groups: ['one'] })
          .expect(204);
        const expires = expiresOf(sessionCookie(res)!.attributes);
        expect(expires - Date.now()).toBeGreaterThan(400 * 86_400_000 - 60_000);
        expect(expires - Date.now()).toBeLessThanOrEqual(400 * 86_400_000);
      });

      it('a bad timeout given to login is refused, naming it, and logs nobody in', async () => {
        const res = await request(app.getHttpServer())
          .post('/login')
          .send({ username: 'joe', groups: ['one'], idleTimeoutSeconds: 600, absoluteTimeoutSeconds: 60 });
        expect(res.status).toBe(500);
        expect(sessionCookie(res)).toBeUndefined();
        expect(await admin.dbsize()).toBe(0);
      });

      it('renews the cookie of a session without a deadline when it extends the session, never on a response nginx may keep', async () => {
        const cookie = await login('joe', ['one']);
        const sid = sidOf(cookie)!;
        // Aged past touchAfterSeconds (60 s): the next read extends the session.
        for (const key of sessionKeyList(PREFIX, sid)) await admin.expire(key, 600);
        const cached = await request(app.getHttpServer()).get('/cacheable').set('Cookie', asCookie(cookie)).expect(200);
        expect(cached.headers['set-cookie']).toBeUndefined();
        // The session was extended all the same; the cookie waits for a response that may carry it.
        await waitFor('the refresh', async () => (await admin.ttl(sessionKeyList(PREFIX, sid)[0])) > 3000);
        for (const key of sessionKeyList(PREFIX, sid)) await admin.expire(key, 600);
        const renewed = await request(app.getHttpServer()).get('/me').set('Cookie', asCookie(cookie)).expect(200);
        const again = sessionCookie(renewed)!;
        expect(again.value).toBe(cookie);
        expect(expiresOf(again.attributes) - Date.now()).toBeGreaterThan(400 * 86_400_000 - 60_000);
        await waitFor('the refresh', async () => (await admin.ttl(sessionKeyList(PREFIX, sid)[0])) > 3000);
        // Refreshed: no renewal again until it is due.
        const quiet = await request(app.getHttpServer()).get('/me').set('Cookie', asCookie(cookie)).expect(200);
        expect(quiet.headers['set-cookie']).toBeUndefined();
      });

      it('clears a cookie whose session has ended (idle expiry), but not while Redis cannot say', async () => {
        const cookie = await login('joe', ['one']);
        for (const key of sessionKeyList(PREFIX, sidOf(cookie)!)) await admin.del(key);
        const res = await request(app.getHttpServer()).get('/public').set('Cookie', asCookie(cookie)).expect(200);
        expect(res.body).toEqual({ username: null, sessionID: expect.any(String) });
        expect(sessionCookie(res)).toEqual({ value: '', attributes: expect.stringMatching(/Max-Age=0/) });
      });
    });

    it('reads the session back from the cookie on the next request', async () => {
      const cookie = await login('joe@example.com', ['one'], 'kept');
      const res = await request(app.getHttpServer()).get('/me').set('Cookie', asCookie(cookie)).expect(200);
      expect(res.body).toEqual({ username: 'joe@example.com', groups: ['one'], extra: 'kept' });
    });

    it('reads a session that Flask wrote (same secret, salt, prefix)', async () => {
      const sid = 'Zm9vYmFyYmF6cXV4cXV1eHF1dXhxdXV4cXV1eHE'; // a Flask-Session 0.6 style id
      await writeSession(
        admin,
        PREFIX,
        sid,
        { _permanent: true, username: 'flask-user', groups: ['g'] },
        { signature: signature(sid, SECRET, SALT), ttl: 600 },
      );
      const res = await request(app.getHttpServer())
        .get('/me')
        .set('Cookie', `other=1; ${asCookie(cookieValue(sid, SECRET, SALT))}`)
        .expect(200);
      expect(res.body.username).toBe('flask-user');
    });

    it('an anonymous request writes nothing to Redis and sets no cookie', async () => {
      const res = await request(app.getHttpServer()).get('/public').expect(200);
      expect(res.body.username).toBeNull();
      expect(res.headers['set-cookie']).toBeUndefined();
      await request(app.getHttpServer()).get('/me').expect(401);
      expect(await admin.dbsize()).toBe(0);
    });

    it('login regenerates the session id (no fixation) and deletes the old keys', async () => {
      const first = await login('joe@example.com', ['one']);
      const firstSid = sidOf(first)!;
      const res = await request(app.getHttpServer())
        .post('/login')
        .set('Cookie', asCookie(first))
        .send({ username: 'sam@example.com', groups: ['two'] })
        .expect(204);
      const second = sessionCookie(res)!.value;
      expect(sidOf(second)).not.toBe(firstSid);
      expect(await sessionKeyCount(admin, PREFIX, firstSid)).toBe(0);
      await request(app.getHttpServer()).get('/me').set('Cookie', asCookie(first)).expect(401);
    });

    it('a session id chosen by an attacker is never adopted', async () => {
      const planted = cookieValue('aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa', SECRET, SALT);
      const res = await request(app.getHttpServer())
        .post('/login')
        .set('Cookie', asCookie(planted))
        .send({ username: 'u', groups: [] })
        .expect(204);
      expect(sidOf(sessionCookie(res)!.value)).not.toBe('aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa');
    });

    it('logout deletes the three keys and clears the cookie with Max-Age=0', async () => {
      const cookie = await login('joe@example.com', ['one']);
      const sid = sidOf(cookie)!;
      const res = await request(app.getHttpServer()).post('/logout').set('Cookie', asCookie(cookie)).expect(204);
      const cleared = sessionCookie(res)!;
      expect(cleared.value).toBe('');
      expect(cleared.attributes).toMatch(/Max-Age=0/);
      expect(cleared.attributes).toMatch(/Path=\//);
      expect(await sessionKeyCount(admin, PREFIX, sid)).toBe(0);
      await request(app.getHttpServer()).get('/me').set('Cookie', asCookie(cookie)).expect(401);
    });

    it('@Groups by name: 401 without a session, 403 outside the groups, 200 in one of them', async () => {
      await request(app.getHttpServer()).get('/admin').expect(401);
      const outsider = await login('sam', ['two']);
      await request(app.getHttpServer()).get('/admin').set('Cookie', asCookie(outsider)).expect(403);
      const auditor = await login('ann', ['auditors']);
      await request(app.getHttpServer()).get('/admin').set('Cookie', asCookie(auditor)).expect(200, { ok: 'admin' });
    });

    it('@Groups by route parameter: only members of that group', async () => {
      const joe = await login('joe', ['one', 'three']);
      await request(app.getHttpServer()).get('/groups/one/report').set('Cookie', asCookie(joe)).expect(200, { report: 'one' });
      await request(app.getHttpServer()).get('/groups/three/report').set('Cookie', asCookie(joe)).expect(200);
      await request(app.getHttpServer()).get('/groups/two/report').set('Cookie', asCookie(joe)).expect(403);
      await request(app.getHttpServer()).get('/groups/ONE/report').set('Cookie', asCookie(joe)).expect(403);
      await request(app.getHttpServer()).get('/groups/two/report').expect(401);
    });

    it('@Groups on a class applies to its methods; a method decorator overrides it', async () => {
      const analyst = await login('a', ['analysts']);
      const manager = await login('m', ['managers']);
      await request(app.getHttpServer()).get('/reports/class').set('Cookie', asCookie(analyst)).expect(200);
      await request(app.getHttpServer()).get('/reports/class').set('Cookie', asCookie(manager)).expect(403);
      await request(app.getHttpServer()).get('/reports/method').set('Cookie', asCookie(manager)).expect(200);
      await request(app.getHttpServer()).get('/reports/method').set('Cookie', asCookie(analyst)).expect(403);
    });

    it('setGroups rewrites the groups set; the next request sees the change', async () => {
      const cookie = await login('joe', ['one']);
      const sid = sidOf(cookie)!;
      await request(app.getHttpServer())
        .post('/groups')
        .set('Cookie', asCookie(cookie))
        .send({ groups: ['two'] })
        .expect(204);
      expect((await readSession(admin, PREFIX, sid)).groups).toEqual(['two']);
      await request(app.getHttpServer()).get('/groups/one/report').set('Cookie', asCookie(cookie)).expect(403);
      await request(app.getHttpServer()).get('/groups/two/report').set('Cookie', asCookie(cookie)).expect(200);
    });

    describe('a request in flight cannot undo what another did meanwhile (PROTOCOL.md section 8)', () => {
      /** Starts POST /slow-count with `cookie`, runs `meanwhile` once it has read its session, then lets it finish. */
      async function whileSlowRequest(cookie: string, meanwhile: () => Promise<unknown>): Promise<request.Response> {
        slowRequestGate.reset();
        const slow = request(app.getHttpServer())
          .post('/slow-count')
          .set('Cookie', asCookie(cookie))
          .then((res) => res);
        await slowRequestGate.arrived;
        await meanwhile();
        slowRequestGate.release();
        return slow;
      }
      const http = () => request(app.getHttpServer());

      it('logout: the old cookie stays logged out and no key comes back', async () => {
        const cookie = await login('joe', ['one']);
        const slow = await whileSlowRequest(cookie, () => http().post('/logout').set('Cookie', asCookie(cookie)).expect(204));
        expect(slow.status).toBe(201);
        expect(await sessionKeyCount(admin, PREFIX, sidOf(cookie)!)).toBe(0);
        await http().get('/me').set('Cookie', asCookie(cookie)).expect(401);
      });

      it('regenerate (a new login from the same browser): the old id stays ended', async () => {
        const cookie = await login('joe', ['one']);
        let fresh = '';
        await whileSlowRequest(cookie, async () => {
          const res = await http()
            .post('/login')
            .set('Cookie', asCookie(cookie))
            .send({ username: 'joe', groups: ['one'] })
            .expect(204);
          fresh = sessionCookie(res)!.value;
        });
        expect(await sessionKeyCount(admin, PREFIX, sidOf(cookie)!)).toBe(0);
        await http().get('/me').set('Cookie', asCookie(cookie)).expect(401);
        await http().get('/me').set('Cookie', asCookie(fresh)).expect(200);
      });

      it("setGroups: the removed group stays removed, and the slow request's own change is kept", async () => {
        const cookie = await login('joe', ['one', 'two']);
        await whileSlowRequest(cookie, () =>
          http()
            .post('/groups')
            .set('Cookie', asCookie(cookie))
            .send({ groups: ['one'] })
            .expect(204),
        );
        const stored = await readSession(admin, PREFIX, sidOf(cookie)!);
        expect(stored.groups).toEqual(['one']);
        expect(stored.data).toMatchObject({ groups: ['one'], count: 1 });
        await http().get('/groups/two/report').set('Cookie', asCookie(cookie)).expect(403);
      });

      it('a change from outside the app (another writer, an operator deleting the keys) holds too', async () => {
        const cookie = await login('joe', ['one', 'two']);
        const sid = sidOf(cookie)!;
        await whileSlowRequest(cookie, () =>
          writeSession(admin, PREFIX, sid, { username: 'joe', groups: ['two'] }, { signature: signature(sid, SECRET, SALT) }),
        );
        expect((await readSession(admin, PREFIX, sid)).groups).toEqual(['two']);
        await whileSlowRequest(cookie, () => admin.del(...sessionKeyList(PREFIX, sid)));
        expect(await sessionKeyCount(admin, PREFIX, sid)).toBe(0);
        await http().get('/me').set('Cookie', asCookie(cookie)).expect(401);
      });
    });

    it('logout ends the id the cookie carried even when its data key is gone (PROTOCOL.md section 9)', async () => {
      const cookie = await login('joe', ['one']);
      const sid = sidOf(cookie)!;
      for (const damage of [
        () => admin.del(sessionKeyList(PREFIX, sid)[0]),
        () => admin.set(sessionKeyList(PREFIX, sid)[0], 'not json{'),
      ]) {
        await writeSession(admin, PREFIX, sid, { username: 'joe', groups: ['one'] }, { signature: signature(sid, SECRET, SALT) });
        await damage();
        await request(app.getHttpServer()).post('/logout').set('Cookie', asCookie(cookie)).expect(204);
        expect(await sessionKeyCount(admin, PREFIX, sid)).toBe(0);
      }
    });

    it('session data changed in a handler is saved at the end of the request (express-session behaviour)', async () => {
      const cookie = await login('joe', []);
      await request(app.getHttpServer()).post('/count').set('Cookie', asCookie(cookie)).expect(201, { count: 1 });
      await request(app.getHttpServer()).post('/count').set('Cookie', asCookie(cookie)).expect(201, { count: 2 });
      expect((await readSession(admin, PREFIX, sidOf(cookie)!)).data).toMatchObject({ count: 2 });
    });

    it('a cookie signed with a fallback secret is accepted and re-signed, and the stored signature follows', async () => {
      const sid = '9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d';
      await writeSession(admin, PREFIX, sid, { username: 'old', groups: ['g'] }, { signature: signature(sid, OLD_SECRET, SALT), ttl: 600 });
      const res = await request(app.getHttpServer())
        .get('/me')
        .set('Cookie', asCookie(cookieValue(sid, OLD_SECRET, SALT)))
        .expect(200);
      expect(res.body.username).toBe('old');
      expect(sessionCookie(res)!.value).toBe(cookieValue(sid, SECRET, SALT));
      expect(sessionCookie(res)!.attributes).toMatch(/HttpOnly/);
      const stored = await readSession(admin, PREFIX, sid);
      expect(stored.signature).toBe(signature(sid, SECRET, SALT));
      expect(stored.groups).toEqual(['g']);
      // With the current signature nothing more is rewritten.
      const again = await request(app.getHttpServer())
        .get('/me')
        .set('Cookie', asCookie(cookieValue(sid, SECRET, SALT)))
        .expect(200);
      expect(sessionCookie(again)).toBeUndefined();
    });

    it('malformed, forged or expired cookies are no session: 401 on guarded routes, never 500', async () => {
      const joe = await login('joe', ['one']);
      const sid = sidOf(joe)!;
      const bad = [
        '',
        'garbage',
        `${sid}.`,
        `${sid}.${'A'.repeat(27)}`,
        `s:${joe}`,
        `${joe}.${joe}`,
        'x'.repeat(5000),
        '%00%ff%fe',
        `"${joe}"`,
        cookieValue(sid, 'other', SALT),
        cookieValue('11111111-1111-4111-8111-111111111111', SECRET, SALT), // well signed, never stored (or expired)
      ];
      for (const value of bad) {
        await request(app.getHttpServer()).get('/me').set('Cookie', asCookie(value)).expect(401);
        await request(app.getHttpServer()).get('/public').set('Cookie', asCookie(value)).expect(200);
      }
      // The Cookie header's grammar (PROTOCOL.md section 10), as at nginx: two different values of the name are no session,
      await request(app.getHttpServer())
        .get('/me')
        .set('Cookie', `${asCookie('garbage')}; ${asCookie(joe)}`)
        .expect(401);
      await request(app.getHttpServer())
        .get('/me')
        .set('Cookie', `${asCookie(joe)}; ${asCookie('garbage')}`)
        .expect(401);
      await request(app.getHttpServer())
        .get('/me')
        .set('Cookie', `${asCookie(joe)}; x=1; ${asCookie(joe)}`)
        .expect(200);
      // names compare byte for byte,
      await request(app.getHttpServer())
        .get('/me')
        .set('Cookie', `${NAME.toUpperCase()}=garbage; ${asCookie(joe)}`)
        .expect(200);
      await request(app.getHttpServer())
        .get('/me')
        .set('Cookie', `${NAME[0].toUpperCase()}${NAME.slice(1)}=${joe}`)
        .expect(401);
      // and a comma separates nothing, but our name behind one is no session.
      await request(app.getHttpServer())
        .get('/me')
        .set('Cookie', `x=1,${asCookie(joe)}`)
        .expect(401);
      await request(app.getHttpServer())
        .get('/me')
        .set('Cookie', `x=1,2; ${asCookie(joe)}`)
        .expect(200);
    });

    it('Redis down: 503 on guarded routes and login, public routes still answer; back to normal when Redis returns', async () => {
      const joe = await login('joe', ['one']);
      await server.stop();
      try {
        await waitFor(
          '503 on a guarded route',
          async () => (await request(app.getHttpServer()).get('/me').set('Cookie', asCookie(joe))).status === 503,
        );
        await request(app.getHttpServer()).get('/groups/one/report').set('Cookie', asCookie(joe)).expect(503);
        await request(app.getHttpServer()).post('/login').send({ username: 'x', groups: [] }).expect(503);
        await request(app.getHttpServer()).post('/logout').set('Cookie', asCookie(joe)).expect(503);
        await request(app.getHttpServer()).get('/public').expect(200);
      } finally {
        await server.resume();
      }
      // The data is gone with the restarted (unpersisted) server: log in again.
      await waitFor(
        'login works again',
        async () =>
          (
            await request(app.getHttpServer())
              .post('/login')
              .send({ username: 'joe', groups: ['one'] })
          ).status === 204,
        5000,
      );
      const again = await login('joe', ['one']);
      await request(app.getHttpServer()).get('/groups/one/report').set('Cookie', asCookie(again)).expect(200);
    });
    it('Redis down, a validly signed cookie: 503 wherever the session matters, never an anonymous session (issue 12, finding 4)', async () => {
      const joe = await login('joe', ['one']);
      const forged = cookieValue(sidOf(joe)!, 'not-the-secret', SALT);
      const http = () => request(app.getHttpServer());
      expect((await http().get('/state').set('Cookie', asCookie(joe)).expect(200)).body).toEqual({ state: 'active', username: 'joe' });
      await server.stop();
      try {
        // A route that reads req.session itself: 503, where it used to see an anonymous visitor.
        await waitFor(
          '503 on a public route for a session cookie',
          async () => (await http().get('/public').set('Cookie', asCookie(joe))).status === 503,
        );
        expect((await http().get('/public').set('Cookie', asCookie(joe))).body.message).toBe(
          'The session store is unavailable; try again shortly.',
        );
        await http().get('/me').set('Cookie', asCookie(joe)).expect(503);
        // A route that opted in with @AllowUnavailableSession() runs, as anonymous, and can tell why.
        expect((await http().get('/state').set('Cookie', asCookie(joe)).expect(200)).body).toEqual({
          state: 'unavailable',
          username: null,
        });
        // There, SharedSessionService.session(req) is still a 503.
        await http().get('/session').set('Cookie', asCookie(joe)).expect(503);
        // Without a session cookie, or with one that is no session (no valid signature), nothing depends on Redis.
        expect((await http().get('/public').expect(200)).body.username).toBeNull();
        await http().get('/public').set('Cookie', asCookie(forged)).expect(200);
        for (const cookie of [undefined, forged]) {
          const res = await http()
            .get('/state')
            .set(cookie ? { Cookie: asCookie(cookie) } : {})
            .expect(200);
          expect(res.body).toEqual({ state: 'anonymous', username: null });
        }
      } finally {
        await server.resume();
      }
      await waitFor('the session store back', async () => (await http().get('/public').set('Cookie', asCookie(joe))).status === 200, 5000);
    });
  }),
);

forEachAdapter((adapter) =>
  describe('SharedSessionModule with touch: false', () => {
    let server: RedisServer;
    let admin: Redis;
    let app: INestApplication;
    beforeAll(async () => {
      server = await RedisServer.start();
      admin = new Redis(server.url);
      app = await createTestApp(
        {
          secret: SECRET,
          salt: SALT,
          keyPrefix: PREFIX,
          redis: server.url,
          ttlSeconds: 3600,
          touch: false,
          touchAfterSeconds: 0,
        },
        false,
        adapter,
      );
    });
    afterAll(async () => {
      await app.close();
      admin.disconnect();
      await server.dispose();
    });

    it('reads a session without refreshing its keys', async () => {
      const res = await request(app.getHttpServer())
        .post('/login')
        .send({ username: 'joe', groups: ['one'] })
        .expect(204);
      const cookie = sessionCookie(res)!.value;
      const sid = sidOf(cookie)!;
      for (const key of sessionKeyList(PREFIX, sid)) await admin.expire(key, 100);
      await request(app.getHttpServer()).get('/me').set('Cookie', asCookie(cookie)).expect(200);
      for (const ttl of Object.values((await readSession(admin, PREFIX, sid)).ttl)) expect(ttl).toBeLessThanOrEqual(100);
    });
  }),
);

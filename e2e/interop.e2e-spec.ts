import type { INestApplication } from '@nestjs/common';
import { readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import Redis from 'ioredis';
import { forEachAdapter } from '../libs/shared-session/test/support';
import { createTestApp } from '../libs/shared-session/test/test-app';
import {
  invalidationChannel,
  PROTOCOL_DEFAULTS,
  readSession,
  sessionIdOf,
  sessionKeyCount,
  sessionKeyList,
  signature,
  timedSessionId,
} from '../protocol/testkit';
import { DemoStack } from '../stack/demo-stack';
import { FlaskApp } from '../stack/flask-app';
import { NGINX_TEMPLATE } from '../stack/nginx-conf';
import { sleep } from '../stack/wait';
import { HttpResponse, request } from '../stack/http-client';
import { cookieSetBy, login } from '../stack/demo-login';

/**
 * One login shared by a real Flask process (e2e/flask/app.py, written from
 * PROTOCOL.md), the Nest demo app and nginx, on one Redis. The settings are
 * the seed README's example ones, none of them a default, so that a party
 * falling back to a default would show. The oracle is the protocol test kit;
 * nothing here uses the library's classes. The demo app runs on Express; the
 * library's test app joins the same Redis on each adapter (Express and
 * Fastify), so that the Fastify app's sessions meet nginx, Flask and the
 * Express app too.
 */
const SETTINGS = {
  SESSION_SECRET: 'interop-secret-2017',
  SESSION_SALT: 'app_session_salt',
  SESSION_KEY_PREFIX: 'app_session_prefix',
  SESSION_COOKIE_NAME: 'app_session',
};
const { SESSION_SECRET: SECRET, SESSION_SALT: SALT, SESSION_KEY_PREFIX: PREFIX, SESSION_COOKIE_NAME: COOKIE } = SETTINGS;

/**
 * How long nginx may keep a positive decision (decision_cache.ttl in the demo's
 * template). Flask publishes no revocation notice (PROTOCOL.md section 7), so
 * this is how long nginx may still allow a session that Flask narrowed or
 * destroyed: the bound the tests hold nginx to.
 */
const DECISION_TTL_MS = (() => {
  const m = /decision_cache\s*=\s*\{[^}]*\bttl\s*=\s*([\d.]+)/.exec(readFileSync(NGINX_TEMPLATE, 'utf8'));
  if (!m) throw new Error(`no decision_cache ttl in ${NGINX_TEMPLATE}`);
  return Number(m[1]) * 1000;
})();
/** The test's clock and nginx's cached clock may disagree by a few milliseconds. */
const CLOCK_SLACK_MS = 100;

const UUID4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

describe('Flask interop: a Flask app, the Nest app and nginx share one login', () => {
  let stack: DemoStack;
  let flask: FlaskApp;
  let admin: Redis;
  let subscriber: Redis;
  /** Every session id published on <prefix>:invalidate while the tests ran. */
  const notices: string[] = [];

  const json = (res: HttpResponse) => JSON.parse(res.body);
  const cookieHeader = (cookie?: string): Record<string, string> => (cookie === undefined ? {} : { Cookie: `${COOKIE}=${cookie}` });
  const sidOf = (cookie: string) => cookie.slice(0, cookie.lastIndexOf('.'));

  /** The value of our cookie in a response's Set-Cookie, or undefined. */
  const setCookie = (res: HttpResponse) => cookieSetBy(res, COOKIE);
  const rawRequest = (port: number, path: string, headers: Record<string, string>, method = 'GET', body?: string) =>
    request(port, path, { headers, method, body });

  // Through nginx (the default), or straight to the Nest app.
  const atNginx = (path: string, cookie?: string) => rawRequest(stack.nginx.port, path, cookieHeader(cookie));
  const atApp = (path: string, cookie?: string) => rawRequest(stack.appPort, path, cookieHeader(cookie));
  const postJson = (port: number, path: string, body: unknown, cookie?: string) =>
    rawRequest(port, path, { ...cookieHeader(cookie), 'Content-Type': 'application/json' }, 'POST', JSON.stringify(body));

  async function flaskLogin(username: string, groups: string[], cookie?: string): Promise<string> {
    const res = await postJson(flask.port, '/login', { username, groups }, cookie);
    expect(res.status).toBe(200);
    return setCookie(res)!;
  }
  const flaskSetGroups = (cookie: string, groups: string[]) => postJson(flask.port, '/groups', { groups }, cookie);
  const flaskLogout = (cookie: string) => rawRequest(flask.port, '/logout', cookieHeader(cookie), 'POST', '');
  const whoami = (cookie?: string) => rawRequest(flask.port, '/whoami', cookieHeader(cookie));

  async function nestLogin(email: string, password: string): Promise<string> {
    const res = await login(stack.nginx.port, email, password);
    expect(res.status).toBe(303);
    return setCookie(res)!;
  }
  const nestSetGroups = (cookie: string, groups: string[]) => postJson(stack.nginx.port, '/app/api/v1/myself/groups', { groups }, cookie);
  const nestLogout = (cookie: string) => rawRequest(stack.nginx.port, '/app/logout', cookieHeader(cookie), 'POST', '');

  /**
   * Asks nginx for `path` until it refuses, and fails if it allowed a request
   * sent later than the decision-cache ttl after `changedAt` (when the writer
   * had answered, so its MULTI had committed).
   */
  async function refusedByNginxWithinTtl(path: string, cookie: string, changedAt: number): Promise<void> {
    for (;;) {
      const sentAt = Date.now();
      const res = await atNginx(path, cookie);
      if (res.status === 403) break;
      expect(res.status).toBe(200);
      expect(sentAt - changedAt).toBeLessThan(DECISION_TTL_MS + CLOCK_SLACK_MS);
      await sleep(20);
    }
    // Refused for good: a positive decision cannot come back.
    await sleep(DECISION_TTL_MS / 2);
    expect((await atNginx(path, cookie)).status).toBe(403);
  }

  beforeAll(async () => {
    stack = await DemoStack.start({ env: { ...process.env, ...SETTINGS, SESSION_SECRET_FALLBACKS: '', CACHE_SECONDS: '60' } });
    flask = await FlaskApp.start({ redisUrl: stack.redis.url, env: stack.env });
    admin = new Redis(stack.redis.url);
    subscriber = new Redis(stack.redis.url);
    subscriber.on('message', (_channel: string, sid: string) => notices.push(sid));
    await subscriber.subscribe(invalidationChannel(PREFIX));
  }, 60_000);
  afterAll(async () => {
    subscriber?.disconnect();
    admin?.disconnect();
    await flask?.stop();
    await stack?.stop();
  });

  describe('a session Flask writes', () => {
    it('has exactly the three keys of section 3, a UUID4 id and the cookie of section 2', async () => {
      const cookie = await flaskLogin('joe@example.com', ['one', 'three']);
      const sid = sidOf(cookie);
      expect(sid).toMatch(UUID4);
      expect(cookie).toBe(`${sid}.${signature(sid, SECRET, SALT)}`);
      expect((await admin.keys(`*${sid}*`)).sort()).toEqual(sessionKeyList(PREFIX, sid).sort());
      const stored = await readSession(admin, PREFIX, sid);
      expect(stored.data).toEqual({ _permanent: true, username: 'joe@example.com', groups: ['one', 'three'] });
      expect(stored.signature).toBe(signature(sid, SECRET, SALT));
      expect(stored.groups).toEqual(['one', 'three']);
      for (const ttl of Object.values(stored.ttl)) {
        expect(ttl).toBeGreaterThan(PROTOCOL_DEFAULTS.ttlSeconds - 60);
        expect(ttl).toBeLessThanOrEqual(PROTOCOL_DEFAULTS.ttlSeconds);
      }
    });

    it('with no groups, has no groups key', async () => {
      const sid = sidOf(await flaskLogin('maria@example.com', []));
      expect(await sessionKeyCount(admin, PREFIX, sid)).toBe(2);
      expect((await readSession(admin, PREFIX, sid)).data).toEqual({ _permanent: true, username: 'maria@example.com', groups: [] });
    });

    it('login regenerates: a new id, and the old three keys gone', async () => {
      const first = await flaskLogin('joe@example.com', ['one']);
      const second = await flaskLogin('joe@example.com', ['three'], first);
      expect(sidOf(second)).not.toBe(sidOf(first));
      expect(await sessionKeyCount(admin, PREFIX, sidOf(first))).toBe(0);
      expect(await sessionKeyCount(admin, PREFIX, sidOf(second))).toBe(3);
    });

    it('logout deletes the three keys and clears the cookie', async () => {
      const cookie = await flaskLogin('joe@example.com', ['one']);
      const out = await flaskLogout(cookie);
      expect(out.status).toBe(204);
      expect(out.headers['set-cookie']!.join()).toMatch(new RegExp(`^${COOKIE}=;.*Max-Age=0`));
      expect(await sessionKeyCount(admin, PREFIX, sidOf(cookie))).toBe(0);
      expect((await whoami(cookie)).status).toBe(401);
    });
  });

  describe('Flask → nginx and the Nest app', () => {
    it('a Flask login is allowed by nginx for its groups only, and is logged in at the Nest app', async () => {
      const cookie = await flaskLogin('joe@example.com', ['one', 'three']);
      for (const group of ['one', 'three']) {
        expect((await atNginx(`/app/api/v1/group/${group}/uncacheable/from-flask`, cookie)).status).toBe(200);
      }
      for (const group of ['two', 'four']) {
        expect((await atNginx(`/app/api/v1/group/${group}/cacheable/from-flask`, cookie)).status).toBe(403);
        expect((await atApp(`/app/api/v1/group/${group}/cacheable/from-flask`, cookie)).status).toBe(403);
      }
      const myself = await atNginx('/app/api/v1/myself', cookie);
      expect(myself.status).toBe(200);
      expect(json(myself)).toEqual({ email: 'joe@example.com' });
      expect((await atApp('/app/api/v1/group/one/cacheable/from-flask', cookie)).status).toBe(200);
    });

    it('a Flask session and a Nest session of one group share nginx’s cache entry', async () => {
      const flaskUser = await flaskLogin('someone-only-flask-knows@example.com', ['one']);
      const esteban = await nestLogin('esteban@example.com', 'itsesteban');
      const first = await atNginx('/app/api/v1/group/one/cacheable/shared-report', flaskUser);
      expect(first.status).toBe(200);
      expect(first.headers['x-cache-status']).toEqual(['MISS']);
      const second = await atNginx('/app/api/v1/group/one/cacheable/shared-report', esteban);
      expect(second.headers['x-cache-status']).toEqual(['HIT']);
      expect(json(second)).toEqual(json(first));
      // A session Flask gave no group is refused the cached copy.
      const none = await flaskLogin('someone-only-flask-knows@example.com', []);
      expect((await atNginx('/app/api/v1/group/one/cacheable/shared-report', none)).status).toBe(403);
    });

    it('Flask narrows the groups: the app refuses at once, nginx within its decision-cache ttl', async () => {
      const cookie = await flaskLogin('joe@example.com', ['one', 'three']);
      const path = '/app/api/v1/group/one/cacheable/narrowed-by-flask';
      expect((await atNginx(path, cookie)).status).toBe(200); // nginx now keeps the decision
      const changed = await flaskSetGroups(cookie, ['three']);
      const changedAt = Date.now();
      expect(changed.status).toBe(200);
      expect(json(changed)).toEqual({ username: 'joe@example.com', groups: ['three'] });
      expect((await atApp(path, cookie)).status).toBe(403);
      await refusedByNginxWithinTtl(path, cookie, changedAt);
      expect((await atNginx('/app/api/v1/group/three/cacheable/narrowed-by-flask', cookie)).status).toBe(200);
      expect((await readSession(admin, PREFIX, sidOf(cookie))).groups).toEqual(['three']);
    });

    it('Flask logs out: the app refuses at once, nginx within its decision-cache ttl', async () => {
      const cookie = await flaskLogin('joe@example.com', ['one', 'three']);
      const path = '/app/api/v1/group/three/cacheable/flask-logout';
      expect((await atNginx(path, cookie)).status).toBe(200);
      expect((await flaskLogout(cookie)).status).toBe(204);
      const loggedOutAt = Date.now();
      expect((await atApp('/app/api/v1/myself', cookie)).status).toBe(401);
      expect((await atApp(path, cookie)).status).toBe(401);
      await refusedByNginxWithinTtl(path, cookie, loggedOutAt);
    });
  });

  describe('the Nest app → Flask', () => {
    it('Flask reads a Nest login: user and groups', async () => {
      const cookie = await nestLogin('joe@example.com', 'itsjoe');
      const me = await whoami(cookie);
      expect(me.status).toBe(200);
      expect(json(me)).toEqual({ username: 'joe@example.com', groups: ['one', 'three'] });
      // Reading wrote nothing: no Set-Cookie from Flask.
      expect(setCookie(me)).toBeUndefined();
    });

    it('the Nest app narrows the groups: Flask sees it at once', async () => {
      const cookie = await nestLogin('joe@example.com', 'itsjoe');
      expect((await nestSetGroups(cookie, ['three'])).status).toBe(200);
      expect(json(await whoami(cookie))).toEqual({ username: 'joe@example.com', groups: ['three'] });
    });

    it('the Nest app logs out: Flask sees it at once', async () => {
      const cookie = await nestLogin('joe@example.com', 'itsjoe');
      expect((await whoami(cookie)).status).toBe(200);
      expect((await nestLogout(cookie)).status).toBe(303);
      expect((await whoami(cookie)).status).toBe(401);
    });

    it('the Nest app narrows a Flask session: Flask sees it, nginx at once, and Flask’s _permanent is kept', async () => {
      const cookie = await flaskLogin('joe@example.com', ['one', 'three']);
      const path = '/app/api/v1/group/one/cacheable/narrowed-by-nest';
      expect((await atNginx(path, cookie)).status).toBe(200);
      const changed = await nestSetGroups(cookie, ['three']);
      expect(changed.status).toBe(200);
      expect(json(await whoami(cookie))).toEqual({ username: 'joe@example.com', groups: ['three'] });
      // The Nest app publishes its change (section 7): nginx forgets its decision at once.
      expect((await atNginx(path, cookie)).status).toBe(403);
      const stored = await readSession(admin, PREFIX, sidOf(cookie));
      // The Nest app adds its idle timeout (PROTOCOL.md section 12: _idle), which Flask keeps and ignores.
      expect(stored.data).toEqual({
        _permanent: true,
        username: 'joe@example.com',
        groups: ['three'],
        _idle: PROTOCOL_DEFAULTS.ttlSeconds,
      });
      expect(stored.signature).toBe(signature(sidOf(cookie), SECRET, SALT));
      expect(stored.groups).toEqual(['three']);
    });

    it('the Nest app logs a Flask session out: Flask and nginx refuse at once', async () => {
      const cookie = await flaskLogin('joe@example.com', ['one']);
      const path = '/app/api/v1/group/one/cacheable/nest-logout';
      expect((await atNginx(path, cookie)).status).toBe(200);
      expect((await nestLogout(cookie)).status).toBe(303);
      expect((await whoami(cookie)).status).toBe(401);
      expect((await atNginx(path, cookie)).status).toBe(403);
      expect(await sessionKeyCount(admin, PREFIX, sidOf(cookie))).toBe(0);
    });
  });

  forEachAdapter((adapter) =>
    describe('the library on this adapter ↔ nginx, Flask and the demo app on Express', () => {
      let app: INestApplication;
      let port: number;
      const atLib = (path: string, cookie?: string, method = 'GET', body?: unknown) =>
        rawRequest(
          port,
          path,
          { ...cookieHeader(cookie), ...(body === undefined ? {} : { 'Content-Type': 'application/json' }) },
          method,
          body === undefined ? (method === 'GET' ? undefined : '') : JSON.stringify(body),
        );
      async function libLogin(username: string, groups: string[]): Promise<string> {
        const res = await atLib('/login', undefined, 'POST', { username, groups });
        expect(res.status).toBe(204);
        return setCookie(res)!;
      }

      beforeAll(async () => {
        app = await createTestApp(
          { secret: SECRET, salt: SALT, keyPrefix: PREFIX, cookieName: COOKIE, secretFallbacks: [], redis: stack.redis.url },
          false,
          adapter,
        );
        await app.listen(0, '127.0.0.1');
        port = (app.getHttpServer().address() as AddressInfo).port;
      });
      afterAll(() => app?.close());

      it('its login is the protocol’s cookie and keys, allowed by nginx for its groups only, and read by Flask and the demo app', async () => {
        const cookie = await libLogin('joe@example.com', ['one', 'three']);
        const sid = sidOf(cookie);
        // A timed id (PROTOCOL.md section 12), signed as section 2 says.
        expect(timedSessionId(sid)).not.toBeNull();
        expect(sessionIdOf(cookie, SECRET, SALT)).toBe(sid);
        const stored = await readSession(admin, PREFIX, sid);
        expect(stored.signature).toBe(signature(sid, SECRET, SALT));
        expect(stored.groups).toEqual(['one', 'three']);
        expect((await atNginx(`/app/api/v1/group/one/uncacheable/from-${adapter}`, cookie)).status).toBe(200);
        expect((await atNginx(`/app/api/v1/group/two/uncacheable/from-${adapter}`, cookie)).status).toBe(403);
        const me = await whoami(cookie);
        expect(me.status).toBe(200);
        expect(json(me)).toEqual({ username: 'joe@example.com', groups: ['one', 'three'] });
        expect(json(await atApp('/app/api/v1/myself', cookie))).toEqual({ email: 'joe@example.com' });
      });

      it('its group change and logout: Flask sees them, nginx at once (it publishes its notices)', async () => {
        const cookie = await libLogin('joe@example.com', ['one', 'three']);
        const path = `/app/api/v1/group/one/cacheable/changed-by-${adapter}`;
        expect((await atNginx(path, cookie)).status).toBe(200); // nginx now keeps the decision
        expect((await atLib('/groups', cookie, 'POST', { groups: ['three'] })).status).toBe(204);
        expect(json(await whoami(cookie))).toEqual({ username: 'joe@example.com', groups: ['three'] });
        expect((await atNginx(path, cookie)).status).toBe(403);
        expect((await atLib('/logout', cookie, 'POST')).status).toBe(204);
        expect((await whoami(cookie)).status).toBe(401);
        expect((await atNginx(`/app/api/v1/group/three/uncacheable/changed-by-${adapter}`, cookie)).status).toBe(403);
        expect(await sessionKeyCount(admin, PREFIX, sidOf(cookie))).toBe(0);
      });

      it('reads a Flask login, and narrows it: Flask sees the change and its _permanent is kept', async () => {
        const cookie = await flaskLogin('maria@example.com', ['one', 'three']);
        const me = await atLib('/me', cookie);
        expect(me.status).toBe(200);
        expect(json(me)).toEqual({ username: 'maria@example.com', groups: ['one', 'three'] });
        // Reading wrote no new cookie.
        expect(setCookie(me)).toBeUndefined();
        expect((await atLib('/groups', cookie, 'POST', { groups: ['three'] })).status).toBe(204);
        expect(json(await whoami(cookie))).toEqual({ username: 'maria@example.com', groups: ['three'] });
        const stored = await readSession(admin, PREFIX, sidOf(cookie));
        expect(stored.data).toMatchObject({ _permanent: true, username: 'maria@example.com', groups: ['three'] });
        expect(stored.signature).toBe(signature(sidOf(cookie), SECRET, SALT));
      });

      it('reads a login by the demo app on Express, and logs it out for all', async () => {
        const cookie = await nestLogin('joe@example.com', 'itsjoe');
        const me = await atLib('/me', cookie);
        expect(me.status).toBe(200);
        expect(json(me)).toEqual({ username: 'joe@example.com', groups: ['one', 'three'] });
        expect((await atLib('/logout', cookie, 'POST')).status).toBe(204);
        expect((await atApp('/app/api/v1/myself', cookie)).status).toBe(401);
        expect((await whoami(cookie)).status).toBe(401);
      });

      it('a forged or unknown cookie is nobody, as at the other doors', async () => {
        const cookie = await flaskLogin('joe@example.com', ['one']);
        const forged = `${sidOf(cookie)}.${signature(sidOf(cookie), 'not-the-secret', SALT)}`;
        expect((await atLib('/me', forged)).status).toBe(401);
        expect((await whoami(forged)).status).toBe(401);
        expect((await atNginx('/app/api/v1/group/one/uncacheable/forged', forged)).status).toBe(403);
      });
    }),
  );

  it('with two different cookies of the name, Flask takes the first; nginx and the Nest app find no session (PROTOCOL.md section 10)', async () => {
    const first = await flaskLogin('first@example.com', ['one']);
    const second = await nestLogin('sam@example.com', 'itssam');
    const both = { Cookie: `${COOKIE}=${first}; ${COOKIE}=${second}` };
    // Werkzeug, as the 2017 extension reads it: the first counts.
    expect(json(await rawRequest(flask.port, '/whoami', both))).toEqual({ username: 'first@example.com', groups: ['one'] });
    // The grammar refuses the header: nobody, not either session.
    expect((await rawRequest(stack.appPort, '/app/api/v1/myself', both)).status).toBe(401);
    expect((await rawRequest(stack.nginx.port, '/app/api/v1/group/one/uncacheable/two-cookies', both)).status).toBe(403);
    expect((await rawRequest(stack.nginx.port, '/app/api/v1/group/two/uncacheable/two-cookies', both)).status).toBe(403);
    // The same cookie twice is that cookie, for all three.
    const twice = { Cookie: `${COOKIE}=${first}; x=1; ${COOKIE}=${first}` };
    expect(json(await rawRequest(flask.port, '/whoami', twice))).toEqual({ username: 'first@example.com', groups: ['one'] });
    expect(json(await rawRequest(stack.appPort, '/app/api/v1/myself', twice))).toEqual({ email: 'first@example.com' });
    expect((await rawRequest(stack.nginx.port, '/app/api/v1/group/one/uncacheable/two-cookies', twice)).status).toBe(200);
  });

  it('Flask publishes no revocation notice (section 7); the Nest app does', async () => {
    const cookie = await flaskLogin('joe@example.com', ['one', 'three']);
    await flaskSetGroups(cookie, ['three']);
    await flaskLogout(cookie);
    // The Nest app's logout publishes: once it arrives, anything Flask had published would have too.
    const nest = await nestLogin('sam@example.com', 'itssam');
    await nestLogout(nest);
    for (let i = 0; i < 100 && !notices.includes(sidOf(nest)); i++) await sleep(20);
    expect(notices).toContain(sidOf(nest));
    expect(notices).not.toContain(sidOf(cookie));
  });
});

/**
 * PROTOCOL.md sections 8 and 9 through the real stack: a slow request of a
 * session that changes the session (the demo's visit counter, held with
 * `delay_ms`) is still running when the same session logs out, loses a group,
 * logs in again or is deleted from outside. When it ends and saves, nginx
 * (cached resources included) and the app keep refusing what was taken away.
 */
import Redis from 'ioredis';
import { destroySession, PROTOCOL_DEFAULTS, readSession, sessionIdOf, sessionKeyCount, sessionKeys } from '../protocol/testkit';
import { login as demoLogin } from '../stack/demo-login';
import { DemoStack } from '../stack/demo-stack';
import { HttpResponse, request } from '../stack/http-client';
import { sleep } from '../stack/wait';

const SECRET = 'concurrent-requests-secret';
const SALT = PROTOCOL_DEFAULTS.salt;
const PREFIX = PROTOCOL_DEFAULTS.keyPrefix;
const CACHED = '/app/api/v1/group/one/cacheable/slow-report';

describe('a request in flight cannot undo a logout or a group change (real stack)', () => {
  let stack: DemoStack;
  let admin: Redis;

  const cookieHeader = (cookie: string) => ({ Cookie: `session=${cookie}` });
  const get = (path: string, cookie: string, port = stack.nginx.port) => request(port, path, { headers: cookieHeader(cookie) });
  // A JSON POST has a body ('{}' at least: on Fastify an empty JSON body is a 400).
  const post = (path: string, cookie: string, body = '{}', type = 'application/json') =>
    request(stack.nginx.port, path, { method: 'POST', headers: { ...cookieHeader(cookie), 'Content-Type': type }, body });

  async function login(): Promise<string> {
    const res = await demoLogin(stack.nginx.port, 'joe@example.com', 'itsjoe');
    expect(res.status).toBe(303);
    return res.cookie!;
  }

  /** Starts a 1 s visit with `cookie`, runs `meanwhile` once the request has read its session, and waits for the visit's answer. */
  async function whileSlowVisit(cookie: string, meanwhile: () => Promise<unknown>): Promise<HttpResponse> {
    const slow = post('/app/api/v1/myself/visits?delay_ms=1000', cookie);
    await sleep(300); // the session is read before the handler's pause starts
    await meanwhile();
    const res = await slow;
    expect(res.status).toBe(200); // it ran to the end and saved
    return res;
  }

  beforeAll(async () => {
    stack = await DemoStack.start({ env: { ...process.env, SESSION_SECRET: SECRET, SESSION_SECRET_FALLBACKS: '', CACHE_SECONDS: '60' } });
    admin = new Redis(stack.redis.url);
  }, 60_000);
  afterAll(async () => {
    admin?.disconnect();
    await stack?.stop();
  });

  it('logout: the old cookie stays refused at nginx (cached resource) and at the app', async () => {
    const cookie = await login();
    expect((await get(CACHED, cookie)).status).toBe(200);
    await whileSlowVisit(cookie, async () =>
      expect((await post('/app/logout', cookie, '', 'application/x-www-form-urlencoded')).status).toBe(303),
    );
    expect(await sessionKeyCount(admin, PREFIX, sessionIdOf(cookie, SECRET, SALT)!)).toBe(0);
    expect((await get(CACHED, cookie)).status).toBe(403);
    expect((await get('/app/api/v1/myself', cookie, stack.appPort)).status).toBe(401);
  });

  it("a group removed while the request ran stays removed; the request's own change is kept", async () => {
    const cookie = await login();
    expect((await get(CACHED, cookie)).status).toBe(200);
    await whileSlowVisit(cookie, async () =>
      expect((await post('/app/api/v1/myself/groups', cookie, JSON.stringify({ groups: ['three'] }))).status).toBe(200),
    );
    const stored = await readSession(admin, PREFIX, sessionIdOf(cookie, SECRET, SALT)!);
    expect(stored.groups).toEqual(['three']);
    expect(stored.data).toMatchObject({ groups: ['three'], visits: 1 });
    expect((await get(CACHED, cookie)).status).toBe(403);
    expect((await get('/app/api/v1/group/three/cacheable/slow-report', cookie)).status).toBe(200);
  });

  it('a new login from the same browser: the old id stays ended', async () => {
    const cookie = await login();
    let fresh = '';
    await whileSlowVisit(cookie, async () => {
      const res = await request(stack.nginx.port, '/app/login', {
        method: 'POST',
        headers: { ...cookieHeader(cookie), 'Content-Type': 'application/x-www-form-urlencoded' },
        body: 'email=joe%40example.com&password=itsjoe',
      });
      fresh = res.headers['set-cookie']![0].split(';')[0].slice('session='.length);
    });
    expect((await get(CACHED, cookie)).status).toBe(403);
    expect((await get(CACHED, fresh)).status).toBe(200);
  });

  it('deleted from outside (an operator, another app): stays deleted, at nginx too', async () => {
    const cookie = await login();
    const sid = sessionIdOf(cookie, SECRET, SALT)!;
    expect((await get(CACHED, cookie)).status).toBe(200);
    await whileSlowVisit(cookie, () => destroySession(admin, PREFIX, sid, { publish: true }));
    expect(await sessionKeyCount(admin, PREFIX, sid)).toBe(0);
    expect((await get(CACHED, cookie)).status).toBe(403);
  });

  it('half-deleted (data key gone): the app removes the leftovers, so nginx refuses too (section 9)', async () => {
    const cookie = await login();
    const sid = sessionIdOf(cookie, SECRET, SALT)!;
    expect((await get(CACHED, cookie)).status).toBe(200);
    await admin.del(sessionKeys(PREFIX, sid).data);
    expect((await post('/app/logout', cookie, '', 'application/x-www-form-urlencoded')).status).toBe(303);
    expect(await sessionKeyCount(admin, PREFIX, sid)).toBe(0);
    expect((await get(CACHED, cookie)).status).toBe(403);
  });
});

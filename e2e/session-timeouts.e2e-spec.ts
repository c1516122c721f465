/**
 * Idle and absolute timeouts through the whole stack (PROTOCOL.md section 12;
 * issue 11): the demo app with idle 2 s and absolute 5 s ("keep me signed
 * in": idle 3 s, absolute 8 s), behind nginx with resty.shared_session, on a
 * real Redis. Times are counted from the issue time in each session's id.
 */
import Redis from 'ioredis';
import { PROTOCOL_DEFAULTS, readSession, sessionIdOf, sessionKeyList, timedSessionId } from '../protocol/testkit';
import { login as demoLogin } from '../stack/demo-login';
import { DemoStack } from '../stack/demo-stack';
import { HttpResponse, request } from '../stack/http-client';
import { sleep } from '../stack/wait';

const SECRET = 'timeouts-e2e-secret-long-enough-to-pass';
const PREFIX = PROTOCOL_DEFAULTS.keyPrefix;
const IDLE = 2;
const ABSOLUTE = 5;
const REMEMBER_IDLE = 3;
const REMEMBER_ABSOLUTE = 8;
/** A cacheable group resource of group "one" (joe and esteban). */
const CACHED = '/app/api/v1/group/one/cacheable/timeouts-report';

interface Login {
  cookie: string;
  sid: string;
  issuedMs: number;
  deadlineMs: number;
  /** The login response's Set-Cookie line for the session. */
  setCookie: string;
}

describe('idle and absolute timeouts at both doors (idle 2 s, absolute 5 s; remember me: 3 s, 8 s)', () => {
  let stack: DemoStack;
  let admin: Redis;

  const get = (path: string, cookie: string, port = stack.nginx.port): Promise<HttpResponse> =>
    request(port, path, { headers: { Cookie: `session=${cookie}` } });
  /** The app's answer for the session (through nginx, which passes /app/api/v1/myself on). */
  const myself = async (cookie: string, port = stack.nginx.port) => (await get('/app/api/v1/myself', cookie, port)).status;
  const cached = (cookie: string) => get(CACHED, cookie);
  const sinceIssue = (l: Login) => Date.now() - l.issuedMs;
  /** Sleeps until `ms` after the session was issued. */
  const until = async (l: Login, ms: number) => sleep(Math.max(0, ms - sinceIssue(l)));

  async function login(email: string, password: string, remember = false): Promise<Login> {
    const res = await demoLogin(stack.nginx.port, email, password, undefined, remember ? { remember: '1' } : {});
    expect(res.status).toBe(303);
    const sid = sessionIdOf(res.cookie!, SECRET, PROTOCOL_DEFAULTS.salt)!;
    const times = timedSessionId(sid)!;
    const setCookie = res.headers['set-cookie']!.find((line) => line.startsWith('session='))!;
    return { cookie: res.cookie!, sid, issuedMs: times.issuedMs, deadlineMs: times.deadlineMs, setCookie };
  }

  /** The cookie's Expires, which HTTP dates give to the second. */
  function expiresOf(setCookie: string): number {
    return new Date(/Expires=([^;]+)/.exec(setCookie)![1]).getTime();
  }

  /** Every key's time to live never reaches past the session's deadline. */
  async function neverPastDeadline(l: Login): Promise<void> {
    const now = Date.now();
    for (const key of sessionKeyList(PREFIX, l.sid)) {
      const pttl = await admin.pttl(key);
      if (pttl > 0) expect(now + pttl).toBeLessThanOrEqual(l.deadlineMs + 50);
    }
  }

  beforeAll(async () => {
    stack = await DemoStack.start({
      env: {
        ...process.env,
        SESSION_SECRET: SECRET,
        CACHE_SECONDS: '60',
        SESSION_IDLE_TIMEOUT_SECONDS: String(IDLE),
        SESSION_ABSOLUTE_TIMEOUT_SECONDS: String(ABSOLUTE),
        REMEMBER_ME_IDLE_TIMEOUT_SECONDS: String(REMEMBER_IDLE),
        REMEMBER_ME_ABSOLUTE_TIMEOUT_SECONDS: String(REMEMBER_ABSOLUTE),
      },
    });
    admin = new Redis(stack.redis.url);
    // Fill nginx's cache for group "one" with another session: the sessions below then only ever get HITs.
    const filler = await login('joe@example.com', 'itsjoe');
    expect((await cached(filler.cookie)).status).toBe(200);
    expect((await cached(filler.cookie)).headers['x-cache-status']).toEqual(['HIT']);
  }, 60_000);

  afterAll(async () => {
    admin?.disconnect();
    await stack?.stop();
  });

  test('a session gets the absolute deadline in its id and as its cookie’s Expires, and its idle timeout as the ttl', async () => {
    const l = await login('esteban@example.com', 'itsesteban');
    expect(l.deadlineMs - l.issuedMs).toBe(ABSOLUTE * 1000);
    expect(Math.abs(expiresOf(l.setCookie) - l.deadlineMs)).toBeLessThanOrEqual(1000);
    const stored = await readSession(admin, PREFIX, l.sid);
    expect(stored.data).toMatchObject({ _idle: IDLE });
    for (const ttl of Object.values(stored.ttl)) expect(ttl).toBeLessThanOrEqual(IDLE);
  });

  test('unused for 2 s: refused at nginx (a cached resource included) and at the app, which clears the cookie', async () => {
    const l = await login('esteban@example.com', 'itsesteban');
    const hit = await cached(l.cookie);
    expect(hit.status).toBe(200);
    expect(hit.headers['x-cache-status']).toEqual(['HIT']);
    expect(await myself(l.cookie)).toBe(200);
    const lastUse = Date.now();
    // Idle 2 s, plus the decision cache's 1 s bound for a key that expired (Redis publishes no notice then).
    await sleep(IDLE * 1000 + 1100 - (Date.now() - lastUse));
    expect(sinceIssue(l)).toBeLessThan(ABSOLUTE * 1000); // the idle limit, not the absolute one
    expect(await admin.exists(...sessionKeyList(PREFIX, l.sid))).toBe(0);
    expect((await cached(l.cookie)).status).toBe(403);
    expect((await get('/app/api/v1/group/one/uncacheable/x', l.cookie)).status).toBe(403);
    const atApp = await get('/app/api/v1/myself', l.cookie, stack.appPort);
    expect(atApp.status).toBe(401);
    // The cookie of an ended session is cleared by the app's next answer.
    expect(atApp.headers['set-cookie']!.join()).toMatch(/^session=;.*Max-Age=0/);
  });

  test('kept busy only through cached nginx resources: lives until 5 s, then refused at both, cached resources included', async () => {
    const l = await login('esteban@example.com', 'itsesteban');
    // Only nginx sees it, every 300 ms, for longer than twice its idle timeout.
    while (sinceIssue(l) < ABSOLUTE * 1000 - 700) {
      const res = await cached(l.cookie);
      expect(res.status).toBe(200);
      expect(res.headers['x-cache-status']).toEqual(['HIT']);
      expect(res.headers['set-cookie']).toBeUndefined(); // never a cookie on a cached response
      await neverPastDeadline(l);
      await sleep(300);
    }
    // The app never saw it since login, yet the session lives: nginx kept it alive.
    expect(sinceIssue(l)).toBeGreaterThan(IDLE * 1000 + 1500);
    const atApp = await get('/app/api/v1/myself', l.cookie);
    expect(atApp.status).toBe(200);
    // A cookie with a deadline is never renewed: its Expires is already the end.
    expect(atApp.headers['set-cookie']).toBeUndefined();

    await until(l, ABSOLUTE * 1000 + 100);
    // nginx refuses by the id alone, although its decision cache may still hold the session and the keys may live on (rounded up to the second).
    expect((await cached(l.cookie)).status).toBe(403);
    expect((await get('/app/group/one/cacheable/timeouts-page', l.cookie)).status).toBe(403);
    expect(await myself(l.cookie)).toBe(401);
    expect(await myself(l.cookie, stack.appPort)).toBe(401);
  });

  test('"keep me signed in" follows its own limits: alive after 2.5 s unused, busy until 8 s, then refused at both', async () => {
    const l = await login('esteban@example.com', 'itsesteban', true);
    expect(l.deadlineMs - l.issuedMs).toBe(REMEMBER_ABSOLUTE * 1000);
    expect(Math.abs(expiresOf(l.setCookie) - l.deadlineMs)).toBeLessThanOrEqual(1000);
    expect((await readSession(admin, PREFIX, l.sid)).data).toMatchObject({ _idle: REMEMBER_IDLE });

    // Unused for longer than the ordinary idle timeout, less than its own.
    await sleep(IDLE * 1000 + 500);
    expect((await cached(l.cookie)).status).toBe(200);
    // Busy through nginx's cache past the ordinary absolute timeout, until near its own.
    while (sinceIssue(l) < REMEMBER_ABSOLUTE * 1000 - 700) {
      expect((await cached(l.cookie)).status).toBe(200);
      await neverPastDeadline(l);
      await sleep(300);
    }
    expect(sinceIssue(l)).toBeGreaterThan(ABSOLUTE * 1000);
    expect(await myself(l.cookie)).toBe(200);
    await until(l, REMEMBER_ABSOLUTE * 1000 + 100);
    expect((await cached(l.cookie)).status).toBe(403);
    expect(await myself(l.cookie)).toBe(401);
  });

  test('"keep me signed in" unused for its own idle timeout (3 s): refused at both', async () => {
    const l = await login('esteban@example.com', 'itsesteban', true);
    expect((await cached(l.cookie)).status).toBe(200);
    const lastUse = Date.now();
    await sleep(REMEMBER_IDLE * 1000 + 1100 - (Date.now() - lastUse));
    expect((await cached(l.cookie)).status).toBe(403);
    expect(await myself(l.cookie)).toBe(401);
  });
});

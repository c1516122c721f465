import Redis from 'ioredis';
import { PROTOCOL_DEFAULTS, sessionIdOf, sessionKeyCount } from '../protocol/testkit';
import { login } from '../stack/demo-login';
import { DEMO_ADAPTERS, DemoStack } from '../stack/demo-stack';
import { HttpResponse, request } from '../stack/http-client';
import { waitFor } from '../stack/wait';

/**
 * Cookie tossing (issue 23, finding 2) on the real stack: someone who can set
 * a cookie on a sibling subdomain (evil.demo.test) adds a second signed
 * `session` cookie for the parent domain (demo.test), which the browser then
 * sends with the victim's own to app.demo.test, both in one Cookie header.
 * On each of the app's HTTP platforms (DEMO_ADAPTER).
 */
const SECRET = 'tossing-secret';
const SALT = PROTOCOL_DEFAULTS.salt;
const PREFIX = PROTOCOL_DEFAULTS.keyPrefix;
const HOST = 'app.demo.test';
const TWO_SESSIONS = /two different session cookies .*Log out, or clear this site(&#39;|')s cookies/;

describe.each(DEMO_ADAPTERS)('cookie tossing, the app on %s: two signed session cookies in one request', (adapter) => {
  let stack: DemoStack;
  let admin: Redis;

  const send = (path: string, cookies: string[], headers: Record<string, string> = {}, method = 'GET'): Promise<HttpResponse> =>
    request(stack.nginx.port, path, {
      method,
      headers: { Host: HOST, ...(cookies.length ? { Cookie: cookies.map((c) => `session=${c}`).join('; ') } : {}), ...headers },
      ...(method === 'POST' ? { body: '' } : {}),
    });
  async function cookieOf(email: string, password: string): Promise<string> {
    const res = await login(stack.nginx.port, email, password, { Host: HOST });
    expect(res.status).toBe(303);
    return res.cookie!;
  }
  const sid = (cookie: string) => sessionIdOf(cookie, SECRET, SALT)!;
  const keys = (cookie: string) => sessionKeyCount(admin, PREFIX, sid(cookie));

  beforeAll(async () => {
    stack = await DemoStack.start({ adapter, env: { ...process.env, SESSION_SECRET: SECRET } });
    admin = new Redis(stack.redis.url);
  }, 60_000);
  afterAll(async () => {
    admin?.disconnect();
    await stack?.stop();
  });

  it('nginx refuses with 403 and a page (or JSON) that says two sessions were sent and how to clear them', async () => {
    const victim = await cookieOf('joe@example.com', 'itsjoe');
    const attacker = await cookieOf('sam@example.com', 'itssam');
    const page = await send('/app/group/one/uncacheable/activity', [victim, attacker], { Accept: 'text/html' });
    expect(page.status).toBe(403);
    expect(page.body).toMatch(TWO_SESSIONS);
    expect(page.body).toContain('data-reason="two_sessions"');
    expect(page.body).toContain('action="/app/logout"');
    const api = await send('/app/api/v1/group/one/uncacheable/live', [victim, attacker], { Accept: 'application/json' });
    expect(api.status).toBe(403);
    expect(JSON.parse(api.body)).toMatchObject({
      statusCode: 403,
      door: 'nginx',
      reason: 'two_sessions',
      message: expect.stringMatching(TWO_SESSIONS),
    });
    // Nothing of either session in the answer.
    for (const body of [page.body, api.body]) for (const c of [victim, attacker]) expect(body).not.toContain(sid(c));
  });

  it('the app says the same (its home page, its 401 JSON) and logs one warn line without a cookie or a session id', async () => {
    const victim = await cookieOf('joe@example.com', 'itsjoe');
    const attacker = await cookieOf('sam@example.com', 'itssam');
    const before = stack.appLog.length;
    const home = await send('/app', [victim, attacker]);
    expect(home.status).toBe(200);
    expect(home.body).toMatch(TWO_SESSIONS);
    expect(home.body).not.toContain('sam@example.com');
    const myself = await send('/app/api/v1/myself', [victim, attacker]);
    expect(myself.status).toBe(401);
    expect(JSON.parse(myself.body).message).toMatch(TWO_SESSIONS);
    const warnings = () =>
      stack.appLog
        .slice(before)
        .split('\n')
        .filter((l) => l.includes('two different session cookies'));
    // The app's output comes through a pipe, and may come after the response it wrote: wait for it (at most 5 s).
    await waitFor('the app to log both requests', async () => warnings().length >= 2, 5000).catch(() => undefined);
    const lines = warnings();
    expect(lines).toHaveLength(2); // one per request
    expect(lines[0]).toMatch(/WARN/);
    for (const c of [victim, attacker]) expect(lines.join('\n')).not.toContain(sid(c).slice(0, 12));
  });

  it('logout ends both sessions (at Redis and at nginx) and clears the cookie for the host and the parent domain, at / ', async () => {
    const victim = await cookieOf('joe@example.com', 'itsjoe');
    const attacker = await cookieOf('sam@example.com', 'itssam');
    expect(await keys(victim)).toBeGreaterThan(0);
    expect(await keys(attacker)).toBeGreaterThan(0);
    const out = await send('/app/logout', [victim, attacker], {}, 'POST');
    expect(out.status).toBe(303);
    expect(await keys(victim)).toBe(0);
    expect(await keys(attacker)).toBe(0);
    const cleared = out.headers['set-cookie']!.filter((l) => /^session=;/.test(l) && /Max-Age=0/.test(l));
    expect(cleared.some((l) => !/Domain=/i.test(l) && /Path=\/(;|$)/.test(l))).toBe(true);
    expect(cleared.some((l) => /Domain=demo\.test/i.test(l) && /Path=\/(;|$)/.test(l))).toBe(true);
    expect(cleared.some((l) => /Domain=test(;|$)/i.test(l))).toBe(false); // never a single label
    for (const c of [victim, attacker]) expect((await send('/app/api/v1/group/one/uncacheable/live', [c])).status).toBe(403);
    for (const c of [victim, attacker]) expect((await send('/app/api/v1/group/two/uncacheable/live', [c])).status).toBe(403);
  });

  it('logging in again with both cookies works: both old sessions end, the parent-domain copy is cleared, the new cookie is allowed', async () => {
    const victim = await cookieOf('joe@example.com', 'itsjoe');
    const attacker = await cookieOf('sam@example.com', 'itssam');
    const again = await login(stack.nginx.port, 'joe@example.com', 'itsjoe', {
      Host: HOST,
      Cookie: `session=${victim}; session=${attacker}`,
    });
    expect(again.status).toBe(303);
    // The clearing lines come first (cookieSetBy would find one of them): the new cookie is the line with a value.
    const fresh = again.headers['set-cookie']!.find((l) => /^session=[^;]/.test(l))!
      .split(';')[0]
      .slice('session='.length);
    expect(sessionIdOf(fresh, SECRET, SALT)).not.toBeNull();
    expect(again.headers['set-cookie']!.some((l) => /^session=;/.test(l) && /Domain=demo\.test/i.test(l))).toBe(true);
    // The new cookie is the last line of its name for the host at Path=/: the browser keeps it.
    const hostLines = again.headers['set-cookie']!.filter((l) => l.startsWith('session=') && !/Domain=/i.test(l) && /Path=\/(;|$)/.test(l));
    expect(hostLines[hostLines.length - 1]).toMatch(new RegExp(`^session=${fresh.replace(/[.]/g, '\\.')};`));
    expect(await keys(victim)).toBe(0);
    expect(await keys(attacker)).toBe(0);
    expect((await send('/app/api/v1/group/one/uncacheable/live', [fresh])).status).toBe(200);
    expect((await send('/app', [fresh])).body).toContain("Logged in as 'joe@example.com'");
  });
});

describe.each(DEMO_ADAPTERS)(
  'the __Host- prefix, the app on %s (the recommended name: a sibling subdomain cannot set such a cookie)',
  (adapter) => {
    let stack: DemoStack;
    const NAME = '__Host-session';

    beforeAll(async () => {
      // TLS ends before the app (as at a real proxy): the app trusts X-Forwarded-Proto, and its cookie is Secure.
      stack = await DemoStack.start({
        adapter,
        env: { ...process.env, SESSION_SECRET: SECRET, SESSION_COOKIE_NAME: NAME, SESSION_COOKIE_SECURE: '1' },
      });
    }, 60_000);
    afterAll(async () => {
      await stack?.stop();
    });

    it('logs in with cookieName \'__Host-session\' (Secure, Path=/, no Domain) and nginx authorizes it with cookie_name = "__Host-session"', async () => {
      const res = await login(stack.appPort, 'joe@example.com', 'itsjoe', { 'X-Forwarded-Proto': 'https' });
      expect(res.status).toBe(303);
      const line = res.headers['set-cookie']!.find((l) => l.startsWith(`${NAME}=`))!;
      expect(line).toMatch(/; Path=\/;/);
      expect(line).toMatch(/; Secure/);
      expect(line).not.toMatch(/Domain=/i);
      const value = line.split(';')[0].slice(NAME.length + 1);
      const at = (cookie: string) => request(stack.nginx.port, '/app/api/v1/group/one/uncacheable/live', { headers: { Cookie: cookie } });
      expect((await at(`${NAME}=${value}`)).status).toBe(200);
      expect((await at(`${NAME}=${value}`)).body).toContain('"group_id":"one"');
      // Under the plain name the same value is no session at nginx.
      expect((await at(`session=${value}`)).status).toBe(401);
    });
  },
);

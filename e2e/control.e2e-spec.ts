import Redis from 'ioredis';
import { invalidationChannel, KeyLayout, PROTOCOL_DEFAULTS, readSession, sessionIdOf, sessionKeyList } from '../protocol/testkit';
import { DemoAdapter, DemoStack } from '../stack/demo-stack';
import { mustLogin } from '../stack/demo-login';
import { HttpResponse, request } from '../stack/http-client';
import { expectPurgeOfOneGroup } from './admin-purge';

/**
 * Control from outside the request (PROTOCOL.md section 13) through the
 * demo's nginx (two workers) and its admin page: the administrator removes a
 * user from a group, logs a user out everywhere, sets the not-before mark,
 * purges a group's cache; each is a form POST that returns once nginx has
 * acknowledged it, so the very next request, whichever worker takes it,
 * sees the change, cached resource or not. On one Redis in the v1 layout
 * (sections 3 and 13) and in the compact layout (section 15, where section
 * 13 works one session at a time, as on a cluster: section 14.1). The app
 * on Express, and on Fastify (DEMO_ADAPTER) in the v1 layout: the layouts
 * are beneath the HTTP platform (the library's specs run each layout on
 * both).
 */
describe.each<[KeyLayout, DemoAdapter]>([
  ['v1', 'express'],
  ['compact', 'express'],
  ['v1', 'fastify'],
])('the admin page through nginx, sessions in the %s layout, the app on %s: control from outside the request', (layout, adapter) => {
  let stack: DemoStack;
  let client: Redis;

  beforeAll(async () => {
    stack = await DemoStack.start({
      adapter,
      env: { ...process.env, NGINX_WORKERS: '2', CACHE_SECONDS: '60', SESSION_KEY_LAYOUT: layout },
    });
    client = new Redis(stack.redis.url);
  }, 60_000);
  afterAll(async () => {
    client?.disconnect();
    await stack?.stop();
  });

  const get = (path: string, cookie?: string): Promise<HttpResponse> =>
    request(stack.nginx.port, path, { headers: cookie ? { Cookie: `session=${cookie}` } : {} });
  const adminPost = (path: string, admin: string): Promise<HttpResponse> =>
    request(stack.nginx.port, path, { method: 'POST', headers: { Cookie: `session=${admin}` }, body: '' });
  /** `n` requests at once: spread over both workers. */
  const statuses = async (path: string, cookie: string, n = 10) =>
    (await Promise.all(Array.from({ length: n }, () => get(path, cookie)))).map((r) => r.status);
  const all = (status: number, n = 10) => Array(n).fill(status);
  const login = (email: string, password: string) => mustLogin(stack.nginx.port, email, password);

  it(`keeps each session in the ${layout} layout's keys, which a logout deletes`, async () => {
    const joe = await login('joe@example.com', 'itsjoe');
    const sid = sessionIdOf(joe, stack.env.SESSION_SECRET!, PROTOCOL_DEFAULTS.salt)!;
    const prefix = PROTOCOL_DEFAULTS.keyPrefix;
    // Every key that names the session: the layout's own, and no other.
    expect((await client.keys(`*${sid}*`)).sort()).toEqual(sessionKeyList(prefix, sid, layout).sort());
    const stored = await readSession(client, prefix, sid, layout);
    expect(stored).toMatchObject({ signature: joe.split('.')[1], groups: ['one', 'three'], data: { username: 'joe@example.com' } });
    expect(await statuses('/app/api/v1/group/one/uncacheable/keys', joe)).toEqual(all(200));
    expect(
      (await request(stack.nginx.port, '/app/logout', { method: 'POST', headers: { Cookie: `session=${joe}` }, body: '' })).status,
    ).toBe(303);
    expect(await client.keys(`*${sid}*`)).toEqual([]);
    expect(await statuses('/app/api/v1/group/one/uncacheable/keys', joe)).toEqual(all(403));
  });

  it('is for admins only, and refuses a cross-site form post', async () => {
    const joe = await login('joe@example.com', 'itsjoe');
    const admin = await login('admin@example.com', 'itsadmin');
    expect((await get('/app/admin', joe)).status).toBe(403);
    expect((await get('/app/admin')).status).toBe(401);
    const page = await get('/app/admin', admin);
    expect(page.status).toBe(200);
    expect(page.body).toContain('joe@example.com');
    const crossSite = await request(stack.nginx.port, '/app/admin/users/joe%40example.com/logout-everywhere', {
      method: 'POST',
      headers: { Cookie: `session=${admin}`, 'Sec-Fetch-Site': 'cross-site', Origin: 'https://evil.example' },
      body: '',
    });
    expect(crossSite.status).toBe(403);
    expect(await statuses('/app/api/v1/group/one/uncacheable/x', joe)).toEqual(all(200));
  });

  it('removing joe from group one: both of his clients are refused a cached group-one resource at once; group three still works', async () => {
    const admin = await login('admin@example.com', 'itsadmin');
    const laptop = await login('joe@example.com', 'itsjoe');
    const phone = await login('joe@example.com', 'itsjoe');
    const path = '/app/api/v1/group/one/cacheable/removal';
    await get(path, laptop);
    expect((await get(path, phone)).headers['x-cache-status']).toEqual(['HIT']);
    expect((await get('/app/admin', admin)).body).toMatch(
      /id="user-joe-example-com"><td>joe@example.com<\/td><td><span class="count">[2-9]/,
    );

    const removed = await adminPost('/app/admin/users/joe%40example.com/groups/one/remove', admin);
    expect(removed.status).toBe(303);
    for (const client of [laptop, phone]) {
      expect(await statuses(path, client)).toEqual(all(403));
      expect(await statuses('/app/api/v1/group/three/cacheable/removal', client)).toEqual(all(200));
    }
    // Esteban, still in group one, keeps the cached copy.
    const esteban = await login('esteban@example.com', 'itsesteban');
    expect((await get(path, esteban)).headers['x-cache-status']).toEqual(['HIT']);
  });

  it('logging joe out everywhere: every client of his is refused at once, the admin stays logged in', async () => {
    const admin = await login('admin@example.com', 'itsadmin');
    const laptop = await login('joe@example.com', 'itsjoe');
    const phone = await login('joe@example.com', 'itsjoe');
    const path = '/app/api/v1/group/three/cacheable/everywhere';
    await get(path, laptop);
    expect((await get(path, phone)).headers['x-cache-status']).toEqual(['HIT']);
    expect((await adminPost('/app/admin/users/joe%40example.com/logout-everywhere', admin)).status).toBe(303);
    for (const client of [laptop, phone]) {
      expect(await statuses(path, client)).toEqual(all(403));
      expect((await get('/app/api/v1/myself', client)).status).toBe(401);
    }
    expect((await get('/app/admin', admin)).body).toMatch(/joe@example.com<\/td><td><span class="count">0</);
    // Logging the admin out elsewhere keeps the page's own session.
    const otherAdmin = await login('admin@example.com', 'itsadmin');
    expect((await adminPost('/app/admin/users/admin%40example.com/logout-everywhere', admin)).status).toBe(303);
    expect((await get('/app/admin', admin)).status).toBe(200);
    expect((await get('/app/admin', otherAdmin)).status).toBe(401);
  });

  it('purging group one’s cache: the next member’s request is a MISS, then HITs again; other groups keep their HITs', async () => {
    await expectPurgeOfOneGroup({ get, post: adminPost, login });
    const admin = await login('admin@example.com', 'itsadmin');
    expect((await adminPost('/app/admin/groups/nope/purge-cache', admin)).status).toBe(400);
  });

  it('an acknowledgement that does not come: the admin page shows the partial result as a warning, not as done', async () => {
    const admin = await login('admin@example.com', 'itsadmin');
    // A subscribed reader that never acknowledges (a stuck nginx): the wait times out.
    const silent = new Redis(stack.redis.url);
    try {
      await silent.subscribe(invalidationChannel(PROTOCOL_DEFAULTS.keyPrefix));
      const purged = await adminPost('/app/admin/groups/one/purge-cache', admin);
      expect(purged.status).toBe(303);
      const location = purged.headers.location[0];
      expect(location).toContain('warning=');
      const page = (await get(location, admin)).body;
      expect(page).not.toContain('id="done"');
      const warning =
        /<p id="warning" role="alert"><strong>Warning:<\/strong> group one: cache generation \d+, but NOT confirmed: only (\d+) of (\d+) subscribed nginx acknowledged it/.exec(
          page,
        );
      expect(warning).not.toBeNull();
      // Both workers of nginx acknowledged; the silent reader did not.
      expect(Number(warning![2]) - Number(warning![1])).toBe(1);
    } finally {
      silent.disconnect();
    }
    // With every reader acknowledging again, the same action is done, without a warning.
    const again = await adminPost('/app/admin/groups/one/purge-cache', admin);
    expect(again.headers.location[0]).toContain('done=');
    const page = (await get(again.headers.location[0], admin)).body;
    expect(page).toMatch(/<p id="done">group one: cache generation \d+<\/p>/);
    expect(page).not.toContain('id="warning"');
  });

  it('the not-before mark: every session issued before it is refused at once, at nginx and at the app; new logins work', async () => {
    const admin = await login('admin@example.com', 'itsadmin');
    const joe = await login('joe@example.com', 'itsjoe');
    const path = '/app/api/v1/group/three/cacheable/not-before';
    await get(path, joe);
    expect((await get(path, joe)).headers['x-cache-status']).toEqual(['HIT']);
    const marked = await adminPost('/app/admin/not-before', admin);
    expect(marked.status).toBe(303);
    expect(await statuses(path, joe)).toEqual(all(403));
    expect((await get('/app/api/v1/myself', joe)).status).toBe(401);
    expect((await get('/app/admin', admin)).status).toBe(401);
    await new Promise((resolve) => setTimeout(resolve, 5)); // a new id's issue time is after the mark
    const again = await login('joe@example.com', 'itsjoe');
    expect(await statuses(path, again)).toEqual(all(200));
  });
});

import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Browser, chromium, Page } from 'playwright-core';
import { DEMO_ADAPTERS, DemoStack } from '../stack/demo-stack';
import { waitFor } from '../stack/wait';

const SCREENSHOTS = resolve(__dirname, '..', 'test-results', 'screenshots');

// On each of the app's HTTP platforms (DEMO_ADAPTER); screenshots in test-results/screenshots/<adapter>/.
describe.each(DEMO_ADAPTERS)('a real browser through nginx, the app on %s', (adapter) => {
  let stack: DemoStack;
  let browser: Browser;
  let page: Page;

  const shot = (name: string) => page.screenshot({ path: join(SCREENSHOTS, adapter, `${name}.png`), fullPage: true });

  beforeAll(async () => {
    mkdirSync(join(SCREENSHOTS, adapter), { recursive: true });
    stack = await DemoStack.start({ adapter });
    // Debian's Chromium, with the flags this closed network needs; Playwright gives it a fresh profile.
    browser = await chromium.launch({
      executablePath: '/usr/bin/chromium',
      args: [
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        // *.demo.test is this nginx: a site with a parent domain, for cookie tossing.
        '--host-resolver-rules=MAP *.demo.test 127.0.0.1',
      ],
    });
    page = await (await browser.newContext()).newPage();
  }, 60_000);

  afterAll(async () => {
    await browser?.close();
    await stack?.stop();
  });

  it('logs in, sees its group page, is refused another group, logs out, and is refused again', async () => {
    await page.goto(`${stack.url}/app/login`);
    await page.fill('input[name=email]', 'joe@example.com');
    await page.fill('input[name=password]', 'itsjoe');
    await shot('1-login-form');
    await Promise.all([page.waitForURL(`${stack.url}/app`), page.click('input[type=submit]')]);
    expect(await page.textContent('#status')).toBe("Logged in as 'joe@example.com'");
    const cookies = await page.context().cookies();
    expect(cookies.find((c) => c.name === 'session')).toMatchObject({ httpOnly: true, sameSite: 'Lax', path: '/' });
    await shot('2-logged-in');

    const own = await page.goto(`${stack.url}/app/group/one/cacheable/summary`);
    expect(own!.status()).toBe(200);
    expect(await page.textContent('h1')).toBe('Group one: summary');
    await shot('3-own-group');

    const other = await page.goto(`${stack.url}/app/group/two/cacheable/summary`);
    expect(other!.status()).toBe(403);
    await shot('4-other-group-refused');

    // A link to /app/logout only shows the form: logging out is a POST (issue 12, finding 3).
    await page.goto(`${stack.url}/app/logout`);
    expect(await page.textContent('h1')).toBe('Log out');
    await page.goto(`${stack.url}/app`);
    expect(await page.textContent('#status')).toBe("Logged in as 'joe@example.com'");
    await page.goto(`${stack.url}/app/logout`);
    await shot('5-logout-form');
    // The browser's own POST (Sec-Fetch-Site: same-origin) passes the cross-site check.
    await Promise.all([page.waitForURL(`${stack.url}/app`), page.click('form[action="/app/logout"] button')]);
    expect(await page.textContent('#status')).toBe('You are not logged in!');
    expect((await page.context().cookies()).find((c) => c.name === 'session')).toBeUndefined();

    const after = await page.goto(`${stack.url}/app/group/one/cacheable/summary`);
    expect(after!.status()).toBe(401);
    await shot('6-after-logout');
  }, 60_000);

  it('login CSRF: a page of another site that posts the login form gets a 403, and the browser no session', async () => {
    const context = await browser.newContext();
    const victim = await context.newPage();
    // The attacker's page, served by Playwright in place of a real site: it posts the attacker's credentials here.
    await context.route('http://attacker.example/**', (route) =>
      route.fulfill({
        contentType: 'text/html',
        body: `<form method="post" action="${stack.url}/app/login"><input name="email" value="sam@example.com"><input name="password" value="itssam"><button>Win a prize</button></form>`,
      }),
    );
    await victim.goto('http://attacker.example/prize');
    const [answer] = await Promise.all([victim.waitForResponse(`${stack.url}/app/login`), victim.click('button')]);
    expect(answer.status()).toBe(403);
    expect(await answer.text()).toContain('Cross-site request refused: a POST that another site sent (Sec-Fetch-Site: cross-site).');
    expect(answer.headers()['set-cookie']).toBeUndefined();
    expect((await context.cookies(stack.url)).find((c) => c.name === 'session')).toBeUndefined();
    await context.close();
  }, 60_000);
  it('the admin page: joe, logged in in another browser, is removed from group one and then logged out everywhere', async () => {
    const joeContext = await browser.newContext();
    const joe = await joeContext.newPage();
    const loginAs = async (p: Page, email: string, password: string) => {
      await p.goto(`${stack.url}/app/login`);
      await p.fill('input[name=email]', email);
      await p.fill('input[name=password]', password);
      await Promise.all([p.waitForURL(`${stack.url}/app`), p.click('input[type=submit]')]);
    };
    await loginAs(joe, 'joe@example.com', 'itsjoe');
    expect((await joe.goto(`${stack.url}/app/group/one/cacheable/admin-demo`))!.status()).toBe(200);
    expect((await joe.goto(`${stack.url}/app/group/one/cacheable/admin-demo`))!.headers()['x-cache-status']).toBe('HIT');

    const adminContext = await browser.newContext();
    const admin = await adminContext.newPage();
    await loginAs(admin, 'admin@example.com', 'itsadmin');
    await admin.goto(`${stack.url}/app/admin`);
    expect(await admin.textContent('#user-joe-example-com .count')).toBe('1');
    expect(await admin.textContent('#user-joe-example-com .session')).toContain('groups one, three');
    await admin.screenshot({ path: join(SCREENSHOTS, adapter, '7-admin-page.png'), fullPage: true });

    // The browser's own POST passes the cross-site check; it returns once nginx acknowledged.
    await Promise.all([admin.waitForURL(/\/app\/admin\?done=/), admin.click('#remove-joe-example-com-one')]);
    expect(await admin.textContent('#done')).toBe('removed joe@example.com from one in 1 session(s)');
    expect(await admin.textContent('#user-joe-example-com .session')).toContain('groups three');
    await admin.screenshot({ path: join(SCREENSHOTS, adapter, '8-admin-removed-from-one.png'), fullPage: true });
    expect((await joe.goto(`${stack.url}/app/group/one/cacheable/admin-demo`))!.status()).toBe(403);
    expect((await joe.goto(`${stack.url}/app/group/three/cacheable/admin-demo`))!.status()).toBe(200);

    await Promise.all([admin.waitForURL(/\/app\/admin\?done=/), admin.click('#logout-joe-example-com')]);
    expect(await admin.textContent('#user-joe-example-com .count')).toBe('0');
    expect((await joe.goto(`${stack.url}/app/group/three/cacheable/admin-demo`))!.status()).toBe(403);
    await joe.goto(`${stack.url}/app`);
    expect(await joe.textContent('#status')).toBe('You are not logged in!');
    await joe.screenshot({ path: join(SCREENSHOTS, adapter, '9-joe-logged-out-everywhere.png'), fullPage: true });
    await joeContext.close();
    await adminContext.close();
  }, 60_000);

  it('login throttling: a stranger’s wrong passwords ban the stranger (429 page), not esteban; the admin lifts the ban', async () => {
    const loginAs = async (p: Page, email: string, password: string) => {
      await p.goto(`${stack.url}/app/login`);
      await p.fill('input[name=email]', email);
      await p.fill('input[name=password]', password);
      const [answer] = await Promise.all([p.waitForResponse(`${stack.url}/app/login`), p.click('input[type=submit]')]);
      return answer;
    };
    // The stranger's browser, at another address (nginx's X-Forwarded-For, which the demo trusts from loopback).
    const strangerContext = await browser.newContext({ extraHTTPHeaders: { 'X-Forwarded-For': '203.0.113.99' } });
    const stranger = await strangerContext.newPage();
    for (let i = 0; i < 3; i++) expect((await loginAs(stranger, 'esteban@example.com', 'guess' + i)).status()).toBe(403);
    const banned = await loginAs(stranger, 'esteban@example.com', 'itsesteban');
    expect(banned.status()).toBe(429);
    expect(Number(banned.headers()['retry-after'])).toBeGreaterThan(0);
    expect(await stranger.textContent('#error')).toMatch(/^Too many failed logins\. Try again in \d+ seconds\.$/);
    await stranger.screenshot({ path: join(SCREENSHOTS, adapter, '10-login-throttled.png'), fullPage: true });

    const estebanContext = await browser.newContext();
    const esteban = await estebanContext.newPage();
    await loginAs(esteban, 'esteban@example.com', 'itsesteban');
    expect(await esteban.textContent('#status')).toBe("Logged in as 'esteban@example.com'");

    const adminContext = await browser.newContext();
    const admin = await adminContext.newPage();
    await loginAs(admin, 'admin@example.com', 'itsadmin');
    await admin.goto(`${stack.url}/app/admin`);
    expect(await admin.textContent('#bans .ban')).toContain('esteban@example.com at 203.0.113.99 until ');
    await admin.screenshot({ path: join(SCREENSHOTS, adapter, '11-admin-login-bans.png'), fullPage: true });
    await Promise.all([admin.waitForURL(/\/app\/admin\?done=/), admin.click('#lift-ban-0')]);
    expect(await admin.textContent('#done')).toBe('lifted 1 login ban(s) of esteban@example.com');
    expect(await admin.textContent('#bans')).toBe('none');

    expect((await loginAs(stranger, 'esteban@example.com', 'itsesteban')).status()).toBe(303);
    expect(await stranger.textContent('#status')).toBe("Logged in as 'esteban@example.com'");
    await strangerContext.close();
    await estebanContext.close();
    await adminContext.close();
  }, 60_000);

  it('your sessions: joe signs out his phone, then every other session, from the page; nginx refuses them at once', async () => {
    const loginAs = async (p: Page) => {
      await p.goto(`${stack.url}/app/login`);
      await p.fill('input[name=email]', 'joe@example.com');
      await p.fill('input[name=password]', 'itsjoe');
      await Promise.all([p.waitForURL(`${stack.url}/app`), p.click('input[type=submit]')]);
    };
    const device = async (agent: string) => {
      const context = await browser.newContext({ userAgent: agent });
      const p = await context.newPage();
      await loginAs(p);
      return { context, page: p };
    };
    const laptop = await device('Laptop Chromium');
    const phone = await device('Phone Chromium');
    const tablet = await device('Tablet Chromium');
    // Each device has a cached group page: nginx must refuse an ended session even there.
    for (const d of [phone, tablet]) {
      expect((await d.page.goto(`${stack.url}/app/group/one/cacheable/own-sessions`))!.status()).toBe(200);
    }

    await Promise.all([laptop.page.waitForURL(`${stack.url}/app/sessions`), laptop.page.click('#your-sessions')]);
    expect(await laptop.page.textContent('#count')).toBe('3');
    const items = await laptop.page.$$eval('#sessions li', (lis) => lis.map((li) => li.textContent ?? ''));
    expect(items[0]).toMatch(/from 127\.0\.0\.1, Laptop Chromium; last seen .* this session$/);
    expect(items[1]).toContain('Phone Chromium');
    expect(items[2]).toContain('Tablet Chromium');
    await laptop.page.screenshot({ path: join(SCREENSHOTS, adapter, '12-your-sessions.png'), fullPage: true });

    // Sign out the phone (the second in the list); the page comes back once nginx has applied it.
    await Promise.all([laptop.page.waitForURL(/\/app\/sessions\?done=/), laptop.page.click('#sign-out-1')]);
    expect(await laptop.page.textContent('#done')).toBe('signed out 1 session');
    expect(await laptop.page.textContent('#count')).toBe('2');
    expect((await phone.page.goto(`${stack.url}/app/group/one/cacheable/own-sessions`))!.status()).toBe(403);
    expect((await tablet.page.goto(`${stack.url}/app/group/one/cacheable/own-sessions`))!.status()).toBe(200);

    await Promise.all([laptop.page.waitForURL(/\/app\/sessions\?done=/), laptop.page.click('#sign-out-others')]);
    expect(await laptop.page.textContent('#done')).toBe('signed out 1 other session(s)');
    expect(await laptop.page.textContent('#count')).toBe('1');
    await laptop.page.screenshot({ path: join(SCREENSHOTS, adapter, '13-your-sessions-others-signed-out.png'), fullPage: true });
    expect((await tablet.page.goto(`${stack.url}/app/group/one/cacheable/own-sessions`))!.status()).toBe(403);
    await tablet.page.goto(`${stack.url}/app`);
    expect(await tablet.page.textContent('#status')).toBe('You are not logged in!');
    expect((await laptop.page.goto(`${stack.url}/app/group/one/cacheable/own-sessions`))!.status()).toBe(200);
    for (const d of [laptop, phone, tablet]) await d.context.close();
  }, 60_000);

  it("nginx's refusals explain themselves: not logged in (with a link to log in), not a member, session ended, sessions unavailable", async () => {
    const context = await browser.newContext();
    const p = await context.newPage();
    const reason = async () => ({
      door: await p.textContent('#door'),
      reason: await p.getAttribute('#reason', 'data-reason'),
      text: await p.textContent('#reason'),
    });

    const anonymous = await p.goto(`${stack.url}/app/group/one/cacheable/summary`);
    expect(anonymous!.status()).toBe(401);
    expect(await reason()).toEqual({ door: expect.stringContaining('nginx'), reason: 'no_session', text: 'You are not logged in.' });
    await p.screenshot({ path: join(SCREENSHOTS, adapter, '14-refused-not-logged-in.png'), fullPage: true });
    await Promise.all([p.waitForURL(`${stack.url}/app/login`), p.click('a[href="/app/login"]')]);
    await p.fill('input[name=email]', 'joe@example.com');
    await p.fill('input[name=password]', 'itsjoe');
    await Promise.all([p.waitForURL(`${stack.url}/app`), p.click('input[type=submit]')]);

    const other = await p.goto(`${stack.url}/app/group/two/uncacheable/activity`);
    expect(other!.status()).toBe(403);
    expect(await reason()).toMatchObject({ reason: 'not_member', text: expect.stringContaining("group 'two'") });
    await p.screenshot({ path: join(SCREENSHOTS, adapter, '15-refused-not-a-member.png'), fullPage: true });
    // JSON for a client that asks for it.
    const api = await p.request.get(`${stack.url}/app/api/v1/group/two/uncacheable/x`, { headers: { Accept: 'application/json' } });
    expect(api.status()).toBe(403);
    expect(await api.json()).toMatchObject({ statusCode: 403, door: 'nginx', reason: 'not_member' });

    await stack.redis.stop();
    try {
      const down = await p.goto(`${stack.url}/app/group/one/uncacheable/activity`);
      expect(down!.status()).toBe(503);
      expect(await reason()).toMatchObject({ reason: 'unavailable', text: expect.stringContaining('try again') });
      await p.screenshot({ path: join(SCREENSHOTS, adapter, '16-refused-unavailable.png'), fullPage: true });
    } finally {
      await stack.redis.resume();
    }
    // The restarted Redis is empty: a fresh login, then every session issued before now ends (the admin's not-before).
    await waitFor('the app back', async () => (await p.request.get(`${stack.url}/app/login`)).status() === 200, 10_000);
    const logIn = async (page: Page, email: string, password: string) => {
      await page.goto(`${stack.url}/app/login`);
      await page.fill('input[name=email]', email);
      await page.fill('input[name=password]', password);
      await Promise.all([page.waitForURL(`${stack.url}/app`), page.click('input[type=submit]')]);
    };
    await logIn(p, 'joe@example.com', 'itsjoe');
    const adminContext = await browser.newContext();
    const admin = await adminContext.newPage();
    await logIn(admin, 'admin@example.com', 'itsadmin');
    await admin.goto(`${stack.url}/app/admin`);
    await Promise.all([admin.waitForURL(`${stack.url}/app/login`), admin.click('#not-before')]);
    await adminContext.close();
    const ended = await p.goto(`${stack.url}/app/group/one/uncacheable/activity`);
    expect(ended!.status()).toBe(403);
    expect(await reason()).toMatchObject({ reason: 'session_ended', text: expect.stringContaining('Your session has ended') });
    await p.screenshot({ path: join(SCREENSHOTS, adapter, '17-refused-session-ended.png'), fullPage: true });
    await context.close();
  }, 60_000);

  it('cookie tossing: a sibling site sets a second session cookie for the parent domain; the pages say so, and logging out clears it', async () => {
    const port = stack.nginx.port;
    const site = `http://app.demo.test:${port}`;
    const context = await browser.newContext();
    const p = await context.newPage();
    await p.goto(`${site}/app/login`);
    await p.fill('input[name=email]', 'joe@example.com');
    await p.fill('input[name=password]', 'itsjoe');
    await Promise.all([p.waitForURL(`${site}/app`), p.click('input[type=submit]')]);
    // evil.demo.test logs in as sam and sets its own signed cookie for Domain=demo.test (as it may, for its parent domain).
    const evil = await context.newPage();
    await evil.goto(`http://evil.demo.test:${port}/app/login`);
    await evil.fill('input[name=email]', 'sam@example.com');
    await evil.fill('input[name=password]', 'itssam');
    await Promise.all([evil.waitForURL(/\/app$/), evil.click('input[type=submit]')]);
    const sams = (await context.cookies(`http://evil.demo.test:${port}`)).find((c) => c.name === 'session')!;
    await context.addCookies([{ name: 'session', value: sams.value, domain: '.demo.test', path: '/', httpOnly: true }]);
    await evil.close();

    const refused = await p.goto(`${site}/app/group/one/uncacheable/activity`);
    expect(refused!.status()).toBe(403);
    expect(await p.getAttribute('#reason', 'data-reason')).toBe('two_sessions');
    await p.screenshot({ path: join(SCREENSHOTS, adapter, '18-refused-two-sessions.png'), fullPage: true });
    await p.goto(`${site}/app`);
    expect(await p.textContent('#status')).toContain('two different session cookies');
    expect(await p.textContent('body')).not.toContain('sam@example.com');
    await Promise.all([p.waitForURL(`${site}/app`), p.click('form[action="/app/logout"] button')]);
    expect(await p.textContent('#status')).toBe('You are not logged in!');
    expect((await context.cookies(site)).filter((c) => c.name === 'session')).toEqual([]);
    await p.goto(`${site}/app/login`);
    await p.fill('input[name=email]', 'joe@example.com');
    await p.fill('input[name=password]', 'itsjoe');
    await Promise.all([p.waitForURL(`${site}/app`), p.click('input[type=submit]')]);
    expect(await p.textContent('#status')).toBe("Logged in as 'joe@example.com'");
    expect((await p.goto(`${site}/app/group/one/uncacheable/activity`))!.status()).toBe(200);
    await context.close();
  }, 60_000);
});

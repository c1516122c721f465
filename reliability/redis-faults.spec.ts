/**
 * Redis faults under load, on the demo stack, with the library's test app on
 * Fastify as a third door on the same Redis (the demo app runs on Express):
 *  - Redis killed for ~2 s under a bounded load (8 clients through nginx,
 *    8 at the app, 4 at the Fastify app): 503 for what cannot be decided,
 *    never a 200 for a non-member, never a 500; one log line per outage;
 *    recovery within 2 s.
 *  - Redis frozen (SIGSTOP): requests fail in bounded time on every side
 *    (nginx read_timeout 500 ms, the apps' ioredis commandTimeout 1 s), and
 *    recover at once on SIGCONT.
 * The test Redis persists nothing: after a restart it is empty, so the
 * sessions the load uses are written back (DUMP/RESTORE) right after it is up.
 * Sessions in the v1 layout (three keys each) and in the compact one (one key,
 * PROTOCOL.md section 15).
 */
import type { INestApplication, LoggerService } from '@nestjs/common';
import { randomBytes } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import Redis from 'ioredis';
import { createTestApp } from '../libs/shared-session/test/test-app';
import { cookieValue, KeyLayout, PROTOCOL_DEFAULTS, sessionIdOf, sessionKeyList, userIndexKey } from '../protocol/testkit';
import { login, loginRequest, mustLogin } from '../stack/demo-login';
import type { DemoStack } from '../stack/demo-stack';
import { HttpConnection, HttpResponse, requestBytes, statusCounts } from '../stack/http-client';
import { percentile } from '../stack/percentile';
import { sleep, waitFor } from '../stack/wait';
import { nginxWorkers } from './support/process-stats';
import { crashLines, SALT, SECRET, startDemoStack } from './support/stack';

const PREFIX = PROTOCOL_DEFAULTS.keyPrefix; // the demo's
const GROUP_PATH = '/app/api/v1/group/one/cacheable/under-load';
const APP_PATH = '/app/api/v1/group/one/uncacheable/under-load';
/** The test app's route for members of group "one" (libs/shared-session/test/test-app.ts). */
const FASTIFY_PATH = '/groups/one/report';
const LOAD_MS = 6_500;
const STOP_AFTER_MS = 1_500;
const OUTAGE_MS = 2_000;
const RECOVERY_BOUND_MS = 2_000;
const MAX_REQUESTS_PER_CLIENT = 20_000;

type Who = 'joe' | 'sam' | 'login';
interface Sample extends HttpResponse {
  who: Who;
}

const countMatches = (text: string, re: RegExp) => (text.match(re) ?? []).length;

describe.each<KeyLayout>(['v1', 'compact'])('Redis faults under load, sessions in the %s layout', (layout) => {
  let stack: DemoStack;
  let fastify: INestApplication;
  let fastifyPort: number;
  /** What the Fastify app logged (its logger is Nest's, in this process). */
  let fastifyLog: string[] = [];
  let joe: string; // member of "one"
  let sam: string; // not a member of "one"
  const freshCookie = () => cookieValue(randomBytes(18).toString('base64url'), SECRET, SALT);

  /** The Redis keys of a session, dumped so they can be put back after Redis restarts empty. */
  async function snapshot(cookies: string[]): Promise<[string, number, Buffer][]> {
    const admin = new Redis(stack.redis.url);
    try {
      const out: [string, number, Buffer][] = [];
      for (const cookie of cookies) {
        for (const key of sessionKeyList(PREFIX, sessionIdOf(cookie, SECRET, SALT)!, layout)) {
          const dump = await admin.dumpBuffer(key);
          if (dump) out.push([key, await admin.pttl(key), dump]);
        }
      }
      return out;
    } finally {
      admin.disconnect();
    }
  }

  async function restore(keys: [string, number, Buffer][]): Promise<void> {
    const admin = new Redis(stack.redis.url);
    try {
      const tx = admin.multi();
      for (const [key, ttl, dump] of keys) tx.restore(key, ttl > 0 ? ttl : 0, dump, 'REPLACE');
      await tx.exec();
    } finally {
      admin.disconnect();
    }
  }

  const get = (path: string, cookie?: string) => requestBytes(path, { headers: cookie ? { Cookie: `session=${cookie}` } : {} });
  const samLogin = () => loginRequest('sam@example.com', 'itssam');
  const fastifyLogin = (username: string) =>
    requestBytes('/login', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ username, groups: ['one'] }),
    });

  beforeAll(async () => {
    stack = await startDemoStack({ layout });
    const logger: LoggerService = {
      log: (m: unknown) => void fastifyLog.push(String(m)),
      warn: (m: unknown) => void fastifyLog.push(String(m)),
      error: (m: unknown, ...rest: unknown[]) =>
        void fastifyLog.push(
          [m, ...rest]
            .filter((x) => x !== undefined)
            .map(String)
            .join(' '),
        ),
    };
    fastify = await createTestApp({ secret: SECRET, salt: SALT, keyLayout: layout, redis: stack.redis.url }, logger, 'fastify');
    await fastify.listen(0, '127.0.0.1');
    fastifyPort = (fastify.getHttpServer().address() as AddressInfo).port;
    joe = await mustLogin(stack.nginx.port, 'joe@example.com', 'itsjoe');
    sam = await mustLogin(stack.nginx.port, 'sam@example.com', 'itssam');
    // Fill nginx's cache, so that nginx's own answers (not the app's) are what the load sees.
    const conn = new HttpConnection(stack.nginx.port);
    expect((await conn.request(get(GROUP_PATH, joe))).status).toBe(200);
    expect((await conn.request(get(GROUP_PATH, joe))).headers['x-cache-status']).toEqual(['HIT']);
    conn.close();
  }, 60_000);
  afterAll(async () => {
    if (stack?.redis.pid) {
      try {
        process.kill(stack.redis.pid, 'SIGCONT');
      } catch {
        // not running
      }
    }
    await fastify?.close();
    await stack?.stop();
  });

  it('Redis stopped for ~2 s under load: 503s, never a 200 for a non-member, never a 500; one log line; recovery within 2 s', async () => {
    const keys = await snapshot([joe, sam]);
    expect(keys.length).toBe(layout === 'compact' ? 2 : 6); // data, signature and groups of each; or its one key
    const workersBefore = nginxWorkers(stack.nginx.pid!);
    const logStart = stack.appLog.length;
    fastifyLog = [];

    const t0 = Date.now();
    const deadline = t0 + LOAD_MS;
    const atNginx: Sample[] = [];
    const atApp: Sample[] = [];
    const atFastify: Sample[] = [];

    /** One client: keep-alive, one request at a time, until the deadline (or the request bound). */
    async function client(port: number, into: Sample[], pick: (i: number) => { who: Who; req: Buffer }): Promise<void> {
      const conn = new HttpConnection(port, 5_000);
      for (let i = 0; i < MAX_REQUESTS_PER_CLIENT && Date.now() < deadline; i++) {
        const { who, req } = pick(i);
        into.push({ who, ...(await conn.request(req)) });
      }
      conn.close();
    }
    const nginxClients = Array.from({ length: 8 }, (_x, c) =>
      client(stack.nginx.port, atNginx, (i) =>
        (i + c) % 2 === 0 ? { who: 'joe', req: get(GROUP_PATH, joe) } : { who: 'sam', req: get(GROUP_PATH, sam) },
      ),
    );
    const appClients = Array.from({ length: 8 }, (_x, c) =>
      client(stack.appPort, atApp, (i) =>
        i % 10 === 9
          ? { who: 'login', req: samLogin() }
          : (i + c) % 2 === 0
            ? { who: 'joe', req: get(APP_PATH, joe) }
            : { who: 'sam', req: get(APP_PATH, sam) },
      ),
    );

    const fastifyClients = Array.from({ length: 4 }, (_x, c) =>
      client(fastifyPort, atFastify, (i) =>
        i % 10 === 9
          ? { who: 'login', req: fastifyLogin('fastify-login@example.com') }
          : (i + c) % 2 === 0
            ? { who: 'joe', req: get(FASTIFY_PATH, joe) }
            : { who: 'sam', req: get(FASTIFY_PATH, sam) },
      ),
    );

    // The fault: Redis killed, down for OUTAGE_MS, started again (empty), the two sessions written back.
    await sleep(STOP_AFTER_MS);
    const stopAt = Date.now();
    await stack.redis.stop();
    await sleep(OUTAGE_MS - (Date.now() - stopAt));
    const restartAt = Date.now();
    await stack.redis.resume();
    const resumeAt = Date.now(); // Redis answers PING
    await restore(keys);
    const restoredAt = Date.now();
    await Promise.all([...nginxClients, ...appClients, ...fastifyClients]);

    const rel = (t: number) => t - t0;
    console.log(
      `Redis fault timeline (ms from load start): stop ${rel(stopAt)}, restart ${rel(restartAt)}, answering ${rel(resumeAt)}, sessions written back ${rel(restoredAt)}, load end ${rel(Date.now())}`,
    );

    for (const [name, samples, bad] of [
      ['nginx', atNginx, (r: Sample) => ![200, 403, 503].includes(r.status)],
      ['app', atApp, (r: Sample) => (r.who === 'login' ? ![303, 503].includes(r.status) : ![200, 401, 403, 503].includes(r.status))],
      [
        'Fastify app',
        atFastify,
        (r: Sample) => (r.who === 'login' ? ![204, 503].includes(r.status) : ![200, 401, 403, 503].includes(r.status)),
      ],
    ] as const) {
      const byWho: Record<string, Record<string, number>> = {};
      for (const who of ['joe', 'sam', 'login']) {
        const mine = samples.filter((r) => r.who === who);
        if (mine.length) byWho[who] = statusCounts(mine);
      }
      const failures = samples.filter((r) => r.status === 503);
      const first = failures.length ? Math.min(...failures.map((r) => r.endedAt)) : NaN;
      const last = failures.length ? Math.max(...failures.map((r) => r.endedAt)) : NaN;
      const lastStarted = failures.length ? Math.max(...failures.map((r) => r.startedAt)) : NaN;
      const durations = failures.map((r) => r.endedAt - r.startedAt);
      console.log(
        `${name} under the Redis fault: ${samples.length} requests ${JSON.stringify(byWho)}; ` +
          `error window: first 503 at stop${first - stopAt >= 0 ? '+' : ''}${first - stopAt} ms, last 503 at back${last - resumeAt >= 0 ? '+' : ''}${last - resumeAt} ms ` +
          `(last failing request sent at back${lastStarted - resumeAt >= 0 ? '+' : ''}${lastStarted - resumeAt} ms); 503 answered in p50 ${percentile(durations, 50)} / max ${Math.max(0, ...durations)} ms`,
      );
      // Only the statuses the protocol allows; never a 500, never a dropped connection.
      expect(
        samples
          .filter(bad)
          .slice(0, 10)
          .map((r) => `${r.who} ${r.status} ${r.error ?? ''}`),
      ).toEqual([]);
      // The non-member is never let in, however the fault falls.
      expect(samples.filter((r) => r.who === 'sam' && r.status === 200).length).toBe(0);
      // The fault was seen...
      expect(failures.length).toBeGreaterThan(0);
      // ...only while Redis was away (a request in flight at the kill may end just after it)...
      expect(failures.filter((r) => r.endedAt < stopAt).length).toBe(0);
      // ...and both sides recover within 2 s of Redis being back.
      expect(
        failures.filter((r) => r.startedAt > resumeAt + RECOVERY_BOUND_MS).map((r) => `${r.who} sent at back+${r.startedAt - resumeAt} ms`),
      ).toEqual([]);
      // The member is refused (403 at nginx, 401 at the app) only while Redis, restarted empty, did not have the session yet
      // (plus up to 2 s if nginx keeps decisions for a while).
      const refusedMember = samples.filter((r) => r.who === 'joe' && (r.status === 403 || r.status === 401));
      expect(refusedMember.filter((r) => r.endedAt < stopAt || r.startedAt > restoredAt + RECOVERY_BOUND_MS).length).toBe(0);
      // After the window, the member is served again.
      expect(samples.filter((r) => r.who === 'joe' && r.startedAt > restoredAt + RECOVERY_BOUND_MS).every((r) => r.status === 200)).toBe(
        true,
      );
      expect(samples.some((r) => r.who === 'joe' && r.status === 200 && r.startedAt > restoredAt)).toBe(true);
    }

    // Logins during the outage got 503, with no cookie; after it, they work again.
    expect(atApp.some((r) => r.who === 'login' && r.status === 503)).toBe(true);
    expect(atApp.filter((r) => r.who === 'login' && r.status === 503 && r.headers['set-cookie']).length).toBe(0);
    expect(atApp.some((r) => r.who === 'login' && r.status === 303 && r.startedAt > resumeAt)).toBe(true);
    expect(atFastify.some((r) => r.who === 'login' && r.status === 503)).toBe(true);
    expect(atFastify.filter((r) => r.who === 'login' && r.status === 503 && r.headers['set-cookie']).length).toBe(0);
    expect(atFastify.some((r) => r.who === 'login' && r.status === 204 && r.startedAt > resumeAt)).toBe(true);

    // The app: one "Redis unavailable" line for the outage (not one per request), no unhandled rejection, still up.
    const log = stack.appLog.slice(logStart);
    const faultLines = countMatches(log, /Redis unavailable/g);
    console.log(
      `app log during the fault: ${faultLines} "Redis unavailable", ${countMatches(log, /reachable again/g)} "reachable again", ${countMatches(log, /not saved/g)} "not saved" warnings, ${log.split('\n').length} lines`,
    );
    expect(faultLines).toBe(1);
    expect(log).toMatch(/reachable again/);
    expect(stack.appLog).not.toMatch(/Unhandled|unhandled rejection|ExceptionsHandler/i);
    expect(stack.app.exitCode).toBeNull();
    expect((await login(stack.appPort, 'joe@example.com', 'itsjoe')).status).toBe(303);
    // The Fastify app too: one line for the outage, no unhandled error.
    console.log(`Fastify app log during the fault: ${JSON.stringify(fastifyLog.map((l) => l.slice(0, 120)))}`);
    expect(fastifyLog.filter((l) => /Redis unavailable/.test(l)).length).toBe(1);
    expect(fastifyLog.join('\n')).not.toMatch(/Unhandled|unhandled rejection|ExceptionsHandler/i);

    // nginx: no worker crash.
    expect(crashLines(stack.nginx.errorLog())).toEqual([]);
    expect(nginxWorkers(stack.nginx.pid!)).toEqual(workersBefore);
  }, 40_000);

  it('Redis frozen (SIGSTOP): every door fails in bounded time, then recovers on SIGCONT', async () => {
    const redisPid = stack.redis.pid!;
    const logStart = stack.appLog.length;
    fastifyLog = [];
    // Before: an unknown (validly signed) session is refused after a Redis look-up.
    const probe = new HttpConnection(stack.nginx.port);
    expect((await probe.request(get(GROUP_PATH, freshCookie()))).status).toBe(403);
    probe.close();

    /** `n` concurrent requests on fresh connections; each cookie is new, so no cached decision can answer it. */
    const burst = (port: number, n: number, make: () => Buffer) =>
      Promise.all(
        Array.from({ length: n }, async () => {
          const conn = new HttpConnection(port, 10_000);
          try {
            return await conn.request(make());
          } finally {
            conn.close();
          }
        }),
      );
    const took = (rs: HttpResponse[]) => rs.map((r) => r.endedAt - r.startedAt);

    const keysBefore = await (async () => {
      const admin = new Redis(stack.redis.url);
      try {
        return (await admin.keys('*')).filter((k) => k !== userIndexKey(PREFIX, 'sam@example.com')).sort();
      } finally {
        admin.disconnect();
      }
    })();
    process.kill(redisPid, 'SIGSTOP');
    let atNginx: HttpResponse[];
    let atApp: HttpResponse[];
    let logins: HttpResponse[];
    let atFastify: HttpResponse[];
    let fastifyLogins: HttpResponse[];
    let resumedAt: number;
    try {
      await sleep(100);
      [atNginx, atApp, logins, atFastify, fastifyLogins] = await Promise.all([
        burst(stack.nginx.port, 8, () => get(GROUP_PATH, freshCookie())),
        burst(stack.appPort, 8, () => get(APP_PATH, freshCookie())),
        burst(stack.appPort, 2, samLogin),
        burst(fastifyPort, 8, () => get(FASTIFY_PATH, freshCookie())),
        burst(fastifyPort, 2, () => fastifyLogin('frozen@example.com')),
      ]);
    } finally {
      process.kill(redisPid, 'SIGCONT');
      resumedAt = Date.now();
    }

    const fmt = (rs: HttpResponse[]) =>
      `${JSON.stringify(statusCounts(rs))} in p50 ${percentile(took(rs), 50)} / max ${Math.max(...took(rs))} ms`;
    console.log(
      `Redis frozen: nginx ${fmt(atNginx)} (read_timeout 500 ms); app guarded ${fmt(atApp)}, login ${fmt(logins)}; ` +
        `Fastify app guarded ${fmt(atFastify)}, login ${fmt(fastifyLogins)} (commandTimeout 1 s)`,
    );
    for (const r of atNginx) expect(r.status).toBe(503);
    for (const r of [...atApp, ...logins, ...atFastify, ...fastifyLogins]) expect(r.status).toBe(503);
    // Bounded: far below a client's patience, whatever the machine (expected ~0.5 s and ~1 s).
    expect(Math.max(...took(atNginx))).toBeLessThan(3_000);
    expect(Math.max(...took([...atApp, ...logins, ...atFastify, ...fastifyLogins]))).toBeLessThan(5_000);

    // Recovery after SIGCONT: how long until each side answers normally again.
    const recovery = async (what: string, check: () => Promise<boolean>) => {
      await waitFor(what, async () => check(), 5_000);
      return Date.now() - resumedAt;
    };
    const conn = new HttpConnection(stack.nginx.port);
    const appConn = new HttpConnection(stack.appPort);
    const nginxBack = await recovery(
      'nginx to decide again',
      async () => (await conn.request(get(GROUP_PATH, freshCookie()))).status === 403,
    );
    const nginxMember = (await conn.request(get(GROUP_PATH, joe))).status;
    const appBack = await recovery(
      'the app to read sessions again',
      async () => (await appConn.request(get(APP_PATH, joe))).status === 200,
    );
    const fastifyConn = new HttpConnection(fastifyPort);
    const fastifyBack = await recovery(
      'the Fastify app to read sessions again',
      async () => (await fastifyConn.request(get(FASTIFY_PATH, joe))).status === 200,
    );
    fastifyConn.close();
    let loggedIn: string | undefined;
    const loginBack = await recovery('logins to work again', async () => {
      const res = await login(stack.appPort, 'sam@example.com', 'itssam');
      loggedIn = res.cookie;
      return res.status === 303;
    });
    conn.close();
    appConn.close();

    // A failed login leaves nothing behind: no cookie with the 503, and no session written
    // to Redis once it runs again (the commands sent while it was frozen run then).
    for (const rs of [logins, fastifyLogins]) expect(rs.map((r) => r.headers['set-cookie'] ?? [])).toEqual(rs.map(() => []));
    const admin = new Redis(stack.redis.url);
    // The login after recovery wrote sam's session and (PROTOCOL.md section 13.1) sam's index.
    const newKeys = [...sessionKeyList(PREFIX, sessionIdOf(loggedIn, SECRET, SALT)!, layout), userIndexKey(PREFIX, 'sam@example.com')];
    const keysAfter = (await admin.keys('*')).filter((k) => !newKeys.includes(k)).sort();
    admin.disconnect();
    expect(keysAfter).toEqual(keysBefore);

    console.log(
      `after SIGCONT: nginx decides again after ${nginxBack} ms (member: ${nginxMember}), app guarded route after ${appBack} ms, login after ${loginBack} ms; ` +
        `Fastify app guarded route after ${fastifyBack} ms`,
    );
    expect(nginxMember).toBe(200);
    expect(nginxBack).toBeLessThan(RECOVERY_BOUND_MS);
    expect(appBack).toBeLessThan(RECOVERY_BOUND_MS);
    expect(fastifyBack).toBeLessThan(RECOVERY_BOUND_MS);
    expect(fastifyLog.filter((l) => /Redis unavailable/.test(l)).length).toBe(1);
    expect(fastifyLog.join('\n')).not.toMatch(/Unhandled|unhandled rejection|ExceptionsHandler/i);

    const log = stack.appLog.slice(logStart);
    console.log(
      `app log during the freeze: ${countMatches(log, /Redis unavailable/g)} "Redis unavailable", ${countMatches(log, /reachable again/g)} "reachable again"`,
    );
    expect(countMatches(log, /Redis unavailable/g)).toBe(1);
    expect(stack.appLog).not.toMatch(/Unhandled|unhandled rejection|ExceptionsHandler/i);
    expect(stack.app.exitCode).toBeNull();
    expect(crashLines(stack.nginx.errorLog())).toEqual([]);
  }, 40_000);
});

/**
 * Decisions bounded by the session's own life (PROTOCOL.md section 12), in
 * two real nginx workers against a real redis-server, with the decision
 * cache that trusts every writer to publish (`all_writers_publish`, a
 * decision's own ttl 300 s): an expiry publishes no notice, so the time to
 * live read with the decision is what ends it. The independent check at the
 * other door is the demo app (the NestJS library), run as a process on the
 * same Redis: nothing of libs/ is imported here.
 */
import { join } from 'node:path';
import Redis from 'ioredis';
import { newTimedSessionId, PROTOCOL_DEFAULTS, sessionKeyList, sessionKeys, writeSession } from '../../protocol/testkit';
import { request } from '../../stack/http-client';
import { REPO_ROOT } from '../../stack/nginx-platform';
import { NginxServer } from '../../stack/nginx-server';
import { freePort } from '../../stack/ports';
import { RedisServer } from '../../stack/redis-server';
import { ServerProcess } from '../../stack/server-process';
import { sleep, waitFor } from '../../stack/wait';
import { ACCESS_LOCATION, assertNoCrash, commandCalls, nginxConf, signature, startRedisAndNginx, stopRedisAndNginx } from './support';

const PREFIX = PROTOCOL_DEFAULTS.keyPrefix;
const SALT = PROTOCOL_DEFAULTS.salt;
// The demo app takes a secret of 32 bytes or more.
const SECRET = 'lifetime-spec-secret-long-enough-for-the-demo';
const IDLE = 2; // s: the session's _idle and its keys' ttl when written

function confFor(redisPort: number) {
  return nginxConf({
    dict: '1m',
    configure: `{
      secret = "${SECRET}", salt = "${SALT}",
      key_prefix = "${PREFIX}",
      redis = { port = ${redisPort}, connect_timeout = 100, read_timeout = 300 },
      decision_cache = { dict = "decisions", all_writers_publish = true, ttl = 300 },
    }`,
    subscriber: true,
    locations: ACCESS_LOCATION,
  });
}

function cookie(sid: string): string {
  return `session=${sid}.${signature(sid, SECRET)}`;
}

describe('a decision never outlives its session (all_writers_publish, ttl 300 s, two workers)', () => {
  let redis: RedisServer;
  let client: Redis;
  let nginx: NginxServer;
  let app: ServerProcess;
  let appPort: number;

  /** nginx's answer; each request on a connection of its own, so that both workers see the session. */
  const atNginx = async (sid: string) => (await request(nginx.port, '/groups/g1/x', { headers: { Cookie: cookie(sid) } })).status;
  /** The app's answer for the session (the library's guard: 401 without a live session). */
  const atApp = async (sid: string) => (await request(appPort, '/app/api/v1/myself', { headers: { Cookie: cookie(sid) } })).status;
  const sismembers = () => commandCalls(client, 'sismember');

  beforeAll(async () => {
    ({ redis, client, nginx } = await startRedisAndNginx((port) => ({ conf: confFor(port), workers: 2 })));
    appPort = await freePort();
    app = await ServerProcess.node(
      join(REPO_ROOT, 'apps/demo/dist/main.js'),
      {
        ...process.env,
        DEMO_DEV_MODE: '1',
        SESSION_SECRET: SECRET,
        SESSION_SECRET_FALLBACKS: '',
        SESSION_IDLE_TIMEOUT_SECONDS: String(IDLE),
        REDIS_URL: redis.url,
        APP_HOST: '127.0.0.1',
        APP_PORT: String(appPort),
      },
      { port: appPort, path: '/app' },
    );
    await waitFor('the subscriber', async () => {
      const [, n] = (await client.call('PUBSUB', 'NUMSUB', `${PREFIX}:invalidate`)) as [string, number];
      return Number(n) === 1;
    });
  });

  afterAll(async () => {
    await app?.stop();
    await stopRedisAndNginx({ nginx, client, redis }, (log) => assertNoCrash(log, { alerts: true }));
  });

  test('an idle-expired session is refused at nginx within 1 s of its keys’ expiry, and at the app', async () => {
    const sid = newTimedSessionId(Date.now(), 0);
    await writeSession(
      client,
      PREFIX,
      sid,
      { username: 'ada@example.com', groups: ['g1'], _idle: IDLE },
      {
        signature: signature(sid, SECRET),
        ttl: IDLE,
        publish: true,
      },
    );
    // Used: the decision is made once (a miss), then held in the dict and in both workers' LRU.
    const before = await sismembers();
    for (let i = 0; i < 30; i++) expect(await atNginx(sid)).toBe(200);
    expect((await sismembers()) - before).toBeLessThanOrEqual(2);

    // Then no use. The keys' expiry, once nginx's refresh (if one started) has answered.
    await sleep(300);
    const pttl = await client.pttl(sessionKeys(PREFIX, sid).groups);
    expect(pttl).toBeGreaterThan(0);
    const expiresAt = Date.now() + pttl;
    await sleep(expiresAt - Date.now());

    // From the expiry on (a use before it would extend the session), every 100 ms at both doors.
    const seen: { at: number; nginx: number; app: number }[] = [];
    while (Date.now() < expiresAt + 1500) {
      const at = Date.now();
      const [n, a] = await Promise.all([atNginx(sid), atApp(sid)]);
      seen.push({ at: at - expiresAt, nginx: n, app: a });
      await sleep(100 - (Date.now() - at));
    }
    const firstRefusal = seen.find((s) => s.nginx === 403);
    expect(firstRefusal).toBeDefined();
    expect(firstRefusal!.at).toBeLessThanOrEqual(1000);
    // No 200 once expired (a clock tick of tolerance at the very start), at either door.
    expect(seen.filter((s) => s.at > 50 && s.nginx === 200)).toEqual([]);
    expect(seen.filter((s) => s.at > 50).map((s) => s.app)).toEqual(seen.filter((s) => s.at > 50).map(() => 401));
    expect(await client.exists(...sessionKeyList(PREFIX, sid))).toBe(0);
  });

  test('a session whose keys carry no expiry (PERSIST) is allowed until the decision’s own ttl', async () => {
    // No _idle: nginx's refresh leaves such a session to its writer (section 12).
    const sid = newTimedSessionId(Date.now(), 0);
    await writeSession(client, PREFIX, sid, { groups: ['g1'] }, { signature: signature(sid, SECRET), ttl: IDLE, publish: true });
    for (const key of sessionKeyList(PREFIX, sid)) await client.persist(key);
    expect(await atNginx(sid)).toBe(200); // the miss reads PTTL -1: no bound from the session
    // Keys removed behind nginx's back (no notice, which a publishing writer never does): the
    // decision still counts, for its own ttl, past the 2 s the keys were first given.
    await client.del(...sessionKeyList(PREFIX, sid));
    await sleep(IDLE * 1000 + 300);
    const before = await sismembers();
    expect(await atNginx(sid)).toBe(200);
    expect(await sismembers()).toBe(before);
  });

  test('a time to live raised by another writer is learned at the next miss', async () => {
    const sid = newTimedSessionId(Date.now(), 0);
    await writeSession(client, PREFIX, sid, { groups: ['g1'] }, { signature: signature(sid, SECRET), ttl: IDLE, publish: true });
    const first = await sismembers();
    expect(await atNginx(sid)).toBe(200); // learns: 2 s left
    expect(await sismembers()).toBe(first + 1);
    // Another writer (the app's touch) extends the keys, publishing nothing.
    for (const key of sessionKeyList(PREFIX, sid)) await client.pexpire(key, 30_000);
    await sleep(IDLE * 1000 + 200);
    // The decision ended at the expiry it was made with: one miss, which learns the new one...
    expect(await atNginx(sid)).toBe(200);
    const relearned = await sismembers();
    expect(relearned).toBe(first + 2);
    // ...and holds the decision again (no query per request).
    for (let i = 0; i < 10; i++) expect(await atNginx(sid)).toBe(200);
    expect(await sismembers()).toBeLessThanOrEqual(relearned + 1);
  });
});

/**
 * The refresh of resty.shared_session (PROTOCOL.md section 12) in a real
 * nginx worker against a real redis-server: a request that nginx allows sets
 * the session's keys back to its idle timeout (`_idle`), at most once per
 * interval per session, never past the deadline of its timed id, never
 * re-creating a key; a Redis failure during the refresh extends nothing and
 * leaves the answer as it was; the Redis ACL that nginx needs, with the
 * refresh and without it.
 */
import Redis from 'ioredis';
import { newTimedSessionId, sessionKeyList, sessionKeys, writeSession } from '../../protocol/testkit';
import { NginxServer, NginxStartError } from '../../stack/nginx-server';
import { RedisServer } from '../../stack/redis-server';
import { sleep, waitFor } from '../../stack/wait';
import {
  ACCESS_LOCATION,
  assertNoCrash,
  commandCalls,
  get,
  nginxConf,
  redisClient,
  sessionCookie,
  SID,
  signature,
  startRedis,
  startRedisAndNginx,
  stopRedisAndNginx,
} from './support';

const PREFIX = 'rss_rf';
const INTERVAL = 2; // refresh.interval, seconds

function confFor(redisPort: number, refresh: string) {
  return nginxConf({
    dict: '1m',
    configure: `{
      secret = "current-secret",
      key_prefix = "${PREFIX}",
      redis = { port = ${redisPort}, connect_timeout = 100, read_timeout = 300 },
      decision_cache = { dict = "decisions", ttl = 1 },
      ${refresh}
    }`,
    subscriber: true,
    locations: ACCESS_LOCATION,
  });
}

async function status(nginx: NginxServer, sid: string, group = 'g1'): Promise<number> {
  return (await get(nginx, `/groups/${group}/x`, sessionCookie(sid))).status;
}

/** Refreshes that ran: each sets the three keys with one PEXPIRE apiece, inside the script. */
async function refreshes(client: Redis): Promise<number> {
  return (await commandCalls(client, 'pexpire')) / 3;
}

/** Scripts sent: EVALSHA, and EVAL the first time the server lacks it. */
async function scripts(client: Redis): Promise<number> {
  return (await commandCalls(client, 'evalsha')) + (await commandCalls(client, 'eval'));
}

async function pttls(client: Redis, sid: string): Promise<number[]> {
  return Promise.all(sessionKeyList(PREFIX, sid).map((key) => client.pttl(key)));
}

async function waitSubscribed(client: Redis): Promise<void> {
  await waitFor('the subscriber', async () => {
    const [, n] = (await client.call('PUBSUB', 'NUMSUB', `${PREFIX}:invalidate`)) as [string, number];
    return Number(n) === 1;
  });
}

describe(`refresh (PROTOCOL.md section 12; interval ${INTERVAL} s)`, () => {
  let redis: RedisServer;
  let client: Redis;
  let nginx: NginxServer;

  beforeAll(async () => {
    ({ redis, client, nginx } = await startRedisAndNginx((port) => ({ conf: confFor(port, `refresh = { interval = ${INTERVAL} },`) })));
    await waitSubscribed(client);
  });

  afterAll(() => stopRedisAndNginx({ nginx, client, redis }, (log) => assertNoCrash(log, { alerts: true })));

  async function session(sid: string, data: Record<string, unknown>, ttl: number): Promise<void> {
    await writeSession(client, PREFIX, sid, { groups: ['g1'], ...data }, { signature: signature(sid), ttl, publish: true });
  }

  test("sets the three keys back to the session's _idle, at most once per interval however many requests", async () => {
    const sid = newTimedSessionId(Date.now(), 0);
    await session(sid, { _idle: 30 }, 5);
    const before = { refreshes: await refreshes(client), scripts: await scripts(client) };
    for (let i = 0; i < 30; i++) expect(await status(nginx, sid)).toBe(200);
    await waitFor('the refresh', async () => (await refreshes(client)) > before.refreshes);
    for (const ttl of await pttls(client, sid)) expect(ttl).toBeGreaterThan(25_000);
    // One refresh, one script (EVALSHA; EVAL once if the server had not seen it), for 30 requests.
    expect((await refreshes(client)) - before.refreshes).toBe(1);
    expect((await scripts(client)) - before.scripts).toBeLessThanOrEqual(2);
    // The interval over, the next request refreshes again.
    await sleep(INTERVAL * 1000 + 100);
    expect(await status(nginx, sid)).toBe(200);
    await waitFor('the second refresh', async () => (await refreshes(client)) === before.refreshes + 2);
  });

  test("raises the session's score in its user's index (section 13.1), never lowering it, so revokeUser still finds it", async () => {
    const sid = newTimedSessionId(Date.now(), 0);
    const index = `${PREFIX}:user:joe@example.com`;
    await session(sid, { _idle: 30, username: 'joe@example.com' }, 5);
    await client.zadd(index, Date.now() + 5000, sid);
    await client.zadd(index, Date.now() + 3_600_000, 'another-session-of-joe');
    await client.pexpire(index, 5000);
    expect(await status(nginx, sid)).toBe(200);
    await waitFor('the index score', async () => Number(await client.zscore(index, sid)) > Date.now() + 25_000);
    expect(await client.pttl(index)).toBeGreaterThan(25_000);
    // Another member's higher score is not lowered, and no member is added.
    expect(Number(await client.zscore(index, 'another-session-of-joe'))).toBeGreaterThan(Date.now() + 3_000_000);
    expect(await client.zcard(index)).toBe(2);
    await client.del(index);
  });

  test('a short idle timeout is refreshed at least every half of it, within a longer interval', async () => {
    const sid = newTimedSessionId(Date.now(), 0);
    await session(sid, { _idle: 1 }, 1);
    // Busy for 2.5 s (more than twice its idle timeout): it must live on.
    const end = Date.now() + 2500;
    while (Date.now() < end) {
      expect(await status(nginx, sid)).toBe(200);
      await sleep(100);
    }
    expect(await client.exists(sessionKeys(PREFIX, sid).data)).toBe(1);
    // Unused, it ends after its idle timeout.
    await sleep(1200);
    expect(await client.exists(...sessionKeyList(PREFIX, sid))).toBe(0);
    expect(await status(nginx, sid)).toBe(403);
  });

  test('never past the deadline of a timed id', async () => {
    const sid = newTimedSessionId(Date.now(), Date.now() + 3000);
    await session(sid, { _idle: 60 }, 1);
    const before = await refreshes(client);
    expect(await status(nginx, sid)).toBe(200);
    await waitFor('the refresh', async () => (await refreshes(client)) > before);
    for (const ttl of await pttls(client, sid)) {
      expect(ttl).toBeGreaterThan(1000);
      expect(ttl).toBeLessThanOrEqual(3000);
    }
  });

  test('never re-creates a key that is gone', async () => {
    const sid = newTimedSessionId(Date.now(), 0);
    await session(sid, { _idle: 60 }, 10);
    const keys = sessionKeys(PREFIX, sid);
    // nginx judges by the signature (locally) and the groups set: without the signature key it still allows.
    await client.del(keys.signature);
    const before = await refreshes(client);
    expect(await status(nginx, sid)).toBe(200);
    await waitFor('the refresh', async () => (await refreshes(client)) > before);
    expect(await client.exists(keys.signature)).toBe(0);
    expect(await client.pttl(keys.data)).toBeGreaterThan(50_000);
  });

  test('leaves alone a session without _idle (a v1 writer sets its lifetime)', async () => {
    await session(SID, {}, 100);
    const before = await scripts(client);
    expect(await status(nginx, SID)).toBe(200);
    await waitFor('the script', async () => (await scripts(client)) > before);
    await sleep(100);
    for (const ttl of await pttls(client, SID)) expect(ttl).toBeLessThanOrEqual(100_000);
  });

  test('Redis failing during the refresh (writes paused): answered 200 as before, nothing extended, logged', async () => {
    const sid = newTimedSessionId(Date.now(), 0);
    await session(sid, { _idle: 60 }, 20);
    expect(await status(nginx, sid)).toBe(200); // caches the decision, and refreshes
    await waitFor('the first refresh', async () => (await client.pttl(sessionKeys(PREFIX, sid).data)) > 50_000);
    for (const key of sessionKeyList(PREFIX, sid)) await client.expire(key, 20);
    await sleep(INTERVAL * 1000 + 100);
    const logBefore = nginx.errorLog().length;
    // EVALSHA and EVAL wait while writes are paused; reads (the check, the subscriber's PINGs) go on.
    await client.call('CLIENT', 'PAUSE', '1500', 'WRITE');
    try {
      const answers = await Promise.all(Array.from({ length: 5 }, () => status(nginx, sid)));
      expect(answers).toEqual([200, 200, 200, 200, 200]);
      await waitFor('the refresh to fail', async () => nginx.errorLog().slice(logBefore).includes('session not refreshed'), 3000);
    } finally {
      await client.call('CLIENT', 'UNPAUSE');
    }
    for (const ttl of await pttls(client, sid)) expect(ttl).toBeLessThanOrEqual(20_000);
    expect(nginx.errorLog().slice(logBefore)).toMatch(/session not refreshed: redis (error|unavailable): timeout \(session [0-9a-f]{32}\)/);
  });
});

describe('the Redis ACL nginx needs (resty/README.md)', () => {
  let redis: RedisServer;
  let admin: Redis;
  let nginx: NginxServer | undefined;

  beforeAll(async () => {
    const started = await startRedis();
    redis = started.redis;
    started.client.disconnect();
    const root = redisClient(redis);
    await root.call('ACL', 'SETUSER', 'admin', 'on', '>admin-pw', '~*', '&*', '+@all');
    root.disconnect();
    admin = redisClient(redis, { username: 'admin', password: 'admin-pw' });
  });

  afterEach(async () => {
    await nginx?.dispose();
    nginx = undefined;
  });

  afterAll(async () => {
    admin.disconnect();
    await redis.dispose();
  });

  /** nginx connects as `default`: give it exactly these commands on the prefix's keys and channel. */
  async function restrictNginx(commands: string[]): Promise<void> {
    await admin.call(
      'ACL',
      'SETUSER',
      'default',
      'reset',
      'on',
      'nopass',
      `~${PREFIX}:*`,
      `&${PREFIX}:invalidate`,
      ...commands.map((c) => `+${c}`),
    );
  }

  const READ = ['sismember', 'get', 'pttl', 'ping', 'subscribe', 'unsubscribe'];

  test('with the refresh: the read commands plus EVALSHA, EVAL and PEXPIRE', async () => {
    await restrictNginx([...READ, 'evalsha', 'eval', 'pexpire', 'zadd']);
    nginx = await NginxServer.start({ conf: confFor(redis.port, `refresh = { interval = ${INTERVAL} },`) });
    await waitSubscribed(admin);
    const sid = newTimedSessionId(Date.now(), 0);
    await writeSession(admin, PREFIX, sid, { groups: ['g1'], _idle: 60 }, { signature: signature(sid), ttl: 10 });
    expect(await status(nginx, sid)).toBe(200);
    await waitFor('the refresh', async () => (await admin.pttl(sessionKeys(PREFIX, sid).data)) > 50_000);
    expect(nginx.errorLog()).not.toMatch(/NOPERM|not refreshed/);
  });

  test('with refresh = false: read-only, and nothing is written', async () => {
    await restrictNginx(READ);
    nginx = await NginxServer.start({ conf: confFor(redis.port, 'refresh = false,') });
    await waitSubscribed(admin);
    const sid = newTimedSessionId(Date.now(), 0);
    await writeSession(admin, PREFIX, sid, { groups: ['g1'], _idle: 60 }, { signature: signature(sid), ttl: 10 });
    const before = await commandCalls(admin, 'evalsha');
    for (let i = 0; i < 5; i++) expect(await status(nginx, sid)).toBe(200);
    await sleep(300);
    expect(await commandCalls(admin, 'evalsha')).toBe(before);
    expect(await admin.pttl(sessionKeys(PREFIX, sid).data)).toBeLessThanOrEqual(10_000);
    expect(nginx.errorLog()).not.toMatch(/NOPERM|not refreshed/);
  });
});

describe('a bad refresh option', () => {
  test.each([
    ['a negative interval', 'refresh = { interval = -1 },', /option "refresh\.interval" must be a number of seconds/],
    ['an interval that is not a number', 'refresh = { interval = "soon" },', /option "refresh\.interval"/],
    ['a dict that does not exist', 'refresh = { dict = "nope" },', /option "refresh\.dict" must name a lua_shared_dict/],
  ])('stops nginx at start-up, naming it: %s', async (_why, option, message) => {
    const start = NginxServer.start({ conf: confFor(6379, option) });
    await expect(start).rejects.toThrow(NginxStartError);
    await expect(start).rejects.toThrow(message);
  });
});

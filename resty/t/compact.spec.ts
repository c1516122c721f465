/**
 * resty.shared_session with key_layout = "compact" (PROTOCOL.md section 15)
 * in a real nginx worker against a real redis-server: a session is one
 * string key, `<prefix>:{<sid>}`, holding the signature then the JSON.
 * Sessions are written by the test kit (`layout: 'compact'`). Two nginx: one
 * with a local secret, the decision cache and the refresh; one in stored
 * mode (the value's signature compared), no cache. Redis Cluster with this
 * layout is in cluster.spec.ts.
 */
import Redis from 'ioredis';
import { compactKey, destroySession, loadCompactCases, newTimedSessionId, userIndexKey, writeSession } from '../../protocol/testkit';
import { NginxServer } from '../../stack/nginx-server';
import { RedisServer } from '../../stack/redis-server';
import { sleep, waitFor } from '../../stack/wait';
import {
  ACCESS_LOCATION,
  assertNoCrash,
  commandCalls,
  get,
  luaConnectRedis,
  nginxConf,
  SALT,
  SECRET,
  sessionCookie,
  signature,
  startRedisAndNginx,
  stopRedisAndNginx,
} from './support';

const PREFIX = 'rss_cp';
const LAYOUT = { layout: 'compact' as const };
const INTERVAL = 1; // refresh.interval, seconds

function confFor(redisPort: number, stored: boolean) {
  return nginxConf({
    dict: '1m',
    configure: `{
      ${stored ? '' : `secret = "${SECRET}", salt = "${SALT}",`}
      key_prefix = "${PREFIX}", key_layout = "compact",
      redis = { port = ${redisPort}, connect_timeout = 100, read_timeout = 300 },
      ${stored ? 'refresh = false,' : `decision_cache = { dict = "decisions", ttl = 10, all_writers_publish = true }, refresh = { interval = ${INTERVAL} },`}
    }`,
    subscriber: !stored,
    locations: `${ACCESS_LOCATION}
    # The 0.1.x API on the configured layout.
    location ~ ^/seed/(?<group_id>[^/]+)$ {
      content_by_lua_block {
        local cjson = require "cjson"
        local shared_session = require "resty.shared_session"
        ${luaConnectRedis(redisPort, 'redis_conn')}
        local session = assert(shared_session:new(redis_conn))
        local function pack(a, b) return { a == nil and cjson.null or a, b == nil and cjson.null or b } end
        local out = {
          verify = pack(session:verify_signature()),
          member = pack(session:is_group_member(ngx.var.group_id)),
          groups = pack(session:list_groups()),
          data = pack(session:get_data()),
        }
        redis_conn:set_keepalive()
        ngx.say(cjson.encode(out))
      }
    }
`,
  });
}

describe('key_layout = "compact" (PROTOCOL.md section 15)', () => {
  let redis: RedisServer;
  let client: Redis;
  let nginx: NginxServer; // local secret, decision cache, refresh
  let stored: NginxServer; // stored mode

  beforeAll(async () => {
    ({ redis, client, nginx } = await startRedisAndNginx((port) => ({ conf: confFor(port, false), errorLogLevel: 'info' })));
    stored = await NginxServer.start({ conf: confFor(redis.port, true), errorLogLevel: 'info' });
    await waitFor('the subscriber', async () => {
      const [, n] = (await client.call('PUBSUB', 'NUMSUB', `${PREFIX}:invalidate`)) as [string, number];
      return Number(n) === 1;
    });
  });

  afterAll(async () => {
    const log = stored?.errorLog() ?? '';
    await stored?.dispose();
    await stopRedisAndNginx({ nginx, client, redis }, (l) => {
      assertNoCrash(l);
      assertNoCrash(log);
      expect(l + log).not.toMatch(/ 500 /);
    });
  });

  const status = async (on: NginxServer, group: string, cookie?: string) => (await get(on, `/groups/${group}/x`, cookie)).status;

  async function login(data: Record<string, unknown>, ttl = 3600): Promise<string> {
    const sid = newTimedSessionId(Date.now());
    await writeSession(client, PREFIX, sid, data, { signature: signature(sid), ttl, ...LAYOUT });
    return sid;
  }

  test('member 200, non-member 403, no cookie 401, forged signature 403: one GET per check, no SISMEMBER', async () => {
    const sid = await login({ username: 'ann', groups: ['g1', 'g2'] });
    // At the stored-mode nginx (no refresh, whose script GETs too): the session's GET and the not-before
    // mark's in one round trip, per check that asks Redis (all but the one without a cookie).
    const gets = await commandCalls(client, 'get');
    for (const on of [stored, nginx]) {
      expect(await status(on, 'g1', sessionCookie(sid))).toBe(200);
      expect(await status(on, 'g2', sessionCookie(sid))).toBe(200);
      expect(await status(on, 'g3', sessionCookie(sid))).toBe(403);
      expect(await status(on, 'g1')).toBe(401);
      expect(await status(on, 'g1', `session=${sid}.${'A'.repeat(27)}`)).toBe(403);
      expect(await status(on, 'g1', sessionCookie(sid, 'another-secret'))).toBe(403);
      if (on === stored) expect((await commandCalls(client, 'get')) - gets).toBe(2 * 5);
    }
    expect(await commandCalls(client, 'sismember')).toBe(0);
  });

  test('every malformed value of compact.json (and a wrong type) is no session: 403, never 500', async () => {
    const { malformed } = loadCompactCases();
    for (const { value, why } of malformed) {
      const sid = newTimedSessionId(Date.now());
      await client.set(compactKey(PREFIX, sid), value, 'EX', 60);
      for (const on of [nginx, stored]) expect([why, await status(on, 'g1', sessionCookie(sid))]).toEqual([why, 403]);
    }
    expect(nginx.errorLog()).toMatch(/malformed session value, treated as no session \(session [0-9a-f]{32}\)/);
    // A key of another type: Redis answers an error: 503, as for any Redis error (never an allow).
    const sid = newTimedSessionId(Date.now());
    await client.sadd(compactKey(PREFIX, sid), 'g1');
    for (const on of [nginx, stored]) expect(await status(on, 'g1', sessionCookie(sid))).toBe(503);
  });

  test("stored mode compares the cookie's signature with the value's first 27 bytes", async () => {
    const sid = newTimedSessionId(Date.now());
    // The value holds another signature than the cookie's (made with another secret).
    await writeSession(client, PREFIX, sid, { groups: ['g1'] }, { signature: signature(sid, 'another-secret'), ...LAYOUT });
    expect(await status(stored, 'g1', sessionCookie(sid))).toBe(403);
    expect(await status(stored, 'g1', sessionCookie(sid, 'another-secret'))).toBe(200);
    // The local nginx checks the HMAC with its own secret: the stored copy plays no part.
    expect(await status(nginx, 'g1', sessionCookie(sid))).toBe(200);
    expect(stored.errorLog()).toMatch(/403 bad signature \(session -,/);
  });

  test('logout (the key deleted, the id published) is refused at once, a cached decision too', async () => {
    const sid = await login({ groups: ['g1'] });
    expect(await status(nginx, 'g1', sessionCookie(sid))).toBe(200);
    const gets = await commandCalls(client, 'get');
    expect(await status(nginx, 'g1', sessionCookie(sid))).toBe(200); // from the decision cache
    expect(await commandCalls(client, 'get')).toBe(gets);
    await destroySession(client, PREFIX, sid, { publish: true, ...LAYOUT });
    await waitFor('the refusal', async () => (await status(nginx, 'g1', sessionCookie(sid))) === 403, 500);
    expect(await status(stored, 'g1', sessionCookie(sid))).toBe(403);
  });

  test("the refresh sets the one key's ttl back to _idle (and the user's index, section 14.1), never past the deadline", async () => {
    const user = 'cp@example.com';
    const index = userIndexKey(PREFIX, user);
    const sid = await login({ groups: ['g1'], username: user, _idle: 30 }, 5);
    const deadline = newTimedSessionId(Date.now(), Date.now() + 3000);
    await writeSession(client, PREFIX, deadline, { groups: ['g1'], _idle: 60 }, { signature: signature(deadline), ttl: 1, ...LAYOUT });
    const pexpires = await commandCalls(client, 'pexpire');
    expect(await status(nginx, 'g1', sessionCookie(sid))).toBe(200);
    expect(await status(nginx, 'g1', sessionCookie(deadline))).toBe(200);
    await waitFor('the refresh', async () => (await client.pttl(compactKey(PREFIX, sid))) > 25_000);
    const left = await client.pttl(compactKey(PREFIX, deadline));
    expect(left).toBeGreaterThan(1000);
    expect(left).toBeLessThanOrEqual(3000);
    // One PEXPIRE a session (its one key), and one for the index created here.
    await waitFor('the index', async () => Number(await client.zscore(index, sid)) > Date.now() + 25_000);
    expect(await client.pttl(index)).toBeGreaterThan(25_000);
    expect((await commandCalls(client, 'pexpire')) - pexpires).toBe(3);
    await client.del(index);
  });

  test('the refresh raises the member only in the index of the user the data names (section 13.1), not a stale one', async () => {
    const sid = await login({ groups: ['g1'], username: 'bob', _idle: 30 }, 5);
    const [alice, bob] = [userIndexKey(PREFIX, 'alice'), userIndexKey(PREFIX, 'bob')];
    const stale = Date.now() + 5000;
    await client.zadd(alice, stale, sid); // left behind by a writer that did not move it
    expect(await status(nginx, 'g1', sessionCookie(sid))).toBe(200);
    await waitFor('the index', async () => Number(await client.zscore(bob, sid)) > Date.now() + 25_000);
    expect(Number(await client.zscore(alice, sid))).toBe(stale);
    await client.del(alice, bob);
  });

  test('the refresh never re-creates a key that is gone', async () => {
    const sid = await login({ groups: ['g1'], _idle: 60 }, 10);
    expect(await status(nginx, 'g1', sessionCookie(sid))).toBe(200);
    await waitFor('the first refresh', async () => (await client.pttl(compactKey(PREFIX, sid))) > 50_000);
    // Deleted without a notice: the cached decision (all_writers_publish) still allows, and refreshes.
    await client.del(compactKey(PREFIX, sid));
    await sleep(INTERVAL * 1000 + 100);
    const scripts = async () => (await commandCalls(client, 'evalsha')) + (await commandCalls(client, 'eval'));
    const before = await scripts();
    expect(await status(nginx, 'g1', sessionCookie(sid))).toBe(200);
    await waitFor('the refresh', async () => (await scripts()) > before);
    await sleep(100);
    expect(await client.exists(compactKey(PREFIX, sid))).toBe(0);
  });

  test('the refresh extends no malformed value (sections 15 and 15.1): a bad signature part, no JSON object, more than 64 KiB of JSON', async () => {
    const oversized = `{"groups":["g1"],"_idle":60,"pad":"${'x'.repeat(65_537 - 37)}"}`;
    expect(oversized.length).toBe(65_537);
    for (const malformed of [
      `${'+'.repeat(27)}{"groups":["g1"],"_idle":60}`,
      `${'A'.repeat(27)}{"groups":["g1"],"_idle":60`,
      `${'A'.repeat(27)}${oversized}`,
    ]) {
      const sid = await login({ groups: ['g1'], _idle: 60 }, 10);
      const key = compactKey(PREFIX, sid);
      expect(await status(nginx, 'g1', sessionCookie(sid))).toBe(200);
      await waitFor('the first refresh', async () => (await client.pttl(key)) > 50_000);
      // Replaced without a notice: the cached decision still allows, and starts a refresh.
      await client.set(key, malformed, 'PX', 10_000);
      await sleep(INTERVAL * 1000 + 100);
      const scripts = async () => (await commandCalls(client, 'evalsha')) + (await commandCalls(client, 'eval'));
      const before = await scripts();
      expect(await status(nginx, 'g1', sessionCookie(sid))).toBe(200);
      await waitFor('the refresh', async () => (await scripts()) > before);
      await sleep(100);
      expect(await client.pttl(key)).toBeLessThanOrEqual(10_000);
      expect(await client.get(key)).toBe(malformed);
    }
  });

  test('the 0.1.x API reads the one key (stored mode: its signature; groups and data from its JSON)', async () => {
    const sid = await login({ username: 'ann', groups: ['g2', 'g1'] });
    const seed = async (group: string, cookie: string) => JSON.parse((await get(stored, `/seed/${group}`, cookie)).body);
    expect(await seed('g1', sessionCookie(sid))).toEqual({
      verify: [true, null],
      member: [true, null],
      groups: [['g1', 'g2'], null],
      data: [{ username: 'ann', groups: ['g2', 'g1'] }, null],
    });
    expect((await seed('g3', sessionCookie(sid))).member).toEqual([null, 'not a member']);
    expect((await seed('g1', sessionCookie(sid, 'another-secret'))).verify).toEqual([null, 'bad signature']);
    await client.set(compactKey(PREFIX, sid), `${signature(sid)}{"groups":["g1"]`);
    expect(await seed('g1', sessionCookie(sid))).toEqual({
      verify: [null, 'no stored signature'],
      member: [null, 'not a member'],
      groups: [{}, null],
      data: [null, 'no session data'],
    });
  });

  test('Redis down: 503, never an allow', async () => {
    const sid = await login({ groups: ['g1'] });
    await redis.stop();
    try {
      for (const on of [nginx, stored]) {
        expect(await status(on, 'g1', sessionCookie(sid))).toBe(503);
        expect(await status(on, 'g2', sessionCookie(sid))).toBe(503);
      }
    } finally {
      await redis.resume();
    }
  });
});

/**
 * resty.shared_session in a real nginx worker against a real redis-server:
 * every status of authorize()/access(), every method of the 0.1.x API, pooled
 * connections, Redis outages, configure() errors, and the error log.
 */
import Redis from 'ioredis';
import { NginxServer, NginxStartError } from '../../stack/nginx-server';
import { sleep, waitFor } from '../../stack/wait';
import { RedisServer } from '../../stack/redis-server';
import { destroySession, sessionKeys, writeSession } from '../../protocol/testkit';
import { postJson } from '../../stack/http-client';
import {
  assertNoCrash,
  commandCalls,
  cookieFor,
  get,
  luaConnectRedis,
  nginxConf,
  OTHER_SID,
  redisClient,
  SALT,
  SECRET,
  SID,
  signature,
  startRedisAndNginx,
  stopRedisAndNginx,
} from './support';

const OLD_SECRET = 'old-secret';
const PREFIX = 'rss_t';

/** The locations every test nginx has. `configureLua` runs in init_by_lua. */
function confFor(redisPort: number, configureLua: string | null) {
  return nginxConf({
    configure: configureLua === null ? null : `(${configureLua})`,
    http: 'client_body_buffer_size 16k;',
    locations: `
    # The one-line form, as an operator writes it.
    location ~ ^/groups/(?<group_id>[^/]+)/ {
      access_by_lua_block { require("resty.shared_session").access(ngx.var.group_id) }
      content_by_lua_block { ngx.say("allowed ", ngx.var.group_id) }
    }

    location ~ ^/authorize/(?<group_id>[^/]+)$ {
      content_by_lua_block {
        local status, err = require("resty.shared_session").authorize(ngx.var.group_id)
        ngx.say(require("cjson").encode({ status = status, err = err }))
      }
    }

    # The 0.1.x API, written the way the 2017 README shows it.
    location ~ ^/seed/(?<group_id>[^/]+)$ {
      content_by_lua_block {
        local cjson = require "cjson"
        local shared_session = require "resty.shared_session"
        ${luaConnectRedis(redisPort, 'redis_conn')}
        local session, err = shared_session:new(redis_conn, "session", "${PREFIX}")
        if not session then
          redis_conn:set_keepalive()
          ngx.status = 401
          ngx.say(cjson.encode({ err = err }))
          return
        end
        local function pack(a, b) return { a == nil and cjson.null or a, b == nil and cjson.null or b } end
        local out = {
          sid = pack(session:get_sid()),
          verify = pack(session:verify_signature()),
          member = pack(session:is_group_member(ngx.var.group_id)),
          groups = pack(session:list_groups()),
          data = pack(session:get_data()),
          cookie_sid = pack(session:get_cookie_sid()),
          allowed_groups = pack(session:list_allowed_groups()),
        }
        redis_conn:set_keepalive()
        ngx.say(cjson.encode(out))
      }
    }

    # authorize{ group_var = ... } from a timer, which runs on lua-nginx-module's fake request (no variables):
    # the variable reads refuse it as ngx.var does (test only).
    location = /in-timer {
      content_by_lua_block {
        local result
        ngx.timer.at(0, function()
          local ok, status = pcall(require("resty.shared_session").authorize, { group_var = "group_id" })
          result = tostring(ok) .. " " .. tostring(status)
        end)
        for _ = 1, 100 do
          if result then break end
          ngx.sleep(0.01)
        end
        ngx.say(result)
      }
    }

    # configure() called at request time, under pcall (test only).
    location = /configure {
      content_by_lua_block {
        local cjson = require "cjson"
        ngx.req.read_body()
        local opts = cjson.decode(ngx.req.get_body_data())
        local ok, err = pcall(require("resty.shared_session").configure, opts)
        ngx.say(cjson.encode({ ok = ok, err = ok and cjson.null or err }))
      }
    }
`,
  });
}

function localConfigure(redisPort: number, extra = ''): string {
  return `{
      secret = "${SECRET}", secret_fallbacks = { "${OLD_SECRET}" }, salt = "${SALT}",
      cookie_name = "session", key_prefix = "${PREFIX}",
      redis = { host = "127.0.0.1", port = ${redisPort}, connect_timeout = 100, read_timeout = 300,
                pool_size = 16, keepalive_timeout = 30000 ${extra} },
    }`;
}

async function authorize(nginx: NginxServer, group: string, cookie?: string): Promise<{ status: number; err?: string }> {
  const res = await get(nginx, `/authorize/${group}`, cookie);
  expect(res.status).toBe(200);
  return JSON.parse(res.body);
}

async function connectionsReceived(client: Redis): Promise<number> {
  const info = await client.info('stats');
  return Number(/total_connections_received:(\d+)/.exec(info)![1]);
}

describe('authorize() with a local secret', () => {
  let redis: RedisServer;
  let client: Redis;
  let nginx: NginxServer;

  beforeAll(async () => {
    ({ redis, client, nginx } = await startRedisAndNginx((port) => ({ conf: confFor(port, localConfigure(port)), errorLogLevel: 'info' })));
  });

  beforeEach(async () => {
    await client.flushdb();
    await writeSession(client, PREFIX, SID, { username: 'ann', groups: ['g1', 'g2'], theme: 'dark' }, { signature: signature(SID) });
  });

  afterAll(() => stopRedisAndNginx({ nginx, client, redis }, assertNoCrash));

  test('200 for a member; access() lets the request through', async () => {
    expect(await authorize(nginx, 'g1', `session=${cookieFor(SID)}`)).toEqual({ status: 200 });
    const res = await get(nginx, '/groups/g2/report', `session=${cookieFor(SID)}`);
    expect(res.status).toBe(200);
    expect(res.body).toBe('allowed g2\n');
  });

  test('200 for a cookie signed with a fallback secret', async () => {
    expect((await authorize(nginx, 'g1', `session=${cookieFor(SID, OLD_SECRET)}`)).status).toBe(200);
  });

  test('401 without the cookie (another cookie does not count)', async () => {
    expect((await authorize(nginx, 'g1')).status).toBe(401);
    expect((await authorize(nginx, 'g1', `other=${cookieFor(SID)}`)).status).toBe(401);
    expect((await get(nginx, '/groups/g1/x')).status).toBe(401);
  });

  test('403 for a malformed cookie', async () => {
    for (const value of ['', 'garbage', `${SID}.`, `${SID}.${signature(SID)}=`, `s:${cookieFor(SID)}`, `${'a'.repeat(300)}`]) {
      const { status, err } = await authorize(nginx, 'g1', `session=${value}`);
      expect([value, status]).toEqual([value, 403]);
      expect(err).toMatch(/malformed cookie/);
    }
  });

  test('403 for a forged signature, without asking Redis', async () => {
    const before = await commandCalls(client, 'sismember');
    const { status, err } = await authorize(nginx, 'g1', `session=${cookieFor(SID, 'not-the-secret')}`);
    expect(status).toBe(403);
    expect(err).toBe('bad signature');
    expect(await commandCalls(client, 'sismember')).toBe(before);
  });

  test('403 for a group the session is not in', async () => {
    expect(await authorize(nginx, 'g3', `session=${cookieFor(SID)}`)).toEqual({ status: 403, err: 'not a member of the group' });
    expect((await get(nginx, '/groups/g3/x', `session=${cookieFor(SID)}`)).status).toBe(403);
  });

  test('403 once the session is destroyed', async () => {
    expect((await authorize(nginx, 'g1', `session=${cookieFor(SID)}`)).status).toBe(200);
    await destroySession(client, PREFIX, SID);
    expect((await authorize(nginx, 'g1', `session=${cookieFor(SID)}`)).status).toBe(403);
  });

  test('403 once the session has expired', async () => {
    await writeSession(client, PREFIX, OTHER_SID, { groups: ['g1'] }, { signature: signature(OTHER_SID), ttl: 1 });
    expect((await authorize(nginx, 'g1', `session=${cookieFor(OTHER_SID)}`)).status).toBe(200);
    await waitFor('the session to expire', async () => (await client.exists(sessionKeys(PREFIX, OTHER_SID).groups)) === 0, 3000);
    expect((await authorize(nginx, 'g1', `session=${cookieFor(OTHER_SID)}`)).status).toBe(403);
  });

  test('a group change is seen on the next request', async () => {
    expect((await authorize(nginx, 'g3', `session=${cookieFor(SID)}`)).status).toBe(403);
    await writeSession(client, PREFIX, SID, { groups: ['g3'] }, { signature: signature(SID) });
    expect((await authorize(nginx, 'g3', `session=${cookieFor(SID)}`)).status).toBe(200);
    expect((await authorize(nginx, 'g1', `session=${cookieFor(SID)}`)).status).toBe(403);
  });

  test("the Cookie header is read by the protocol's grammar (section 10), not by $cookie_session", async () => {
    const good = cookieFor(SID);
    const forged = cookieFor(SID, 'not-the-secret');
    // Two different values of the name: refused, whichever comes first; the same value twice: that value.
    expect(await authorize(nginx, 'g1', `session=${good}; session=${forged}`)).toEqual({
      status: 403,
      err: 'malformed cookie: cookies of that name with different values',
    });
    expect((await authorize(nginx, 'g1', `session=${forged}; session=${good}`)).status).toBe(403);
    expect((await authorize(nginx, 'g1', `session=${good}; x=1; session=${good}`)).status).toBe(200);
    // Whitespace around names and values, tabs included; names byte for byte; no comma separator.
    expect((await authorize(nginx, 'g1', `x=1;\tsession= ${good}\t`)).status).toBe(200);
    expect((await authorize(nginx, 'g1', `SESSION=${good}`)).status).toBe(401);
    expect((await authorize(nginx, 'g1', `x=1,session=${good}`)).status).toBe(403);
    expect((await authorize(nginx, 'g1', `session="${good}"`)).status).toBe(403);
  });

  test('503 when Redis answers with an error', async () => {
    await client.del(sessionKeys(PREFIX, SID).groups);
    await client.set(sessionKeys(PREFIX, SID).groups, 'not a set');
    const { status, err } = await authorize(nginx, 'g1', `session=${cookieFor(SID)}`);
    expect(status).toBe(503);
    expect(err).toMatch(/WRONGTYPE/);
    expect((await get(nginx, '/groups/g1/x', `session=${cookieFor(SID)}`)).status).toBe(503);
  });

  test('503 when Redis does not answer in time', async () => {
    // Opens a pooled connection first, then freezes every client for 1 s.
    expect((await authorize(nginx, 'g1', `session=${cookieFor(SID)}`)).status).toBe(200);
    await client.call('CLIENT', 'PAUSE', '1000', 'ALL');
    const { status, err } = await authorize(nginx, 'g1', `session=${cookieFor(SID)}`);
    expect(status).toBe(503);
    expect(err).toMatch(/timeout/);
    await sleep(1100);
    expect((await authorize(nginx, 'g1', `session=${cookieFor(SID)}`)).status).toBe(200);
  });

  test('pooled connections are reused', async () => {
    const cookie = `session=${cookieFor(SID)}`;
    await authorize(nginx, 'g1', cookie);
    const before = await connectionsReceived(client);
    for (let i = 0; i < 200; i++) {
      expect((await authorize(nginx, i % 2 ? 'g1' : 'g3', cookie)).status).toBe(i % 2 ? 200 : 403);
    }
    // 200 sequential checks, one connection (already open) between them.
    expect((await connectionsReceived(client)) - before).toBeLessThanOrEqual(1);

    // A burst opens what it needs; the pool then keeps up to pool_size (16)
    // of them, and a second burst no larger than that opens none.
    const burst = async (n: number) =>
      (await Promise.all(Array.from({ length: n }, () => authorize(nginx, 'g2', cookie)))).map((r) => r.status);
    expect(await burst(40)).toEqual(Array(40).fill(200));
    const afterBurst = await connectionsReceived(client);
    const opened = afterBurst - before;
    expect(opened).toBeGreaterThanOrEqual(0);
    expect(opened).toBeLessThanOrEqual(40);
    const idle = Math.max(1, Math.min(opened + 1, 16));
    expect(await burst(idle)).toEqual(Array(idle).fill(200));
    expect((await connectionsReceived(client)) - afterBurst).toBe(0);
    // Beyond pool_size, connections are closed, not kept: 16 from nginx + this client at most.
    await waitFor(
      'surplus connections to close',
      async () => {
        const clients = ((await client.call('CLIENT', 'LIST')) as string).trim().split('\n');
        return clients.length <= 16 + 1;
      },
      3000,
    );
  });

  test('a check from a timer (no request, no variables) raises an error, as ngx.var does, and crashes nothing', async () => {
    const res = await get(nginx, '/in-timer', `session=${cookieFor(SID)}`);
    expect(res.body.trim()).toMatch(/^false .*API disabled/);
    // The worker is still there, answering checks.
    expect(await authorize(nginx, 'g1', `session=${cookieFor(SID)}`)).toEqual({ status: 200 });
  });

  test('log lines say why, with no secret and no full cookie', async () => {
    const forged = cookieFor(SID, 'not-the-secret');
    await authorize(nginx, 'g1', `session=${forged}`);
    await authorize(nginx, 'g3', `session=${cookieFor(SID)}`);
    await authorize(nginx, 'g1');
    const log = nginx.errorLog();
    expect(log).toMatch(/shared_session: 403 bad signature \(session [0-9a-f]{32}, group g1\)/);
    expect(log).toMatch(/shared_session: 403 not a member of the group \(session [0-9a-f]{32}, group g3\)/);
    expect(log).toMatch(/shared_session: 401 no session cookie/);
    expect(log).not.toContain(SID);
    expect(log).not.toContain(signature(SID));
    expect(log).not.toContain(forged.split('.')[1]);
    expect(log).not.toContain(SECRET);
  });

  describe('the 0.1.x API', () => {
    test('every method, for a member', async () => {
      const res = await get(nginx, '/seed/g1', `session=${cookieFor(SID)}`);
      expect(res.status).toBe(200);
      const out = JSON.parse(res.body);
      expect(out.sid).toEqual([SID, null]);
      expect(out.cookie_sid).toEqual([SID, null]);
      expect(out.verify).toEqual([true, null]);
      expect(out.member).toEqual([true, null]);
      expect(out.groups[0].sort()).toEqual(['g1', 'g2']);
      expect(out.allowed_groups[0].sort()).toEqual(['g1', 'g2']);
      expect(out.data).toEqual([{ username: 'ann', groups: ['g1', 'g2'], theme: 'dark' }, null]);
    });

    test('is_group_member: nil and an error for another group', async () => {
      const out = JSON.parse((await get(nginx, '/seed/g9', `session=${cookieFor(SID)}`)).body);
      expect(out.member).toEqual([null, 'not a member']);
    });

    test('new: nil and an error without a cookie', async () => {
      const res = await get(nginx, '/seed/g1');
      expect(res.status).toBe(401);
      expect(JSON.parse(res.body)).toEqual({ err: 'no session cookie' });
    });

    test('verify_signature: nil and an error for a forged or malformed cookie', async () => {
      const forged = JSON.parse((await get(nginx, '/seed/g1', `session=${cookieFor(SID, 'nope')}`)).body);
      expect(forged.verify).toEqual([null, 'bad signature']);
      const malformed = JSON.parse((await get(nginx, '/seed/g1', 'session=not-a-cookie')).body);
      expect(malformed.verify[0]).toBeNull();
      expect(malformed.verify[1]).toMatch(/^malformed cookie/);
      expect(malformed.member[0]).toBeNull();
      expect(malformed.sid[0]).toBeNull();
    });

    test('list_groups: an empty list for a session without groups', async () => {
      await writeSession(client, PREFIX, OTHER_SID, { username: 'bob' }, { signature: signature(OTHER_SID) });
      const out = JSON.parse((await get(nginx, '/seed/g1', `session=${cookieFor(OTHER_SID)}`)).body);
      expect(out.groups).toEqual([{}, null]); // cjson encodes an empty table as {}
      expect(out.data).toEqual([{ username: 'bob' }, null]);
    });

    test('get_data: data that is not a JSON object counts as empty and is logged', async () => {
      for (const bad of ['[1,2]', 'not json', '"text"', '{"broken":']) {
        await client.set(sessionKeys(PREFIX, SID).data, bad);
        const out = JSON.parse((await get(nginx, '/seed/g1', `session=${cookieFor(SID)}`)).body);
        expect([bad, out.data]).toEqual([bad, [{}, null]]);
      }
      expect(nginx.errorLog()).toMatch(/session data is not a JSON object, treated as empty \(session [0-9a-f]{32}\)/);
    });

    test('get_data: nil and an error when the session is gone', async () => {
      await destroySession(client, PREFIX, SID);
      const out = JSON.parse((await get(nginx, '/seed/g1', `session=${cookieFor(SID)}`)).body);
      expect(out.data).toEqual([null, 'no session data']);
      expect(out.member).toEqual([null, 'not a member']);
    });
  });

  describe('configure()', () => {
    const bad: Array<[string, Record<string, unknown>]> = [
      ['secret', { secret: '' }],
      ['salt', { secret: 's', salt: '' }],
      ['redis.port', { redis: { port: 'abc' } }],
      ['redis.read_timeout', { redis: { read_timeout: 0 } }],
      ['redis.connect_timeout', { redis: { connect_timeout: -1 } }],
      ['redis.keepalive_timeout', { redis: { keepalive_timeout: 0 } }],
      ['key_prefix', { key_prefix: 'bad prefix' }],
      ['cookie_name', { cookie_name: 'a=b' }],
      ['unknown_option', { unknown_option: true }],
      ['redis.sentinel', { redis: { sentinel: 'x' } }],
    ];
    test.each(bad)('names the option "%s"', async (name, opts) => {
      const out = await postJson<{ ok: boolean; err: string }>(nginx.port, '/configure', opts);
      expect(out.ok).toBe(false);
      expect(out.err).toContain(`option "${name}"`);
    });

    test('a failed call leaves the previous configuration in force', async () => {
      await postJson(nginx.port, '/configure', { secret: '' });
      expect((await authorize(nginx, 'g1', `session=${cookieFor(SID)}`)).status).toBe(200);
    });
  });

  // Last in this block: it stops Redis.
  test('503 while Redis is down, 200 again once it is back', async () => {
    const cookie = `session=${cookieFor(SID)}`;
    expect((await authorize(nginx, 'g1', cookie)).status).toBe(200);
    client.disconnect();
    await redis.stop();
    for (let i = 0; i < 5; i++) {
      const { status, err } = await authorize(nginx, 'g1', cookie);
      expect(status).toBe(503);
      expect(err).toMatch(/^redis unavailable: connect: /);
    }
    expect((await get(nginx, '/groups/g1/x', cookie)).status).toBe(503);
    await redis.resume();
    client = redisClient(redis);
    await writeSession(client, PREFIX, SID, { groups: ['g1'] }, { signature: signature(SID) });
    await waitFor('authorize to recover', async () => (await authorize(nginx, 'g1', cookie)).status === 200, 5000);
    expect((await get(nginx, '/groups/g1/x', cookie)).status).toBe(200);
  });
});

describe('authorize() with the stored signature (no secret)', () => {
  let redis: RedisServer;
  let client: Redis;
  let nginx: NginxServer;

  beforeAll(async () => {
    ({ redis, client, nginx } = await startRedisAndNginx((port) => ({
      conf: confFor(port, `{ key_prefix = "${PREFIX}", redis = { port = ${port}, read_timeout = 300 } }`),
    })));
  });

  beforeEach(async () => {
    await client.flushdb();
  });

  afterAll(() => stopRedisAndNginx({ nginx, client, redis }, assertNoCrash));

  test('200 when the cookie matches the stored signature, whatever secret made it', async () => {
    await writeSession(client, PREFIX, SID, { groups: ['g1'] }, { signature: signature(SID, 'any-app-secret') });
    expect(await authorize(nginx, 'g1', `session=${cookieFor(SID, 'any-app-secret')}`)).toEqual({ status: 200 });
    expect((await get(nginx, '/groups/g1/x', `session=${cookieFor(SID, 'any-app-secret')}`)).status).toBe(200);
  });

  test('403 when it does not', async () => {
    await writeSession(client, PREFIX, SID, { groups: ['g1'] }, { signature: signature(SID) });
    expect(await authorize(nginx, 'g1', `session=${cookieFor(SID, 'other')}`)).toEqual({ status: 403, err: 'bad signature' });
  });

  test('403 when nothing is stored (expired or destroyed)', async () => {
    const { status, err } = await authorize(nginx, 'g1', `session=${cookieFor(SID)}`);
    expect(status).toBe(403);
    expect(err).toMatch(/no stored signature/);
  });

  test('403 for a member check that fails, 401 without a cookie', async () => {
    await writeSession(client, PREFIX, SID, { groups: ['g1'] }, { signature: signature(SID) });
    expect((await authorize(nginx, 'g2', `session=${cookieFor(SID)}`)).status).toBe(403);
    expect((await authorize(nginx, 'g1')).status).toBe(401);
  });

  test('503 when Redis answers with an error', async () => {
    await client.sadd(sessionKeys(PREFIX, SID).signature, 'wrong type');
    expect((await authorize(nginx, 'g1', `session=${cookieFor(SID)}`)).status).toBe(503);
  });

  test('the 0.1.x API compares with the stored signature', async () => {
    await writeSession(client, PREFIX, SID, { groups: ['g1'] }, { signature: signature(SID) });
    const ok = JSON.parse((await get(nginx, '/seed/g1', `session=${cookieFor(SID)}`)).body);
    expect(ok.verify).toEqual([true, null]);
    const forged = JSON.parse((await get(nginx, '/seed/g1', `session=${cookieFor(SID, 'x')}`)).body);
    expect(forged.verify).toEqual([null, 'bad signature']);
    await destroySession(client, PREFIX, SID);
    const gone = JSON.parse((await get(nginx, '/seed/g1', `session=${cookieFor(SID)}`)).body);
    expect(gone.verify).toEqual([null, 'no stored signature']);
  });
});

describe('redis password and database', () => {
  /** A redis-server that asks for a password (set after start, so that the helper's PING works). */
  async function startWithPassword(): Promise<{ redis: RedisServer; client: Redis }> {
    const redis = await RedisServer.start();
    const client = redisClient(redis, { db: 3 });
    await client.call('CONFIG', 'SET', 'requirepass', 'redis-pw');
    return { redis, client };
  }

  test('AUTH and SELECT on new connections only', async () => {
    const { redis, client } = await startWithPassword();
    let nginx: NginxServer | undefined;
    try {
      await writeSession(client, PREFIX, SID, { groups: ['g1'] }, { signature: signature(SID) });
      nginx = await NginxServer.start({
        conf: confFor(redis.port, localConfigure(redis.port, ', password = "redis-pw", db = 3')),
      });
      const before = await commandCalls(client, 'auth');
      for (let i = 0; i < 20; i++) {
        expect((await authorize(nginx, 'g1', `session=${cookieFor(SID)}`)).status).toBe(200);
      }
      const after = await commandCalls(client, 'auth');
      // One connection for the checks; and at most one more, opened by a check
      // while the refresh's timer (PROTOCOL.md section 12) held the first.
      expect(after - before).toBeGreaterThanOrEqual(1);
      expect(after - before).toBeLessThanOrEqual(2);
      assertNoCrash(nginx.errorLog());
    } finally {
      await nginx?.dispose();
      client.disconnect();
      await redis.dispose();
    }
  });

  test('503 with a wrong password, never a 500', async () => {
    const { redis, client } = await startWithPassword();
    client.disconnect();
    let nginx: NginxServer | undefined;
    try {
      nginx = await NginxServer.start({ conf: confFor(redis.port, localConfigure(redis.port, ', password = "pw-that-is-wrong-42"')) });
      const { status, err } = await authorize(nginx, 'g1', `session=${cookieFor(SID)}`);
      expect(status).toBe(503);
      expect(err).toMatch(/auth: /);
      expect(nginx.errorLog()).not.toContain('pw-that-is-wrong-42');
    } finally {
      await nginx?.dispose();
      await redis.dispose();
    }
  });
});

describe('start-up', () => {
  test('nginx refuses to start when configure() gets a bad option, naming it', async () => {
    const start = NginxServer.start({ conf: confFor(6379, '{ secret = "s", redis = { port = "not-a-port" } }') });
    await expect(start).rejects.toThrow(NginxStartError);
    await expect(start).rejects.toThrow(/option "redis\.port" must be a number/);
  });

  test('authorize() answers 503 when configure() was never called', async () => {
    const nginx = await NginxServer.start({ conf: confFor(6379, null) });
    try {
      expect(await authorize(nginx, 'g1', `session=${cookieFor(SID)}`)).toEqual({ status: 503, err: 'configure() was not called' });
      expect((await get(nginx, '/groups/g1/x', `session=${cookieFor(SID)}`)).status).toBe(503);
    } finally {
      await nginx.dispose();
    }
  });
});

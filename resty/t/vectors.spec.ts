/**
 * Every case of the protocol's vectors.json, run inside a real nginx worker
 * through the module's public API, in both verification modes:
 *  - local: configure() is given the secret(s) and recomputes the HMAC;
 *  - stored: no secret; the signature is compared with <prefix>:signature:<sid>.
 * Each case runs verify_signature() (0.1.x API) and authorize() (one call).
 */
import Redis from 'ioredis';
import { NginxServer } from '../../stack/nginx-server';
import { RedisServer } from '../../stack/redis-server';
import { postJson } from '../../stack/http-client';
import { signature, vectors, writeSession } from '../../protocol/testkit';
import { luaConnectRedis, nginxConf, stopRedisAndNginx } from './support';

const PREFIX = 'vec';
const GROUP = 'group-vec';

interface Case {
  name: string;
  cookie: string;
  secrets: string[]; // oldest first; the last one is the current secret
  salt: string;
  valid: boolean;
}

const cases: Case[] = [
  ...vectors.valid.map((v: any) => ({
    name: `valid: sid ${v.sid} (salt ${v.salt})`,
    cookie: v.cookie,
    secrets: [v.secret],
    salt: v.salt,
    valid: true,
  })),
  ...vectors.rotation.map((v: any, i: number) => ({
    name: `rotation ${i + 1}: ${v.note}`,
    cookie: v.cookie ?? v.expected_cookie,
    secrets: v.secrets,
    salt: v.salt,
    valid: v.valid ?? true,
  })),
  ...vectors.invalid.cases.map((c: any) => ({
    name: `invalid: ${c.why}`,
    cookie: c.cookie,
    secrets: [vectors.invalid.secret],
    salt: vectors.invalid.salt,
    valid: c.must_accept,
  })),
];

interface Result {
  cookie_seen: boolean;
  session: boolean;
  ok: boolean;
  err?: string;
  status: number;
}

let redis: RedisServer;
let client: Redis;
let nginx: NginxServer;

beforeAll(async () => {
  redis = await RedisServer.start();
  client = new Redis(redis.port, '127.0.0.1', { lazyConnect: true, maxRetriesPerRequest: 1 });
  await client.connect();
  nginx = await NginxServer.start({
    conf: nginxConf({
      http: 'client_body_buffer_size 64k;\n  client_max_body_size 64k;',
      configure: null,
      plainText: false,
      locations: `
    location = /vector {
      content_by_lua_block {
        local cjson = require "cjson.safe"
        local shared_session = require "resty.shared_session"
        ngx.req.read_body()
        local v = assert(cjson.decode(ngx.req.get_body_data()))
        -- Test only: one configuration per case (a real config calls it once, in init).
        shared_session.configure{
          secret = v.secret, secret_fallbacks = v.secret_fallbacks, salt = v.salt,
          key_prefix = "${PREFIX}", redis = { port = ${redis.port} },
        }
        ngx.req.set_header("Cookie", "session=" .. v.cookie)
        ${luaConnectRedis(redis.port)}
        local result = { cookie_seen = ngx.var.http_cookie == "session=" .. v.cookie }
        local session = shared_session:new(red, "session", "${PREFIX}")
        result.session = session ~= nil
        if session then
          local ok, err = session:verify_signature()
          result.ok = ok == true
          result.err = err
        end
        red:set_keepalive()
        result.status = shared_session.authorize("${GROUP}")
        ngx.say(cjson.encode(result))
      }
    }
`,
    }),
  });
});

afterAll(() =>
  stopRedisAndNginx({ nginx, client, redis }, (log) => {
    expect(log).not.toMatch(/signal/); // a worker that crashed: "exited on signal N"
  }),
);

/** Seeds what the writer would have stored for this cookie's session id. */
async function seed(c: Case): Promise<void> {
  await client.flushdb();
  const dot = c.cookie.indexOf('.');
  if (dot <= 0) return;
  const sid = c.cookie.slice(0, dot);
  // The writer issued the cookie if it is valid; otherwise it signed the sid
  // with its current secret, and the cookie is not that.
  const stored = c.valid ? c.cookie.slice(dot + 1) : signature(sid, c.secrets[c.secrets.length - 1], c.salt);
  await writeSession(client, PREFIX, sid, { groups: [GROUP] }, { signature: stored });
}

function run(c: Case, mode: 'local' | 'stored'): Promise<Result> {
  const payload =
    mode === 'local'
      ? { cookie: c.cookie, salt: c.salt, secret: c.secrets[c.secrets.length - 1], secret_fallbacks: c.secrets.slice(0, -1) }
      : { cookie: c.cookie, salt: c.salt };
  return postJson<Result>(nginx.port, '/vector', payload);
}

describe.each(['local', 'stored'] as const)('vectors.json, %s verification', (mode) => {
  test.each(cases.map((c) => [c.name, c] as const))('%s', async (_name, c) => {
    await seed(c);
    const result = await run(c, mode);
    // The cookie reached the module as given (guards the test itself).
    if (!c.cookie.includes('\0')) expect(result.cookie_seen).toBe(true);
    if (c.valid) {
      expect(result).toMatchObject({ session: true, ok: true, status: 200 });
    } else {
      expect(result.ok).not.toBe(true);
      // Present but bad: 403 (an empty cookie is still a cookie).
      expect(result.status).toBe(403);
    }
  });
});

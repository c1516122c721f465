/**
 * Every case of the protocol's cookie-grammar.json (PROTOCOL.md section 10)
 * inside a real nginx worker: the case's lines go out as separate `Cookie`
 * header lines, byte for byte, and the module reads what nginx made of them
 * ($http_cookie: the lines joined with "; "), through from_header and
 * through authorize() (401 absent, 403 refused, 200 for a member's cookie).
 * The busted specs test the same function on the cases; this tests that
 * nginx hands it the header the protocol describes.
 */
import Redis from 'ioredis';
import {
  caseHeaderLines,
  caseOutcome,
  cookieGrammar,
  type CookieGrammarCase,
  type CookieOutcome,
  writeSession,
} from '../../protocol/testkit';
import { request } from '../../stack/http-client';
import { NginxServer } from '../../stack/nginx-server';
import { RedisServer } from '../../stack/redis-server';
import { assertNoCrash, cookieFor, nginxConf, SALT, SECRET, SID, signature, startRedisAndNginx, stopRedisAndNginx } from './support';

const PREFIX = 'grammar';
/** The member's cookie stands for each case's value "A", so that authorize() can let it in. */
const MEMBER = cookieFor(SID);

let redis: RedisServer;
let client: Redis;
let nginx: NginxServer;

beforeAll(async () => {
  ({ redis, client, nginx } = await startRedisAndNginx((port) => ({
    conf: nginxConf({
      http: 'large_client_header_buffers 4 8k;',
      configure: `{
      secret = "${SECRET}", salt = "${SALT}", key_prefix = "${PREFIX}", redis = { port = ${port} },
    }`,
      plainText: false,
      locations: `
    location = /cookie {
      content_by_lua_block {
        local cjson = require "cjson"
        local value, refused = require("resty.shared_session.cookie").from_header(ngx.var.http_cookie, ngx.var.arg_name)
        local hex = value and value:gsub(".", function(c) return string.format("%02x", c:byte()) end)
        ngx.say(cjson.encode({ value = hex or cjson.null, refused = refused or cjson.null }))
      }
    }
    location = /authorize {
      content_by_lua_block {
        ngx.say((require("resty.shared_session").authorize("g1")))
      }
    }
`,
    }),
  })));
  await writeSession(client, PREFIX, SID, { username: 'ann', groups: ['g1'] }, { signature: signature(SID) });
});

afterAll(() => stopRedisAndNginx({ nginx, client, redis }, assertNoCrash));

const headerLines = (lines: string[]): [string, Buffer][] => lines.map((line) => ['Cookie', Buffer.from(line, 'latin1')]);
const hasNul = (c: CookieGrammarCase) => c.lines.some((line) => line.includes('\0'));

/** What nginx read under the case's name: the outcome, or null when nginx answered 400 itself. */
async function readAtNginx(c: CookieGrammarCase): Promise<CookieOutcome | null> {
  const res = await request(nginx.port, `/cookie?name=${encodeURIComponent(c.name ?? 'session')}`, {
    headers: headerLines(caseHeaderLines(c)),
  });
  if (res.status === 400) return null;
  expect(res.status).toBe(200);
  const { value, refused } = JSON.parse(res.body) as { value: string | null; refused: string | null };
  if (value !== null) return { value: Buffer.from(value, 'hex').toString('latin1') };
  return { none: refused === null ? 'absent' : 'refused' };
}

/**
 * authorize()'s status for the case's lines with every value "A" spelled as
 * the member's cookie (in these cases "A" is only ever a value, or part of
 * one): 200 where the case finds "A", 401 absent, 403 otherwise.
 */
async function authorizeAtNginx(c: CookieGrammarCase): Promise<number> {
  const lines = caseHeaderLines({ ...c, lines: c.lines.map((line) => line.replace(/=([ \t"]*)A(?![A-Za-z0-9])/g, `=$1${MEMBER}`)) });
  const res = await request(nginx.port, '/authorize', { headers: headerLines(lines) });
  return res.status === 200 ? Number(res.body.trim()) : res.status;
}

describe('cookie-grammar.json in a real nginx worker', () => {
  test.each(cookieGrammar.cases.map((c) => [c.why, c] as const))('%s', async (_why, c) => {
    const expected = caseOutcome(c);
    if (hasNul(c)) {
      // nginx refuses a header with a NUL byte before any Lua runs (400): no session either.
      expect(expected).toEqual({ none: 'refused' });
      expect(await readAtNginx(c)).toBeNull();
      return;
    }
    expect(await readAtNginx(c)).toEqual(expected);
    if ((c.name ?? 'session') === 'session') {
      const status = 'value' in expected ? (expected.value === 'A' ? 200 : 403) : expected.none === 'absent' ? 401 : 403;
      expect(await authorizeAtNginx(c)).toBe(status);
    }
  });
});

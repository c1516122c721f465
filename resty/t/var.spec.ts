/**
 * The rock's variable reads (var.lua) on a real nginx: through nginx's own lookup (ngx_http_get_variable, the
 * name's hash computed once), they give what ngx.var gives, for every kind of variable a check reads (the Cookie
 * header, a named capture, a `set` variable, a prefix variable, one not found); and where nginx's lookup and
 * lua-nginx-module's disagree on a first read, the reader keeps lua-nginx-module's answer from then on and says
 * so once in the error log.
 */
import { NginxServer } from '../../stack/nginx-server';
import { HeaderLines, HttpConnection, requestBytes } from '../../stack/http-client';
import { nginxConf } from './support';

const NAMES = ['http_cookie', 'group_id', 'Group_Id', 'set_here', 'cookie_session', 'arg_x', 'http_x_absent', 'not_declared_anywhere'];

let nginx: NginxServer;

beforeAll(async () => {
  nginx = await NginxServer.start({
    conf: nginxConf({
      configure: null,
      locations: `
    location ~ ^/read/(?<group_id>[^/]+)$ {
      set $set_here "set in the location";
      content_by_lua_block {
        local var = require "resty.shared_session.var"
        for _, name in ipairs{ ${NAMES.map((n) => `"${n}"`).join(', ')} } do
          -- Twice: the first read is the checked one, the second goes straight through.
          local first, second = var.reader(name)(), var.reader(name)()
          ngx.say(name, "=", tostring(first), "|", tostring(second), "|", tostring(ngx.var[name]))
        end
      }
    }
    location = /disagree {
      content_by_lua_block {
        local var = require "resty.shared_session.var"
        local read = var.lookup_reader_checked_by("http_cookie", function() return "from lua-nginx-module" end)
        ngx.say(read(), "|", read(), "|", read())
      }
    }`,
    }),
  });
});

afterAll(async () => {
  await nginx?.dispose();
});

async function get(path: string, headers: HeaderLines): Promise<string> {
  const conn = new HttpConnection(nginx.port, 5000);
  try {
    const res = await conn.request(requestBytes(path, { headers }));
    expect(res.status).toBe(200);
    return res.body.toString();
  } finally {
    conn.close();
  }
}

describe('the rock reads a variable through nginx own lookup', () => {
  it('as ngx.var does, for every kind of variable, two Cookie lines joined', async () => {
    const body = await get('/read/g-1?x=arg%20value', [
      ['Cookie', 'session=abc.def'],
      ['Cookie', 'other=1'],
    ]);
    const lines = Object.fromEntries(
      body
        .trim()
        .split('\n')
        .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
    );
    expect(lines).toEqual({
      http_cookie: 'session=abc.def; other=1|session=abc.def; other=1|session=abc.def; other=1',
      group_id: 'g-1|g-1|g-1',
      Group_Id: 'g-1|g-1|g-1',
      set_here: 'set in the location|set in the location|set in the location',
      cookie_session: 'abc.def|abc.def|abc.def',
      arg_x: 'arg%20value|arg%20value|arg%20value',
      http_x_absent: 'nil|nil|nil',
      not_declared_anywhere: 'nil|nil|nil',
    });
    expect(nginx.errorLog()).not.toContain('read through ngx_http_lua_ffi_var_get');
  });

  it('without a Cookie header: nil', async () => {
    const body = await get('/read/g-2', {});
    expect(body).toContain('http_cookie=nil|nil|nil\n');
    expect(body).toContain('group_id=g-2|g-2|g-2\n');
  });

  it('keeps lua-nginx-module answer when the two lookups disagree, and says so once', async () => {
    const body = await get('/disagree', { Cookie: 'session=abc.def' });
    expect(body).toBe('from lua-nginx-module|from lua-nginx-module|from lua-nginx-module\n');
    const log = nginx.errorLog();
    expect(log.match(/\$http_cookie read through ngx_http_lua_ffi_var_get/g)).toHaveLength(1);
  });
});

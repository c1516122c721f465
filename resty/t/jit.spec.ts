/**
 * The authorized cache hit compiled by LuaJIT: a real nginx worker with
 * `jit.v` writing every trace event to a file, a few thousand hits, and no
 * trace aborted or blacklisted in the rock's files or in the variable reads
 * (lua-resty-core's var.lua, whose `return ffi_str(...)` LuaJIT cannot
 * compile, is what the rock's own getter avoids). A hit that runs in the
 * interpreter costs about twice the instructions (docs/benchmarks.md).
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeSession } from '../../protocol/testkit';
import { HttpConnection, requestBytes } from '../../stack/http-client';
import { NginxServer } from '../../stack/nginx-server';
import { RedisServer } from '../../stack/redis-server';
import { waitFor } from '../../stack/wait';
import Redis from 'ioredis';
import {
  assertNoCrash,
  get,
  nginxConf,
  SALT,
  SECRET,
  SID,
  sessionCookie,
  signature,
  startRedisAndNginx,
  stopRedisAndNginx,
} from './support';

const PREFIX = 'rss_jit';
const HITS = 3000;

/** Where jit.v and jit.vmdef are: in OpenResty's default path; on Debian, beside luajit2. */
function jitLibraryDir(): string | undefined {
  const share = '/usr/share';
  const dir = readdirSync(share).find((d) => d.startsWith('luajit-2.1') && existsSync(join(share, d, 'jit', 'v.lua')));
  return dir && join(share, dir);
}

/** With `metrics`: configure{ metrics = ... }, counting on the hit path (README, "Operations"). */
function conf(redisPort: number, metrics: boolean) {
  const jitDir = jitLibraryDir();
  return nginxConf({
    dict: '1m',
    http: metrics ? 'lua_shared_dict shared_session_metrics 1m;' : '',
    configure: `{
      secret = "${SECRET}", salt = "${SALT}", key_prefix = "${PREFIX}",
      redis = { port = ${redisPort} },
      decision_cache = { dict = "decisions", all_writers_publish = true },
      ${metrics ? 'metrics = { dict = "shared_session_metrics" },' : ''}
      checks = { group = { group_var = "group_id", generation_var = "shared_session_generation" } },
    }`,
    initWorker: (ctx) => `${jitDir ? `package.path = package.path .. ";${jitDir}/?.lua"` : ''}
    require("jit.v").on("${join(ctx.runDir, 'logs', 'jit-first.log')}")`,
    subscriber: true,
    locations: (ctx) => `
    location ~ ^/groups/(?<group_id>[^/]+)/ {
      set $shared_session_generation "";
      access_by_lua_block {
        require("resty.shared_session").access{ group_var = "group_id",
          generation_var = "shared_session_generation" }
      }
      content_by_lua_block { ngx.print("allowed") }
    }
    # The same check, printing the generation it set (read through ngx.var: not while jit.v is on).
    location ~ ^/generation/(?<group_id>[^/]+)/ {
      set $shared_session_generation "";
      access_by_lua_block {
        require("resty.shared_session").access{ group_var = "group_id",
          generation_var = "shared_session_generation" }
      }
      content_by_lua_block { ngx.print("generation ", ngx.var.shared_session_generation) }
    }
    # The same check as a named one (the demo template's form).
    location ~ ^/checked/(?<group_id>[^/]+)/ {
      set $shared_session_generation "";
      access_by_lua_block { require("resty.shared_session").check("group") }
      content_by_lua_block { ngx.print("allowed") }
    }
    location = /constant {
      access_by_lua_block { require("resty.shared_session").access{ group = "g1" } }
      content_by_lua_block { ngx.print("allowed") }
    }
    location = /no-variable {
      access_by_lua_block { require("resty.shared_session").access{ group_var = "not_declared_anywhere" } }
      content_by_lua_block { ngx.print("allowed") }
    }
    # Test-only: jit.v's output goes to another file from now on (jit.v
    # buffers: the file it leaves is complete), or stops.
    location = /jit {
      content_by_lua_block {
        local v = require "jit.v"
        v.off()
        if ngx.var.arg_to then v.on("${join(ctx.runDir, 'logs')}/" .. ngx.var.arg_to) end
      }
    }
    location = /metrics {
      content_by_lua_block { require("resty.shared_session").serve_metrics() }
    }
    location = /epoch {
      content_by_lua_block { ngx.say(ngx.shared.decisions:get("e") and "up" or "down") }
    }`,
  });
}

/** The rock's Lua files by base name (jit.v names a function's file without its folder), and var.lua. */
const ROCK_FILES = [
  'shared_session.lua',
  ...readdirSync(join(__dirname, '..', 'lib', 'resty', 'shared_session')).filter((f) => f.endsWith('.lua')),
  'var.lua', // lua-resty-core's resty/core/var.lua too: the reads through ngx.var
];

/**
 * Aborts that are how LuaJIT picks its traces, not code left to the interpreter: a root trace that meets an
 * inner loop, or leaves its loop, stops so that the loop gets a trace of its own; a side trace that would unroll
 * a loop too often is tried again from elsewhere. Seen in the Cookie header's grammar (cookie.lua's nested
 * loops): with LuaJIT's loopunroll raised from 15 to 60 the hit's instruction count moved by 0.5%
 * (bench/instructions.ts --access=...). Anything else (an NYI, a blacklisted function, ...) fails.
 */
const TRACE_SELECTION = /-- (inner loop in root trace|leaving loop in root trace|loop unroll limit reached) at /;

/**
 * jit.v's lines about an aborted trace ("[TRACE --- <start> -- <why> at <where>]") or a blacklisted function
 * that name one of the rock's files. A trace that starts in the subscriber (a timer's loop that waits on its
 * socket, not the request's path) is left out.
 */
function abortsInHitPath(log: string): string[] {
  const rock = new RegExp(`(^|[\\s/(])(${ROCK_FILES.map((f) => f.replace('.', '\\.')).join('|')}):\\d+`);
  return log
    .split('\n')
    .filter((line) => /TRACE ---|blacklist/.test(line))
    .filter((line) => !/^\[TRACE --- (\(\d+\/\d+\) )?subscriber\.lua:/.test(line))
    .filter((line) => !TRACE_SELECTION.test(line))
    .filter((line) => rock.test(line));
}

describe.each([
  ['without metrics', false],
  ['with metrics on', true],
])('the authorized cache hit under LuaJIT, %s', (_name, metrics) => {
  let redis: RedisServer;
  let client: Redis;
  let nginx: NginxServer;

  beforeAll(async () => {
    ({ redis, client, nginx } = await startRedisAndNginx((port) => ({ conf: conf(port, metrics) })));
  });

  afterAll(async () => {
    await stopRedisAndNginx({ redis, client, nginx }, (log) => assertNoCrash(log));
  });

  it('is compiled: no trace aborted or blacklisted in the rock or in its variable reads', async () => {
    await writeSession(client, PREFIX, SID, { username: 'ada', groups: ['g1'] }, { signature: signature(SID) });
    await waitFor('the subscriber', async () => (await get(nginx, '/epoch')).body.trim() === 'up');
    const conn = new HttpConnection(nginx.port);
    // The table form and the named check (the demo template's), in turn.
    const forms = ['/groups/g1/x', '/checked/g1/x'].map((path) => requestBytes(path, { headers: { Cookie: sessionCookie(SID) } }));
    const bytes = forms[0];
    try {
      // The first check asks Redis (its code runs a few times only, too few to be traced); then only hits.
      expect((await conn.request(bytes)).status).toBe(200);
      expect((await conn.request(requestBytes('/jit?to=jit-hits.log'))).status).toBe(200);
      const statuses = new Map<number, number>();
      for (let i = 0; i < HITS; i++) {
        const { status } = await conn.request(forms[i % 2]);
        statuses.set(status, (statuses.get(status) ?? 0) + 1);
      }
      expect(Object.fromEntries(statuses)).toEqual({ 200: HITS });
      expect((await conn.request(requestBytes('/jit'))).status).toBe(200);
      const log = readFileSync(join(nginx.runDir, 'logs', 'jit-hits.log'), 'utf8');
      // The hit path was traced at all (jit.v is on and LuaJIT compiled something of the rock's).
      expect(log).toMatch(/TRACE\s+\d+ .*shared_session/);
      expect(abortsInHitPath(log)).toEqual([]);
      if (metrics) {
        // The hits were counted (the variant measures what it says it does), once the worker's timer flushed.
        await waitFor(
          'the flush',
          async () => {
            const m = /shared_session_decisions_total\{result="allowed",reason="none"\} (\d+)/.exec((await get(nginx, '/metrics')).body);
            return Number(m?.[1] ?? 0) >= HITS + 1;
          },
          3000,
        );
      }
    } finally {
      conn.close();
    }
  });

  it('answers in the table form as in the positional one', async () => {
    await client.set(`${PREFIX}:group-generation:g1`, '7');
    await client.publish(`${PREFIX}:invalidate`, '!generation 7 g1');
    const cookie = sessionCookie(SID);
    // A notice is applied by the subscriber, a moment after it is published (the worker may hold an older decision until then).
    let generation = { status: 0, body: '' };
    await waitFor(
      'the generation notice applied',
      async () => {
        generation = await get(nginx, '/generation/g1/x', cookie);
        return generation.body === 'generation 7';
      },
      3000,
    ).catch(() => undefined);
    expect([generation.status, generation.body]).toEqual([200, 'generation 7']);
    expect((await get(nginx, '/generation/g2/x', cookie)).status).toBe(403);
    expect((await get(nginx, '/generation/g1/x')).status).toBe(401);
    expect((await get(nginx, '/constant', cookie)).status).toBe(200);
    expect((await get(nginx, '/checked/g1/x', cookie)).status).toBe(200);
    expect((await get(nginx, '/checked/g2/x', cookie)).status).toBe(403);
    expect((await get(nginx, '/checked/g1/x')).status).toBe(401);
    // A variable that no location sets: no group, refused.
    expect((await get(nginx, '/no-variable', cookie)).status).toBe(403);
  });
});

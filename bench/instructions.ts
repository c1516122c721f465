// Instructions per request, counted by callgrind (Debian's valgrind): a second
// measure beside wrk's rates, which the other load on a machine does not move.
// nginx (one worker) runs under `valgrind --tool=callgrind` with
// instrumentation off; after a warm-up (the JIT's traces, the pools, the
// caches) it is turned on, the counters zeroed, N requests sent one after the
// other on one keep-alive connection, and the counters dumped: the worker's
// total Ir divided by N, nothing subtracted. Each scenario has an nginx of its
// own, so that one (v's reads through ngx.var) cannot blacklist what another
// (the rock) calls. `node bench/dist/bench/instructions.js [--quick]` prints
// the figures alone; `--cookies=N` the same with N sessions' cookies in turn;
// `--metrics` (b) with the rock's metrics off and on (issue 22: at most 2% more).
import { execFile } from 'node:child_process';
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import Redis from 'ioredis';
import { PROTOCOL_DEFAULTS } from '../protocol/testkit/layout';
import { writeSession } from '../protocol/testkit/session';
import { newSessionId, signature } from '../protocol/testkit/signer';
import { HttpConnection, requestBytes } from '../stack/http-client';
import { NginxConfContext, NginxServer } from '../stack/nginx-server';
import { RedisServer } from '../stack/redis-server';
import { REPO_ROOT } from '../stack/nginx-conf';

const run = promisify(execFile);
const SECRET = 'bench-secret';
const GROUP = 'one';

/**
 * The two decision-cache configurations of the benchmark. `worker_entries` at least the sessions active at once
 * (resty/README.md, "Cost"): the 20,000 of (b20k) and the few others of the run; at the default (20,000) every
 * cookie found in the older generation is moved to the newer one, over and over.
 */
export const DECISION_CACHES: Record<string, string> = {
  'ttl = 1': '{ dict = "shared_session", ttl = 1, worker_entries = 25000 }',
  all_writers_publish: '{ dict = "shared_session", all_writers_publish = true, worker_entries = 25000 }',
};

/**
 * What a request does at nginx: (a) nothing, (n) enters Lua and does nothing, (v) reads the two inputs through
 * ngx.var, (b) the rock. Only (b) depends on the decision cache's configuration.
 */
export const ACCESS: Record<string, string> = {
  a: '',
  n: 'access_by_lua_block { }',
  v: 'access_by_lua_block { local group, cookie = ngx.var.group_id, ngx.var.http_cookie }',
  b: 'access_by_lua_block { require("resty.shared_session").check("group") }',
};

/** (r): the two inputs read as the rock reads them (var.lua), nothing else: what any check that reads them pays. */
const ACCESS_READS = 'access_by_lua_block { require("bench_inputs").read() }';

/** (b) in access()'s table form, the template's before named checks (`--table-form`). */
const ACCESS_TABLE_FORM = 'access_by_lua_block { require("resty.shared_session").access{ group_var = "group_id" } }';

/** The rock's access call before the table form (to measure a commit that predates it). */
const ACCESS_OLD_FORM = 'access_by_lua_block { require("resty.shared_session").access(ngx.var.group_id) }';

const PATH = `/app/api/v1/group/${GROUP}/cacheable/bench`;

/** With `metrics`: configure{ metrics = ... } (resty/README, "Operations"), its flush timer running in the worker. */
function conf(redisPort: number, decisionCache: string, access: string, metrics = false) {
  // One process (no master): the one callgrind_control reaches, its init_worker_by_lua run as worker 0's.
  return (ctx: NginxConfContext) => `${ctx.preamble.replace('master_process on;', 'master_process off;')}
env SESSION_SECRET;
events { worker_connections 256; }
http {
  ${ctx.httpPreamble}
  lua_shared_dict shared_session 8m;
  ${metrics ? 'lua_shared_dict shared_session_metrics 1m;' : ''}
  init_by_lua_block {
    package.path = "${join(REPO_ROOT, 'bench', 'lua')}/?.lua;" .. package.path
    require("resty.shared_session").configure{
      secret = os.getenv("SESSION_SECRET"),
      redis = { host = "127.0.0.1", port = ${redisPort} },
      decision_cache = ${decisionCache},
      ${access.includes('.check(') ? 'checks = { group = { group_var = "group_id" } },' : '' /* (a rock before named checks refuses the option) */}
      ${metrics ? 'metrics = { dict = "shared_session_metrics" },' : ''}
    }
  }
  init_worker_by_lua_block { require("resty.shared_session").start_subscriber() }
  proxy_cache_path ${join(ctx.runDir, 'cache')} levels=1:2 keys_zone=bench:1m max_size=8m inactive=60m use_temp_path=off;
  upstream app { server 127.0.0.1:${ctx.extraPorts[0]}; keepalive 8; }
  server {
    listen 127.0.0.1:${ctx.extraPorts[0]};
    location / { return 200 "resource\\n"; }
  }
  server {
    listen 127.0.0.1:${ctx.port};
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    location ~ "^/app/api/v1/group/(?<group_id>[A-Za-z0-9_-]{1,64})/cacheable/(?<resource_id>[A-Za-z0-9_-]{1,128})$" {
      ${access}
      proxy_cache bench;
      proxy_cache_key "$group_id:/app/api/v1/group/$group_id/cacheable/$resource_id";
      proxy_cache_valid 200 1h;
      proxy_pass http://app/app/api/v1/group/$group_id/cacheable/$resource_id;
    }
  }
}
`;
}

/** n requests on one keep-alive connection, the cookies taken in turn (round-robin). */
async function send(port: number, cookies: string | string[], n: number): Promise<void> {
  const conn = new HttpConnection(port, 60_000);
  const all = (Array.isArray(cookies) ? cookies : [cookies]).map((cookie) =>
    requestBytes(PATH, { headers: { Cookie: cookie }, keepAlive: true }),
  );
  try {
    for (let i = 0; i < n; i++) {
      const res = await conn.request(all[i % all.length]);
      if (res.status !== 200) throw new Error(`request ${i}: ${res.status} ${res.body?.toString() ?? ''}`);
    }
  } finally {
    conn.close();
  }
}

async function callgrindControl(option: string, pid: number): Promise<void> {
  await run('callgrind_control', [option, String(pid)], { timeout: 120_000 });
}

/** The counted instructions per request of one scenario in an nginx of its own. */
async function perRequest(
  redisPort: number,
  decisionCache: string,
  access: string,
  cookie: string | string[],
  counts: { warm: number; measured: number },
  metrics = false,
): Promise<number> {
  const dir = mkdtempSync(join(tmpdir(), 'rss-callgrind-'));
  const wrapper = join(dir, 'nginx-under-callgrind');
  // `nginx -t` runs plain; the server itself under callgrind, instrumentation off until the warm-up is over.
  writeFileSync(
    wrapper,
    `#!/bin/sh
case " $* " in *" -t "*) exec nginx "$@";; esac
exec valgrind --tool=callgrind -q --instr-atstart=no ${process.env.CALLGRIND_OPTS ?? ''} --callgrind-out-file=${dir}/cg.%p nginx "$@"
`,
  );
  chmodSync(wrapper, 0o755);
  const nginx = await NginxServer.start({
    conf: conf(redisPort, decisionCache, access, metrics),
    env: { SESSION_SECRET: SECRET },
    extraPorts: 1,
    nginxBin: wrapper,
    startTimeoutMs: 120_000,
  });
  try {
    const worker = nginx.pid!;
    await send(nginx.port, cookie, counts.warm);
    await callgrindControl('--instr=on', worker);
    await send(nginx.port, cookie, 50);
    await callgrindControl('-z', worker);
    await send(nginx.port, cookie, counts.measured);
    await callgrindControl('-d', worker);
    const dumps = readdirSync(dir).filter((f) => f.startsWith(`cg.${worker}.`));
    const totals = dumps
      .map((f) => /^(?:totals|summary): (\d+)/m.exec(readFileSync(join(dir, f), 'utf8')))
      .filter((m): m is RegExpExecArray => m !== null)
      .map((m) => Number(m[1]));
    if (!totals.length) throw new Error(`callgrind wrote no dump for worker ${worker} in ${dir}: ${readdirSync(dir).join(' ')}`);
    return Math.round(totals[totals.length - 1] / counts.measured);
  } finally {
    await nginx.dispose();
    // CALLGRIND_KEEP=1 keeps the dumps, for callgrind_annotate; CALLGRIND_OPTS adds options (--cache-sim=yes).
    if (process.env.CALLGRIND_KEEP) console.log(`callgrind dumps kept in ${dir}`);
    else rmSync(dir, { recursive: true, force: true });
  }
}

/** A session of the group, written as the protocol says; its Cookie header value. */
async function seedSession(client: Redis, user = 'joe@example.com', ttl = 86400): Promise<string> {
  const sid = newSessionId();
  const sig = signature(sid, SECRET, PROTOCOL_DEFAULTS.salt);
  await writeSession(client, PROTOCOL_DEFAULTS.keyPrefix, sid, { username: user, groups: [GROUP] }, { signature: sig, ttl });
  return `session=${sid}.${sig}`;
}

export interface InstructionCounts {
  /** Per decision-cache configuration, per scenario (a, n, v, b): instructions per request. */
  [config: string]: Record<string, number>;
}

/** Instructions per request of (a), (n), (v) (once) and (b) under both decision-cache configurations. */
export async function instructionCounts(
  options: { quick?: boolean; oldForm?: boolean; tableForm?: boolean } = {},
): Promise<InstructionCounts> {
  const counts = options.quick ? { warm: 2000, measured: 500 } : { warm: 4000, measured: 2000 };
  const redis = await RedisServer.start();
  const client = new Redis(redis.url);
  try {
    const cookie = await seedSession(client);
    const shared: Record<string, number> = {};
    for (const id of ['a', 'n', 'v']) {
      shared[id] = await perRequest(redis.port, DECISION_CACHES['ttl = 1'], ACCESS[id], cookie, counts);
      console.log(`instructions per request, (${id}): ${shared[id]}`);
    }
    const result: InstructionCounts = {};
    for (const [name, dc] of Object.entries(DECISION_CACHES)) {
      const access = options.oldForm ? ACCESS_OLD_FORM : options.tableForm ? ACCESS_TABLE_FORM : ACCESS.b;
      const b = await perRequest(redis.port, dc, access, cookie, counts);
      console.log(`instructions per request, ${name}, (b): ${b}`);
      result[name] = { ...shared, b };
    }
    return result;
  } finally {
    client.disconnect();
    await redis.stop();
  }
}

/** `--access='access_by_lua_block { ... }'`: that one location alone (under all_writers_publish), for looking into a cost. */
async function oneBlock(block: string, quick: boolean): Promise<void> {
  const redis = await RedisServer.start();
  const client = new Redis(redis.url);
  try {
    const cookie = await seedSession(client);
    const counts = quick ? { warm: 2000, measured: 500 } : { warm: 4000, measured: 2000 };
    const n = await perRequest(redis.port, DECISION_CACHES.all_writers_publish, block, cookie, counts);
    console.log(`instructions per request: ${n}`);
  } finally {
    client.disconnect();
    await redis.stop();
  }
}

/**
 * `--cookies=N`: (a), (v) and (b) (under all_writers_publish) with N sessions, their cookies sent in turn, against (b)
 * with one (b1): what the rock pays per request for many sessions; `--only=b,b1` runs those alone, `--requests=N`
 * counts N requests (several rounds of the cookies: GC cycles, which walk every worker entry, averaged in). The warm-up sends each cookie twice (its first check
 * misses and asks Redis; the second is the hit every later one is).
 */
export async function manyCookieCounts(
  n: number,
  quick: boolean,
  scenarios: string[] = ['b1', 'a', 'v', 'b'],
  requests?: number,
): Promise<Record<string, number>> {
  const redis = await RedisServer.start();
  const client = new Redis(redis.url);
  try {
    const cookies: string[] = [];
    for (let i = 0; i < n; i += 500) {
      const batch = [];
      for (let j = i; j < Math.min(n, i + 500); j++) batch.push(seedSession(client, `user${j}@example.com`, 86400 * 31));
      cookies.push(...(await Promise.all(batch)));
    }
    const measured = requests ?? (quick ? Math.max(500, n) : Math.max(2000, 2 * n));
    const counts = { warm: Math.max(quick ? 2000 : 4000, 2 * n), measured };
    const dc = DECISION_CACHES.all_writers_publish;
    const result: Record<string, number> = {};
    if (scenarios.includes('b1')) {
      result.b1 = await perRequest(redis.port, dc, ACCESS.b, cookies[0], counts);
      console.log(`instructions per request, (b), one cookie: ${result.b1}`);
    }
    for (const id of ['a', 'r', 'v', 'b'].filter((s) => scenarios.includes(s))) {
      result[id] = await perRequest(redis.port, dc, id === 'r' ? ACCESS_READS : ACCESS[id], cookies, counts);
      console.log(`instructions per request, (${id}), ${n} cookies: ${result[id]}`);
    }
    return result;
  } finally {
    client.disconnect();
    await redis.stop();
  }
}

/** `--metrics`: (b) under both decision-cache configurations with metrics off, then on, each in an nginx of its own. */
export async function metricsCost(quick: boolean): Promise<Record<string, { off: number; on: number }>> {
  const redis = await RedisServer.start();
  const client = new Redis(redis.url);
  try {
    const cookie = await seedSession(client);
    const counts = quick ? { warm: 2000, measured: 500 } : { warm: 4000, measured: 2000 };
    const result: Record<string, { off: number; on: number }> = {};
    for (const [name, dc] of Object.entries(DECISION_CACHES)) {
      const off = await perRequest(redis.port, dc, ACCESS.b, cookie, counts);
      const on = await perRequest(redis.port, dc, ACCESS.b, cookie, counts, true);
      console.log(`instructions per request, ${name}, (b): metrics off ${off}, on ${on} (${(((on - off) / off) * 100).toFixed(2)}%)`);
      result[name] = { off, on };
    }
    return result;
  } finally {
    client.disconnect();
    await redis.stop();
  }
}

const ACCESS_ARG = process.argv.find((a) => a.startsWith('--access='))?.slice('--access='.length);

const COOKIES_ARG = process.argv.find((a) => a.startsWith('--cookies='))?.slice('--cookies='.length);

if (require.main === module && process.argv.includes('--metrics')) {
  metricsCost(process.argv.includes('--quick')).catch((error) => {
    console.error(error);
    process.exitCode = 1;
  });
} else if (require.main === module && COOKIES_ARG !== undefined) {
  const only = process.argv.find((a) => a.startsWith('--only='))?.slice('--only='.length);
  const requests = process.argv.find((a) => a.startsWith('--requests='))?.slice('--requests='.length);
  manyCookieCounts(Number(COOKIES_ARG), process.argv.includes('--quick'), only?.split(','), requests ? Number(requests) : undefined).then(
    (c) =>
      console.log(
        `${COOKIES_ARG} cookies: a ${c.a}, v ${c.v} (v/a ${(c.a / c.v).toFixed(3)}), b ${c.b} (b/a ${(c.a / c.b).toFixed(3)}); one cookie: b ${c.b1}`,
      ),
    (error) => {
      console.error(error);
      process.exitCode = 1;
    },
  );
} else if (require.main === module && ACCESS_ARG !== undefined) {
  oneBlock(ACCESS_ARG, process.argv.includes('--quick')).catch((error) => {
    console.error(error);
    process.exitCode = 1;
  });
} else if (require.main === module) {
  instructionCounts({
    quick: process.argv.includes('--quick'),
    oldForm: process.argv.includes('--old-form'),
    tableForm: process.argv.includes('--table-form'),
  }).then(
    (r) => {
      for (const [name, c] of Object.entries(r)) {
        console.log(
          `${name}: a ${c.a}, n ${c.n} (n/a ${(c.a / c.n).toFixed(3)}), v ${c.v} (v/a ${(c.a / c.v).toFixed(3)}), b ${c.b} (b/a ${(c.a / c.b).toFixed(3)})`,
        );
      }
    },
    (error) => {
      console.error(error);
      process.exitCode = 1;
    },
  );
}

// `npm run bench:cluster`: resty.shared_session on Redis Cluster (3 primaries,
// 3 replicas, cluster layout) next to one Redis (v1 layout): the authorized
// decision-cache hit, the cost of a miss in each layout (the compact one
// too), the revocation delay with notices published on any node, and Redis
// memory per session for each layout next to connect-redis's one key. Writes
// docs/benchmarks-cluster.md. `-- --quick` for a short run.
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import Redis, { Cluster } from 'ioredis';
import { KeyLayout, PROTOCOL_DEFAULTS, sessionKeyList } from '../protocol/testkit/layout';
import { destroySession, writeSession } from '../protocol/testkit/session';
import { signature } from '../protocol/testkit/signer';
import { newTimedSessionId } from '../protocol/testkit/session-id';
import { request } from '../stack/http-client';
import { NginxServer } from '../stack/nginx-server';
import { REPO_ROOT } from '../stack/nginx-conf';
import { percentile } from '../stack/percentile';
import { RedisClusterStack } from '../stack/redis-cluster';
import { RedisServer } from '../stack/redis-server';

const run = promisify(execFile);
const QUICK = process.argv.includes('--quick');
const ROUNDS = QUICK ? 1 : 3;
const SECONDS = QUICK ? 2 : 4;
const TRIALS = QUICK ? 100 : 300;
const SECRET = 'bench-secret';
const SALT = PROTOCOL_DEFAULTS.salt;
const PREFIX = 'bench';
const TTL = 3600;

type Client = Redis | Cluster;

async function login(client: Client, layout: KeyLayout, groups = ['one']): Promise<{ sid: string; cookie: string }> {
  const sid = newTimedSessionId(Date.now());
  const data = { username: `u-${sid.slice(-8)}@example.com`, groups, _permanent: true };
  await writeSession(client, PREFIX, sid, data, { signature: signature(sid, SECRET, SALT), ttl: TTL, layout });
  return { sid, cookie: `session=${sid}.${signature(sid, SECRET, SALT)}` };
}

/**
 * One nginx, one worker: `/open/` without a check, `/hit/<group>/` checked with the decision cache; without
 * `cache`, no decision cache at all, so that every check is what a miss costs (an HMAC and a Redis round trip).
 */
function conf(redis: string, layout: KeyLayout, cache = true) {
  return (ctx: { preamble: string; httpPreamble: string; port: number }) => `${ctx.preamble}
events { worker_connections 1024; }
http {
  ${ctx.httpPreamble}
  access_log off;
  lua_shared_dict decisions 16m;
  init_by_lua_block {
    local shared_session = require "resty.shared_session"
    shared_session.configure{
      secret = "${SECRET}", key_prefix = "${PREFIX}", key_layout = "${layout}", redis = { ${redis} },
      ${cache ? 'decision_cache = { dict = "decisions", all_writers_publish = true },' : ''}
    }
  }
  ${cache ? 'init_worker_by_lua_block { require("resty.shared_session").start_subscriber() }' : ''}
  server {
    listen 127.0.0.1:${ctx.port};
    location /open/ { content_by_lua_block { ngx.print("ok") } }
    location ~ ^/hit/(?<group_id>[^/]+)/ {
      access_by_lua_block { require("resty.shared_session").access(ngx.var.group_id) }
      content_by_lua_block { ngx.print("ok") }
    }
  }
}
`;
}

async function wrk(port: number, path: string, cookie: string): Promise<number> {
  const { stdout } = await run(
    'taskset',
    ['-c', '1', 'wrk', '-t1', '-c32', `-d${SECONDS}s`, '-H', `Cookie: ${cookie}`, `http://127.0.0.1:${port}${path}`],
    {
      encoding: 'utf8',
    },
  );
  const non2xx = /Non-2xx or 3xx responses:\s+(\d+)/.exec(stdout);
  if (non2xx) throw new Error(`wrk got ${non2xx[1]} error responses from ${path}`);
  return Number(/Requests\/sec:\s+([\d.]+)/.exec(stdout)![1]);
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)];

async function memory(client: Client, keys: string[]): Promise<number> {
  let total = 0;
  for (const key of keys) total += Number((await client.call('MEMORY', 'USAGE', key)) ?? 0);
  return total;
}

/** Time from the writer's answer (the destroy and its notice) to nginx's first refusal, for `trials` sessions. */
async function revocation(nginx: NginxServer, client: Client, layout: KeyLayout, trials: number): Promise<number[]> {
  const times: number[] = [];
  for (let i = 0; i < trials; i++) {
    const { sid, cookie } = await login(client, layout);
    const get = async () => (await request(nginx.port, '/hit/one/x', { headers: { Cookie: cookie } })).status;
    if ((await get()) !== 200 || (await get()) !== 200) throw new Error('the session was not allowed');
    await destroySession(client, PREFIX, sid, { publish: true, layout });
    const t0 = performance.now();
    while ((await get()) !== 403) {
      if (performance.now() - t0 > 2000) throw new Error('no refusal within 2 s');
    }
    times.push(performance.now() - t0);
  }
  return times;
}

async function main(): Promise<void> {
  const started = Date.now();
  const loadStart = loadavg()[0].toFixed(1);
  const single = await RedisServer.start();
  const cluster = await RedisClusterStack.start();
  const one = new Redis(single.url);
  const many = cluster.client();
  const nodes = cluster.startupNodes.map((n) => `{ host = "${n.host}", port = ${n.port} }`).join(', ');
  const nginxes: NginxServer[] = [];
  try {
    const a = await NginxServer.start({ conf: conf(`port = ${single.port}`, 'v1') });
    nginxes.push(a);
    const b = await NginxServer.start({ conf: conf(`cluster = { nodes = { ${nodes} } }`, 'cluster') });
    nginxes.push(b);
    const aMiss = await NginxServer.start({ conf: conf(`port = ${single.port}`, 'v1', false) });
    nginxes.push(aMiss);
    const bMiss = await NginxServer.start({ conf: conf(`cluster = { nodes = { ${nodes} } }`, 'cluster', false) });
    nginxes.push(bMiss);
    // The compact layout (PROTOCOL.md section 15): one GET per miss, on one Redis and on the cluster.
    const cMiss = await NginxServer.start({ conf: conf(`port = ${single.port}`, 'compact', false) });
    nginxes.push(cMiss);
    const dMiss = await NginxServer.start({ conf: conf(`cluster = { nodes = { ${nodes} } }`, 'compact', false) });
    nginxes.push(dMiss);
    const s1 = await login(one, 'v1');
    const s2 = await login(many, 'cluster');
    const s3 = await login(one, 'compact');
    const s4 = await login(many, 'compact');
    await new Promise((r) => setTimeout(r, 1000)); // both subscribers up
    const rows: Record<string, number[]> = {
      open: [],
      single: [],
      cluster: [],
      missSingle: [],
      missCluster: [],
      missCompact: [],
      missCompactCluster: [],
    };
    for (let round = 0; round < ROUNDS; round++) {
      rows.open.push(await wrk(a.port, '/open/x', s1.cookie));
      rows.single.push(await wrk(a.port, '/hit/one/x', s1.cookie));
      rows.cluster.push(await wrk(b.port, '/hit/one/x', s2.cookie));
      rows.missSingle.push(await wrk(aMiss.port, '/hit/one/x', s1.cookie));
      rows.missCluster.push(await wrk(bMiss.port, '/hit/one/x', s2.cookie));
      rows.missCompact.push(await wrk(cMiss.port, '/hit/one/x', s3.cookie));
      rows.missCompactCluster.push(await wrk(dMiss.port, '/hit/one/x', s4.cookie));
    }
    const missRatios = rows.missSingle.map((s, i) => rows.missCluster[i] / s);
    const ratios = rows.single.map((s, i) => rows.cluster[i] / s);
    const revSingle = await revocation(a, one, 'v1', TRIALS);
    const revCluster = await revocation(b, many, 'cluster', TRIALS);
    // Memory: the same session in each layout, and the one key connect-redis 7 writes for it.
    const sid = s1.sid;
    const expressSession = JSON.stringify({
      cookie: {
        originalMaxAge: TTL * 1000,
        expires: new Date(Date.now() + TTL * 1000).toISOString(),
        secure: false,
        httpOnly: true,
        path: '/',
        sameSite: 'lax',
      },
      username: `u-${sid.slice(-8)}@example.com`,
      groups: ['one'],
    });
    await one.set(`sess:${sid}`, expressSession, 'EX', TTL);
    const memV1 = await memory(one, sessionKeyList(PREFIX, sid, 'v1'));
    await writeSession(
      one,
      PREFIX,
      sid,
      { username: `u-${sid.slice(-8)}@example.com`, groups: ['one'], _permanent: true },
      { signature: signature(sid, SECRET, SALT), ttl: TTL, layout: 'cluster' },
    );
    const memCluster = await memory(one, sessionKeyList(PREFIX, sid, 'cluster'));
    await writeSession(
      one,
      PREFIX,
      sid,
      { username: `u-${sid.slice(-8)}@example.com`, groups: ['one'], _permanent: true },
      { signature: signature(sid, SECRET, SALT), ttl: TTL, layout: 'compact' },
    );
    const memCompact = await memory(one, sessionKeyList(PREFIX, sid, 'compact'));
    const memPlain = await memory(one, [`sess:${sid}`]);
    const fmt = (n: number) => Math.round(n).toLocaleString('en-US');
    const p = (xs: number[], q: number) => percentile(xs, q).toFixed(2);
    const over = (xs: number[], ms: number) => xs.filter((x) => x > ms).length;
    const tail = (xs: number[]) => `max ${Math.max(...xs).toFixed(2)} ms, ${over(xs, 10)} over 10 ms, ${over(xs, 30)} over 30 ms`;
    const md = `# Benchmark: Redis Cluster

Written by \`npm run bench:cluster\` on ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC
(${Math.round((Date.now() - started) / 1000)} s${QUICK ? ', --quick' : ''}; load average ${loadStart} at the start, ${loadavg()[0].toFixed(1)} at the end,
on ${cpus().length} cores). Absolute figures depend on the machine; compare the ratios.

- Method: one nginx worker per Redis setup, all servers on 127.0.0.1, wrk on CPU 1
  (\`wrk -t1 -c32 -d${SECONDS}s\`), ${ROUNDS} round${ROUNDS > 1 ? 's' : ''}, scenarios in turn. The cluster is 3 primaries
  and 3 replicas (\`redis-cli --cluster create\`), with the cluster layout (PROTOCOL.md section 14);
  the single Redis has the v1 layout. Both nginx keep decisions (\`all_writers_publish\`) and subscribe to
  notices. The location takes the group from a regex capture of the URL, as the demo's does, and answers
  from Lua rather than from \`proxy_cache\`.

| what | req/s (median) | every round |
|---|---:|---|
| no authorization (the limit) | ${fmt(median(rows.open))} | ${rows.open.map(fmt).join(', ')} |
| authorized, decision-cache hit, one Redis | ${fmt(median(rows.single))} | ${rows.single.map(fmt).join(', ')} |
| authorized, decision-cache hit, Redis Cluster | ${fmt(median(rows.cluster))} | ${rows.cluster.map(fmt).join(', ')} |
| authorized, every check a miss (no decision cache), one Redis | ${fmt(median(rows.missSingle))} | ${rows.missSingle.map(fmt).join(', ')} |
| authorized, every check a miss (no decision cache), Redis Cluster | ${fmt(median(rows.missCluster))} | ${rows.missCluster.map(fmt).join(', ')} |
| the same, compact layout, one Redis | ${fmt(median(rows.missCompact))} | ${rows.missCompact.map(fmt).join(', ')} |
| the same, compact layout, Redis Cluster | ${fmt(median(rows.missCompactCluster))} | ${rows.missCompactCluster.map(fmt).join(', ')} |

- **Cluster ÷ one Redis, authorized hit: ${median(ratios).toFixed(2)}** (median of the per-round ratios; target ≥ 0.97):
  a hit asks no Redis, so where the sessions live does not show.
- **A decision-cache miss** (nginx without \`decision_cache\`, so every check is one: the cookie's HMAC and one
  round trip to the session's primary, \`SISMEMBER\`; on the cluster layout, section 13's mark and the group's
  generation are asked of their own primaries only when nginx keeps no value for them, which it does under a
  live subscription: here there is none, so the cluster's miss is the most it costs): one Redis
  ${fmt(median(rows.missSingle))} req/s, the cluster ${fmt(median(rows.missCluster))} req/s, **cluster ÷ one Redis
  ${median(missRatios).toFixed(2)}**; a hit runs at ${(median(rows.single) / median(rows.missSingle)).toFixed(1)} times a
  miss on one Redis.
- **The compact layout's miss** (PROTOCOL.md section 15: one \`GET\` of the session's one key, the signature and the
  groups read from its value in Lua): one Redis ${fmt(median(rows.missCompact))} req/s (**${(median(rows.missCompact) / median(rows.missSingle)).toFixed(2)}×
  the v1 layout's miss**), the cluster ${fmt(median(rows.missCompactCluster))} req/s (${(median(rows.missCompactCluster) / median(rows.missCluster)).toFixed(2)}× the
  cluster layout's).
- **Revocation** (${TRIALS} trials each: a session allowed and cached, then destroyed and announced by the writer;
  time from the writer's answer to nginx's first refusal): one Redis p50 ${p(revSingle, 50)} ms, p99 ${p(revSingle, 99)} ms
  (${tail(revSingle)});
  **cluster p50 ${p(revCluster, 50)} ms, p99 ${p(revCluster, 99)} ms** (${tail(revCluster)}; target p99 ≤ 10 ms).
  On the cluster the notice is published on the session's primary, and nginx's subscriber, SUBSCRIBEd on every
  primary, reads it from that primary's connection without waiting for the cluster bus (PROTOCOL.md section 14).
- **Redis memory per session** (\`MEMORY USAGE\` of every key of one session with one group, the same username and
  group in each): v1 layout ${memV1} B, cluster layout ${memCluster} B, **compact layout ${memCompact} B**, connect-redis's
  one key ${memPlain} B: **${(memCompact / memPlain).toFixed(2)}× connect-redis for the compact layout** (target ≤ 1.3×),
  ${(memCluster / memPlain).toFixed(2)}× for the cluster layout.
`;
    writeFileSync(join(REPO_ROOT, 'docs/benchmarks-cluster.md'), md);
    console.log(md);
  } finally {
    for (const n of nginxes) await n.dispose();
    one.disconnect();
    many.disconnect();
    await cluster.dispose();
    await single.dispose();
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});

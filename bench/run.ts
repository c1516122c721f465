// `npm run bench`: how fast an authorized group resource is served, against
// the limit (an unauthorized cache hit) and the alternatives; and how fast a
// logout reaches nginx. Writes docs/benchmarks.md. `-- --quick` runs in under a minute.
import { execFile, spawnSync } from 'node:child_process';
import { promisify } from 'node:util';
import { cpus, totalmem } from 'node:os';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Redis from 'ioredis';
import { cookieSetBy, mustLogin } from '../stack/demo-login';
import { HttpConnection, request, requestBytes } from '../stack/http-client';
import { NginxServer } from '../stack/nginx-server';
import { percentile } from '../stack/percentile';
import { REPO_ROOT } from '../stack/nginx-conf';
import { freePort } from '../stack/ports';
import { ServerProcess } from '../stack/server-process';
import { RedisServer } from '../stack/redis-server';

const run = promisify(execFile);
const QUICK = process.argv.includes('--quick');
const ROUNDS = QUICK ? 1 : 5;
const SECONDS = QUICK ? 2 : 5;
const TRIALS = QUICK ? 200 : 1000;
const SECRET = 'bench-secret';
const GROUP = 'one';
const DECISION_TTL = 1;
const RESOURCE = `/app/api/v1/group/${GROUP}/cacheable/bench`;

interface Scenario {
  id: string;
  title: string;
  port: () => number;
  path: string;
  cookie: () => string;
}

/** wrk, on CPU 1 (the servers run on CPU 0), without blocking this process (its own HTTP connections keep their timers). */
async function wrk(port: number, path: string, cookie: string, seconds: number): Promise<number> {
  const { stdout: out } = await run(
    'taskset',
    ['-c', '1', 'wrk', '-t1', '-c32', `-d${seconds}s`, '-H', `Cookie: ${cookie}`, `http://127.0.0.1:${port}${path}`],
    { encoding: 'utf8' },
  );
  const rps = /Requests\/sec:\s+([\d.]+)/.exec(out);
  const non2xx = /Non-2xx or 3xx responses:\s+(\d+)/.exec(out);
  if (!rps) throw new Error(`wrk printed no rate:\n${out}`);
  if (non2xx) throw new Error(`wrk got ${non2xx[1]} error responses from ${path}: the scenario is broken`);
  return Number(rps[1]);
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

/** One nginx, one worker, one upstream, one cached resource; the locations differ only in how they authorize. */
function benchConf(appPort: number, redisPort: number) {
  const cache = `
      proxy_cache bench;
      proxy_cache_key "${GROUP}:${RESOURCE}";
      proxy_ignore_headers Cache-Control Expires;
      proxy_pass http://app${RESOURCE};`;
  return (ctx: { preamble: string; httpPreamble: string; port: number; runDir: string }) => `${ctx.preamble}
env SESSION_SECRET;
events { worker_connections 1024; }
http {
  ${ctx.httpPreamble}
  lua_shared_dict shared_session 10m;
  init_by_lua_block {
    require("resty.shared_session").configure{
      secret = os.getenv("SESSION_SECRET"),
      redis = { host = "127.0.0.1", port = ${redisPort}, pool_size = 64 },
      decision_cache = { dict = "shared_session", ttl = ${DECISION_TTL} },
    }
  }
  init_worker_by_lua_block { require("resty.shared_session").start_subscriber() }
  proxy_cache_path ${join(ctx.runDir, 'cache')} levels=1:2 keys_zone=bench:10m max_size=64m inactive=60m use_temp_path=off;
  upstream app { server 127.0.0.1:${appPort}; keepalive 64; }
  server {
    listen 127.0.0.1:${ctx.port};
    proxy_http_version 1.1;
    proxy_set_header Connection "";
    set $bench_redis_port ${redisPort};
    set $bench_group ${GROUP};
    location = /a { ${cache} }
    location = /b {
      access_by_lua_block { require("resty.shared_session").access("${GROUP}") }
      ${cache}
    }
    location = /c {
      access_by_lua_file ${join(REPO_ROOT, 'bench', 'seed-2017.lua')};
      ${cache}
    }
    location = /d {
      auth_request /_auth;
      ${cache}
    }
    location = /_auth {
      internal;
      proxy_pass http://app/app/auth/group/${GROUP};
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header Connection "";
    }
    location = /e { proxy_pass http://app${RESOURCE}; }
    location = /logout-probe {
      access_by_lua_block { require("resty.shared_session").access("${GROUP}") }
      ${cache}
    }
  }
}
`;
}

/** A Cookie header of joe's session at the demo app. */
async function login(appPort: number): Promise<string> {
  return `session=${await mustLogin(appPort, 'joe@example.com', 'itsjoe')}`;
}

/** A Cookie header of a session at the plain app (scenario g): any POST logs in; the cookie is express-session's own. */
async function plainLogin(port: number): Promise<string> {
  const res = await request(port, '/app/login', { method: 'POST', body: '' });
  const value = cookieSetBy(res, 'connect.sid');
  if (value === undefined) throw new Error(`login on ${port} gave no cookie (${res.status})`);
  return `connect.sid=${value}`;
}

function svgChart(rows: { id: string; title: string; rps: number }[]): string {
  const width = 760;
  const barHeight = 26;
  const left = 300;
  const max = Math.max(...rows.map((r) => r.rps));
  const height = rows.length * (barHeight + 10) + 40;
  const bars = rows
    .map((r, i) => {
      const y = 30 + i * (barHeight + 10);
      const w = Math.max(1, ((width - left - 90) * r.rps) / max);
      const color = r.id === 'b' ? '#2a7ae2' : r.id === 'a' ? '#7a7a7a' : '#b7c4d6';
      const label = `(${r.id}) ${r.title}`.replace(/&/g, '&amp;').replace(/</g, '&lt;');
      return `<text x="${left - 8}" y="${y + 17}" text-anchor="end" font-size="12">${label}</text>
<rect x="${left}" y="${y}" width="${w.toFixed(1)}" height="${barHeight}" fill="${color}"/>
<text x="${(left + w + 6).toFixed(1)}" y="${y + 17}" font-size="12">${Math.round(r.rps).toLocaleString('en')}</text>`;
    })
    .join('\n');
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif">
<text x="10" y="18" font-size="14" font-weight="bold">Requests per second (median, wrk -t1 -c32, one nginx worker)</text>
${bars}
</svg>
`;
}

async function main(): Promise<void> {
  const started = Date.now();
  const redis = await RedisServer.start();
  const appPort = await freePort();
  const plainPort = await freePort();
  const env = { ...process.env, SESSION_SECRET: SECRET, CACHE_SECONDS: '3600', NODE_ENV: 'production' };
  const app = await ServerProcess.node(
    join(REPO_ROOT, 'apps/demo/dist/main.js'),
    { ...env, APP_PORT: String(appPort), REDIS_URL: redis.url },
    { port: appPort, path: '/app' },
  );
  const plain = await ServerProcess.node(
    join(REPO_ROOT, 'bench/dist/bench/plain-app.js'),
    { ...env, APP_PORT: String(plainPort), REDIS_URL: redis.url },
    { port: plainPort, path: '/app/api/v1/group/one/cacheable/x' },
  );
  const nginx = await NginxServer.start({ conf: benchConf(appPort, redis.port), env: { SESSION_SECRET: SECRET } });
  try {
    const cookie = await login(appPort);
    const plainCookie = await plainLogin(plainPort);
    const scenarios: Scenario[] = [
      { id: 'a', title: 'cache hit, no authorization (the limit)', port: () => nginx.port, path: '/a', cookie: () => cookie },
      { id: 'b', title: 'resty.shared_session, then cache hit', port: () => nginx.port, path: '/b', cookie: () => cookie },
      { id: 'c', title: '2017 way (new conn, SMEMBERS+GET), cache hit', port: () => nginx.port, path: '/c', cookie: () => cookie },
      { id: 'd', title: 'auth_request to the Nest app, cache hit', port: () => nginx.port, path: '/d', cookie: () => cookie },
      { id: 'e', title: 'no nginx cache: every request to the app', port: () => nginx.port, path: '/e', cookie: () => cookie },
      { id: 'f', title: 'Nest: guarded route, this module', port: () => appPort, path: RESOURCE, cookie: () => cookie },
      { id: 'g', title: 'Nest: same route, express-session, no guard', port: () => plainPort, path: RESOURCE, cookie: () => plainCookie },
    ];
    // Warm up: fill the cache, the pools and the JIT.
    for (const s of scenarios) await wrk(s.port(), s.path, s.cookie(), 1);

    const rates: Record<string, number[]> = {};
    for (let round = 1; round <= ROUNDS; round++) {
      for (const s of scenarios) {
        (rates[s.id] ??= []).push(await wrk(s.port(), s.path, s.cookie(), SECONDS));
        console.log(`round ${round}/${ROUNDS} (${s.id}) ${Math.round(rates[s.id].at(-1)!)} req/s`);
      }
    }
    const med = Object.fromEntries(Object.entries(rates).map(([k, v]) => [k, median(v)]));
    // A ratio is taken within each round (its two scenarios ran seconds apart, under the same load), then the median.
    const ratio = (x: string, y: string) => median(rates[x].map((v, i) => v / rates[y][i]));
    const ratios = { 'b/a': ratio('b', 'a'), 'b/c': ratio('b', 'c'), 'b/d': ratio('b', 'd'), 'f/g': ratio('f', 'g') };
    const targets: Record<string, number> = { 'b/a': 0.9, 'b/c': 5, 'b/d': 3, 'f/g': 0.85 };

    // Revocation: from the app's logout response to the first refusal at nginx.
    const admin = new Redis(redis.url);
    const latencies: number[] = [];
    let staleBeyondBound = 0;
    // Keep-alive connections, one to nginx and one to the app, as a browser would have.
    const toNginx = new HttpConnection(nginx.port);
    const toApp = new HttpConnection(appPort);
    for (let i = 0; i < TRIALS; i++) {
      const user = await login(appPort);
      const probe = () => toNginx.request(requestBytes('/logout-probe', { headers: { Cookie: user } }));
      const before = await probe();
      if (before.status !== 200) throw new Error(`probe before logout: ${before.status}`);
      await toApp.request(requestBytes('/app/logout', { method: 'POST', headers: { Cookie: user }, body: '' }));
      const loggedOut = performance.now();
      for (;;) {
        const res = await probe();
        const elapsed = performance.now() - loggedOut;
        if (res.status === 403) {
          latencies.push(elapsed);
          break;
        }
        if (elapsed > DECISION_TTL * 1000 + 100) staleBeyondBound++;
        if (elapsed > 5000) throw new Error('logout never reached nginx');
      }
    }
    toNginx.close();
    toApp.close();
    admin.disconnect();
    const revocation = { p50: percentile(latencies, 50), p99: percentile(latencies, 99), max: Math.max(...latencies) };

    const machine = `${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, ${Math.round(totalmem() / 2 ** 30)} GiB`;
    const versions = [
      `node ${process.version}`,
      spawnSync('nginx', ['-v'], { encoding: 'utf8' }).stderr.trim(),
      spawnSync('redis-server', ['--version'], { encoding: 'utf8' }).stdout.trim().split(' ').slice(0, 3).join(' '),
      spawnSync('wrk', ['-v'], { encoding: 'utf8' }).stdout.split('\n')[0].trim(),
    ].join('; ');
    const rows = scenarios.map((s) => ({ id: s.id, title: s.title, rps: med[s.id], all: rates[s.id] }));
    const table = rows
      .map(
        (r) =>
          `| (${r.id}) | ${r.title} | ${Math.round(r.rps).toLocaleString('en')} | ${(r.rps / med.a).toFixed(2)} | ${r.all.map((x) => Math.round(x)).join(', ')} |`,
      )
      .join('\n');
    const ratioRows = Object.entries(ratios)
      .map(([k, v]) => `| ${k} | ${v.toFixed(2)} | ≥ ${targets[k]} | ${v >= targets[k] ? 'met' : '**not met**'} |`)
      .join('\n');
    mkdirSync(join(REPO_ROOT, 'docs'), { recursive: true });
    writeFileSync(join(REPO_ROOT, 'docs', 'benchmarks.svg'), svgChart(rows));
    const doc = `# Benchmarks

Written by \`npm run bench${QUICK ? ' -- --quick' : ''}\` on ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC
(${((Date.now() - started) / 1000).toFixed(0)} s). Rerun it on your machine: absolute figures depend on the
machine and on what else runs on it; the ratios from one run are what to compare.

- Machine: ${machine}
- Software: ${versions}
- Method: one nginx with one worker process, the demo app (Node, one process) and one redis-server, all on
  127.0.0.1 and pinned to CPU 0 (\`taskset -c 0\`); the load generator, wrk, runs alone on CPU 1, so that it
  does not take CPU from what it measures. Every scenario is
  \`wrk -t1 -c32 -d${SECONDS}s -H 'Cookie: session=…' http://127.0.0.1:PORT/PATH\`;
  the scenarios take turns, ${ROUNDS} round${ROUNDS > 1 ? 's' : ''}; the table gives the median rate, and each
  ratio is the median of that ratio within each round (the two scenarios ran seconds apart under the same load).
  Scenarios (a)–(d) serve the same cached resource from the same \`proxy_cache\` entry through the same
  upstream; only the authorization step differs (see \`bench/run.ts\`, \`bench/seed-2017.lua\`). A run
  stops if any response is not 2xx.
- (b) is \`resty.shared_session.access()\` as the demo configures it: positive decisions kept
  ${DECISION_TTL} s in a \`lua_shared_dict\`, bound to the cookie's verified signature, and forgotten at once
  on a revocation notice; a miss costs an HMAC check and one pooled \`SISMEMBER\`.

![chart](benchmarks.svg)

| scenario | what | req/s (median) | ÷ (a) | every round |
|---|---|---:|---:|---|
${table}

| ratio | measured (median per round) | target | |
|---|---:|---:|---|
${ratioRows}

## Revocation

${TRIALS} trials: log in at the app, fetch a group resource through nginx (so a decision is cached),
log out at the app, then ask nginx again until it refuses. Time from the logout response to the first
refusal: p50 ${revocation.p50.toFixed(2)} ms, p99 ${revocation.p99.toFixed(2)} ms, max ${revocation.max.toFixed(2)} ms
(target p99 ≤ 50 ms). Allows later than the decision cache's hard bound (${DECISION_TTL} s): ${staleBeyondBound}.
`;
    writeFileSync(join(REPO_ROOT, 'docs', 'benchmarks.md'), doc);
    console.log(
      `\n${table}\n\n${ratioRows}\n\nrevocation p50 ${revocation.p50.toFixed(2)} ms, p99 ${revocation.p99.toFixed(2)} ms, max ${revocation.max.toFixed(2)} ms; stale allows beyond bound: ${staleBeyondBound}`,
    );
    console.log('wrote docs/benchmarks.md and docs/benchmarks.svg');
  } finally {
    await nginx.dispose();
    await app.stop();
    await plain.stop();
    await redis.dispose();
  }
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});

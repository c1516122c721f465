// CPU time per guarded request of Nest apps, a measure that other load on
// the machine moves far less than wrk's rates (instructions cannot be
// counted here: no perf counters in the VM, and callgrind slows node 50×).
// Two comparisons, each on the same route (/app/api/v1/group/one/cacheable/
// bench, cache-hit traffic of one logged-in session):
// - `metrics` (issue 22): (f)'s minimal app (bench/nest-app.ts), metrics off
//   and on (BENCH_METRICS=1);
// - `fg` (issue 24): (f)'s app against (g)'s (bench/plain-app.ts:
//   express-session + connect-redis 7 + a hand guard);
// - `floor`, `gfloor`: (f)'s or (g)'s app against the same Nest app with
//   neither a session nor a check (what any Nest app on Express pays);
// - `before`: (f)'s app as another build has it (a copy of its
//   bench/dist/bench/nest-app.js in .run/before/, beside
//   .run/before/node_modules/nest-resty-shared-session/{package.json,dist})
//   against this one's.
// Two processes of each variant (started A, B, B, A: one process can cost a
// few percent more than its twin, so each variant gets two), the apps and
// Redis on CPU 0, wrk on CPU 1 (-t1 -c32, as `npm run bench`). The figure is each
// app's on-CPU time per request (/proc/<pid>/task/*/schedstat: all its
// threads, user and kernel time, GC and libuv's pool included), and Redis's
// during that app's load, in rounds whose order rotates, so that the
// machine's drift falls on every process alike; the medians of each variant
// are compared, and the gap between the twins of a variant is printed as
// the noise floor.
// Under other load the CPU times move by more than the 3% to be shown; with
// `--callgrind` each app runs alone under valgrind and the figure is its
// main thread's instructions per request (see `instructions` below).
// Usage: npm run bench:metrics [-- --rounds 6 --seconds 5 | -- --callgrind [--warm 4000 --requests 800]]
//        npm run bench:nest-cpu [-- --rounds 6 --seconds 5]
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cookieSetBy } from '../stack/demo-login';
import { HttpConnection, request, requestBytes } from '../stack/http-client';
import { REPO_ROOT } from '../stack/nginx-conf';
import { freePort } from '../stack/ports';
import { RedisServer } from '../stack/redis-server';
import { ServerProcess } from '../stack/server-process';
import { sleep } from '../stack/wait';

const ROUTE = '/app/api/v1/group/one/cacheable/bench';
const SECRET = 'bench-secret-of-at-least-thirty-two-bytes!';

interface Variant {
  name: string;
  script: string;
  env: Record<string, string>;
  /** The cookie login sets; none: no login (the floor). */
  cookieName?: string;
}

const F: Variant = { name: '(f) this module', script: 'bench/dist/bench/nest-app.js', env: { BENCH_METRICS: '0' }, cookieName: 'session' };
const G: Variant = { name: '(g) connect-redis', script: 'bench/dist/bench/plain-app.js', env: {}, cookieName: 'connect.sid' };
const COMPARISONS: Record<string, [Variant, Variant]> = {
  metrics: [
    { ...F, name: 'metrics off' },
    { ...F, name: 'metrics on', env: { BENCH_METRICS: '1' } },
  ],
  fg: [F, G],
  before: [{ ...F, name: '(f) before', script: '.run/before/nest-app.js' }, F],
  floor: [F, { name: 'floor, no session', script: 'bench/dist/bench/plain-app.js', env: { BENCH_FLOOR: '1' } }],
  gfloor: [G, { name: 'floor, no session', script: 'bench/dist/bench/plain-app.js', env: { BENCH_FLOOR: '1' } }],
};

function flag(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : fallback;
}

/** Nanoseconds the process has run on a CPU (all its threads: Node's GC and libuv's pool included). */
function cpuNs(pid: number): number {
  let total = 0;
  for (const task of readdirSync(`/proc/${pid}/task`)) {
    try {
      total += Number(readFileSync(`/proc/${pid}/task/${task}/schedstat`, 'utf8').split(' ')[0]);
    } catch {
      // A thread that ended between the listing and the read.
    }
  }
  return total;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

interface App {
  variant: Variant;
  proc: ServerProcess;
  port: number;
  cookie: string;
  appUs: number[];
  redisUs: number[];
}

async function startApp(variant: Variant, redisUrl: string): Promise<App> {
  const port = await freePort();
  const env = { ...process.env, SESSION_SECRET: SECRET, NODE_ENV: 'production', APP_PORT: String(port), REDIS_URL: redisUrl };
  const proc = await ServerProcess.node(join(REPO_ROOT, variant.script), { ...env, ...variant.env }, { port, path: '/app/healthz' });
  execFileSync('taskset', ['-pc', '0', String(proc.child.pid)], { stdio: 'ignore' });
  if (variant.cookieName === undefined) return { variant, proc, port, cookie: 'none=1', appUs: [], redisUs: [] };
  const res = await request(port, '/app/login', { method: 'POST', body: '' });
  const value = cookieSetBy(res, variant.cookieName);
  if (value === undefined) throw new Error(`login on ${variant.name} gave no cookie (${res.status})`);
  return { variant, proc, port, cookie: `${variant.cookieName}=${value}`, appUs: [], redisUs: [] };
}

/** The app's and Redis's CPU µs per request over `seconds` of wrk's load (-t1 -c32, as `npm run bench`), wrk on CPU 1. */
function load(app: App, redisPid: number, seconds: number): [number, number] {
  const before = cpuNs(app.proc.child.pid!);
  const redisBefore = cpuNs(redisPid);
  const out = execFileSync(
    'taskset',
    ['-c', '1', 'wrk', '-t1', '-c32', `-d${seconds}s`, '-H', `Cookie: ${app.cookie}`, `http://127.0.0.1:${app.port}${ROUTE}`],
    { encoding: 'utf8' },
  );
  const after = cpuNs(app.proc.child.pid!);
  const redisAfter = cpuNs(redisPid);
  const n = Number(/(\d+) requests in/.exec(out)?.[1]);
  if (!n || /Non-2xx|Socket errors/.test(out)) throw new Error(`${app.variant.name}: every request must be a 200:\n${out}`);
  return [(after - before) / n / 1000, (redisAfter - redisBefore) / n / 1000];
}

/** n requests one after the other on one keep-alive connection; each must be a 200. */
async function sequential(port: number, cookie: string, n: number): Promise<void> {
  const conn = new HttpConnection(port, 120_000);
  const bytes = requestBytes(ROUTE, { headers: { Cookie: cookie }, keepAlive: true });
  try {
    for (let i = 0; i < n; i++) {
      const res = await conn.request(bytes);
      if (res.status !== 200) throw new Error(`request ${i}: ${res.status}`);
    }
  } finally {
    conn.close();
  }
}

/**
 * `--callgrind`: instructions per request of the app's main thread (callgrind,
 * `--separate-threads=yes`; V8's compiler and GC helper threads left out, as
 * their share moves from run to run), over `requests` requests sent one after
 * the other after `warm` of them (the JIT's tiers), instrumentation on only
 * for those counted. Other load on the machine does not move it.
 */
async function instructions(variant: Variant, redisUrl: string, warm: number, requests: number): Promise<number> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'nest-cpu-'));
  const env = {
    ...process.env,
    SESSION_SECRET: SECRET,
    NODE_ENV: 'production',
    APP_PORT: String(port),
    REDIS_URL: redisUrl,
    ...variant.env,
  };
  const child = spawn(
    'valgrind',
    [
      '--tool=callgrind',
      '--separate-threads=yes',
      '--instr-atstart=no',
      `--callgrind-out-file=${dir}/out`,
      process.execPath,
      join(REPO_ROOT, variant.script),
    ],
    { env, stdio: 'ignore' },
  );
  try {
    for (let i = 0; ; i++) {
      if ((await request(port, '/app/healthz').catch(() => undefined))?.status === 200) break;
      if (i > 600 || child.exitCode !== null) throw new Error(`${variant.name} did not start under valgrind`);
      await sleep(500);
    }
    let cookie = 'none=1';
    if (variant.cookieName !== undefined) {
      const value = cookieSetBy(await request(port, '/app/login', { method: 'POST', body: '' }), variant.cookieName);
      if (value === undefined) throw new Error(`login on ${variant.name} gave no cookie`);
      cookie = `${variant.cookieName}=${value}`;
    }
    await sequential(port, cookie, warm);
    const control = (option: string) =>
      execFileSync('callgrind_control', [option, String(child.pid)], { stdio: 'ignore', timeout: 120_000 });
    control('--instr=on');
    control('-z');
    await sequential(port, cookie, requests);
    control('-d');
    const dump = readdirSync(dir).find((f) => /\.1-01$/.test(f));
    const totals = dump && /^totals: (\d+)/m.exec(readFileSync(join(dir, dump), 'utf8'));
    if (!totals) throw new Error(`callgrind wrote no dump of the main thread in ${dir}: ${readdirSync(dir).join(' ')}`);
    return Number(totals[1]) / requests;
  } finally {
    child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  }
}

async function countInstructions(a: Variant, b: Variant, redisUrl: string): Promise<void> {
  const warm = flag('warm', 4000);
  const requests = flag('requests', 800);
  const counts = new Map<Variant, number[]>([
    [a, []],
    [b, []],
  ]);
  for (const variant of [a, b, b, a]) {
    const ir = await instructions(variant, redisUrl, warm, requests);
    counts.get(variant)!.push(ir);
    console.log(`${variant.name.padEnd(18)} instructions per request (main thread): ${Math.round(ir)}`);
  }
  const [pa, pb] = [median(counts.get(a)!), median(counts.get(b)!)];
  console.log(
    `${b.name} vs ${a.name}: ${(((pb - pa) / pa) * 100).toFixed(1)}% instructions per request (${Math.round(pa)} against ${Math.round(pb)}; ` +
      `${requests} requests one after the other after ${warm}, two processes of each, ${ROUTE})`,
  );
}

async function main(): Promise<void> {
  const which = process.argv[2] ?? 'metrics';
  const comparison = COMPARISONS[which];
  if (!comparison) throw new Error(`usage: nest-cpu.js (${Object.keys(COMPARISONS).join('|')}) [--rounds n] [--requests n]`);
  const [a, b] = comparison;
  const rounds = flag('rounds', 6);
  const seconds = flag('seconds', 5);
  execFileSync('taskset', ['-pc', '1', String(process.pid)], { stdio: 'ignore' });
  const redis = await RedisServer.start();
  const apps: App[] = [];
  try {
    if (process.argv.includes('--callgrind')) {
      await countInstructions(a, b, redis.url);
      return;
    }
    execFileSync('taskset', ['-pc', '0', String(redis.pid!)], { stdio: 'ignore' });
    for (const variant of [a, b, b, a]) apps.push(await startApp(variant, redis.url));
    for (const app of apps) load(app, redis.pid!, 2); // warm-up: JIT, connections
    for (let round = 0; round < rounds; round++) {
      // A rotating order: no app always runs first.
      for (let i = 0; i < apps.length; i++) {
        const app = apps[(i + round) % apps.length];
        const [appUs, redisUs] = load(app, redis.pid!, seconds);
        app.appUs.push(appUs);
        app.redisUs.push(redisUs);
      }
    }
    const of = (v: Variant) => apps.filter((x) => x.variant === v);
    const all = (v: Variant, pick: (x: App) => number[]) => median(of(v).flatMap(pick));
    const both = (x: App) => x.appUs.map((us, i) => us + x.redisUs[i]);
    const twins = (v: Variant) => {
      const [p, q] = of(v).map((x) => median(x.appUs));
      return `${((Math.abs(p - q) / Math.min(p, q)) * 100).toFixed(1)}%`;
    };
    for (const app of apps) {
      console.log(
        `${app.variant.name.padEnd(18)} app CPU µs/request: median ${median(app.appUs).toFixed(1)} min ${Math.min(...app.appUs).toFixed(1)}  rounds ${app.appUs.map((v) => v.toFixed(1)).join(' ')};` +
          ` Redis ${median(app.redisUs).toFixed(1)}`,
      );
    }
    for (const [label, pick] of [
      ['app', (x: App) => x.appUs],
      ['app + Redis', both],
    ] as const) {
      const [pa, pb] = [all(a, pick), all(b, pick)];
      console.log(
        `${label}: ${a.name} ${pa.toFixed(1)} µs, ${b.name} ${pb.toFixed(1)} µs per request; ${b.name} vs ${a.name}: ${(((pb - pa) / pa) * 100).toFixed(1)}%` +
          ` (the rate ratio this predicts, ${a.name} / ${b.name}: ${(pb / pa).toFixed(2)})`,
      );
    }
    console.log(`${rounds} rounds of ${seconds} s of wrk -t1 -c32 per app, ${ROUTE}`);
    console.log(`noise floor: the twins of a variant differ by ${twins(a)} (${a.name}) and ${twins(b)} (${b.name})`);
    if (which === 'metrics') {
      const scrape = await request(of(b)[0].port, '/app/metrics');
      const allowed = /shared_session_decisions_total\{result="allowed",reason="none"\} (\d+)/.exec(scrape.body)?.[1];
      console.log(`metrics on: shared_session_decisions_total{result="allowed",reason="none"} = ${allowed} (the app counted)`);
    }
  } finally {
    for (const app of apps) await app.proc.stop();
    await redis.dispose();
  }
}

void main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});

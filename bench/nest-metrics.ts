// The cost of the Nest module's metrics (issue 22): (f)'s minimal app
// (bench/nest-app.ts), metrics off and on (BENCH_METRICS=1), two processes
// of each (started off, on, on, off: one process can cost a few percent
// more than its twin, so each variant gets two), all on CPU 0; the same
// guarded route, cache-hit traffic of one logged-in session, from this
// process on CPU 1. The figure is each app's CPU time per request (its
// on-CPU nanoseconds, /proc/<pid>/task/*/schedstat), in rounds whose order
// rotates, so that the machine's drift falls on every process alike; the
// medians of each variant are compared, and the gap between the twins of a
// variant is printed as the noise floor.
// Usage: npm run bench:metrics [-- --rounds 6 --requests 15000]
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { cookieSetBy } from '../stack/demo-login';
import { request, requestBytes, runPool, statusCounts } from '../stack/http-client';
import { REPO_ROOT } from '../stack/nginx-conf';
import { freePort } from '../stack/ports';
import { RedisServer } from '../stack/redis-server';
import { ServerProcess } from '../stack/server-process';

const ROUTE = '/app/api/v1/group/one/cacheable/bench';
const SECRET = 'bench-secret-of-at-least-thirty-two-bytes!';

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
  name: string;
  proc: ServerProcess;
  port: number;
  cookie: string;
  perRequestUs: number[];
}

async function startApp(name: string, redisUrl: string, metrics: boolean): Promise<App> {
  const port = await freePort();
  const env = { ...process.env, SESSION_SECRET: SECRET, NODE_ENV: 'production', APP_PORT: String(port), REDIS_URL: redisUrl };
  const proc = await ServerProcess.node(
    join(REPO_ROOT, 'bench/dist/bench/nest-app.js'),
    { ...env, BENCH_METRICS: metrics ? '1' : '0' },
    { port, path: '/app/healthz' },
  );
  execFileSync('taskset', ['-pc', '0', String(proc.child.pid)], { stdio: 'ignore' });
  const res = await request(port, '/app/login', { method: 'POST', body: '' });
  const value = cookieSetBy(res, 'session');
  if (value === undefined) throw new Error(`login on ${name} gave no cookie (${res.status})`);
  return { name, proc, port, cookie: `session=${value}`, perRequestUs: [] };
}

async function load(app: App, n: number): Promise<number> {
  const bytes = requestBytes(ROUTE, { headers: { Cookie: app.cookie } });
  const before = cpuNs(app.proc.child.pid!);
  const { responses } = await runPool(app.port, new Array<Buffer>(n).fill(bytes), { concurrency: 16, deadlineMs: 120_000 });
  const after = cpuNs(app.proc.child.pid!);
  const counts = statusCounts(responses);
  if (counts['200'] !== n) throw new Error(`${app.name}: ${JSON.stringify(counts)} (every request must be a 200)`);
  return (after - before) / n / 1000;
}

async function main(): Promise<void> {
  const rounds = flag('rounds', 6);
  const requests = flag('requests', 15_000);
  execFileSync('taskset', ['-pc', '1', String(process.pid)], { stdio: 'ignore' });
  const redis = await RedisServer.start();
  const apps: App[] = [];
  try {
    execFileSync('taskset', ['-pc', '0', String(redis.pid!)], { stdio: 'ignore' });
    for (const [name, metrics] of [
      ['metrics off', false],
      ['metrics on', true],
      ['metrics on', true],
      ['metrics off', false],
    ] as const) {
      apps.push(await startApp(name, redis.url, metrics));
    }
    for (const app of apps) await load(app, Math.min(requests, 5_000)); // warm-up: JIT, connections
    for (let round = 0; round < rounds; round++) {
      // A rotating order: no app always runs first.
      for (let i = 0; i < apps.length; i++) {
        const app = apps[(i + round) % apps.length];
        app.perRequestUs.push(await load(app, requests));
      }
    }
    const samples = (name: string) => apps.filter((a) => a.name === name).flatMap((a) => a.perRequestUs);
    const off = median(samples('metrics off'));
    const on = median(samples('metrics on'));
    const twins = (name: string) => {
      const [a, b] = apps.filter((x) => x.name === name).map((x) => median(x.perRequestUs));
      return `${((Math.abs(a - b) / Math.min(a, b)) * 100).toFixed(1)}%`;
    };
    for (const app of apps) {
      console.log(
        `${app.name.padEnd(12)} CPU µs/request: median ${median(app.perRequestUs).toFixed(1)}  rounds ${app.perRequestUs.map((v) => v.toFixed(1)).join(' ')}`,
      );
    }
    console.log(
      `metrics on vs off: ${(((on - off) / off) * 100).toFixed(1)}% CPU per request (${rounds} rounds of ${requests} requests, ${ROUTE})`,
    );
    console.log(`noise floor: the twins of a variant differ by ${twins('metrics off')} (off) and ${twins('metrics on')} (on)`);
    const scrape = await request(apps[1].port, '/app/metrics');
    const allowed = /shared_session_decisions_total\{result="allowed",reason="none"\} (\d+)/.exec(scrape.body)?.[1];
    console.log(`metrics on: shared_session_decisions_total{result="allowed",reason="none"} = ${allowed} (the app counted)`);
  } finally {
    for (const app of apps) await app.proc.stop();
    await redis.dispose();
  }
}

void main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});

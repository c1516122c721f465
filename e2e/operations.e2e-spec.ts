import { spawn } from 'node:child_process';
import { join } from 'node:path';
import Redis from 'ioredis';
import { PROTOCOL_DEFAULTS } from '../protocol/testkit';
import { login as demoLogin, mustLogin } from '../stack/demo-login';
import { DEMO_ADAPTERS, DemoStack } from '../stack/demo-stack';
import { HttpConnection, HttpResponse, request, requestBytes } from '../stack/http-client';
import { REPO_ROOT } from '../stack/nginx-conf';
import { freePort } from '../stack/ports';
import { prometheusBinary, PrometheusServer } from '../stack/prometheus-server';
import { sleep, waitFor } from '../stack/wait';

/**
 * Issue 22, "Done when": the demo stack (nginx with the rock, the Nest app,
 * Redis) and a real Prometheus scraping both doors' /metrics every second.
 * Known traffic goes through nginx; the exact counter deltas and histogram
 * counts are read back through Prometheus's HTTP API, not through a parser
 * of ours. Readiness (/health) at both doors follows a Redis outage within
 * 5 s each way, and every control operation emits its event in the app's
 * log. Skipped, saying why, only where the prometheus binary is missing
 * (scripts/install.sh installs Debian's package, so CI runs it).
 */
const PROMETHEUS = prometheusBinary();
if (!PROMETHEUS) {
  console.warn(
    'e2e/operations.e2e-spec.ts skipped: no prometheus binary (scripts/install.sh installs Debian\'s "prometheus"; or set PROMETHEUS_BIN)',
  );
}

/** How far behind nginx's shared-dict figures may be: each worker flushes its counts once a second. */
const NGINX_FLUSH_MS = 1_000;
const READINESS_BOUND_MS = 5_000;
const PREFIX = PROTOCOL_DEFAULTS.keyPrefix;

type Counts = Record<string, number>;

/** `name{label="value",...}` without job and instance, labels sorted: one key per series. */
function seriesKey(metric: Record<string, string>): string {
  const { __name__: name, job: _job, instance: _instance, ...labels } = metric;
  const text = Object.entries(labels)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([k, v]) => `${k}="${v}"`)
    .join(',');
  return `${name}{${text}}`;
}

/** What changed between two snapshots: only the series whose value moved (a new series counts from 0). */
function delta(before: Counts, after: Counts): Counts {
  const moved: Counts = {};
  for (const key of new Set([...Object.keys(before), ...Object.keys(after)])) {
    const d = (after[key] ?? 0) - (before[key] ?? 0);
    if (d !== 0) moved[key] = d;
  }
  return moved;
}

/** The events in a piece of the app's log (`events: { log: true }`): one JSON object a line, after Nest's prefix (NO_COLOR). */
function eventsIn(log: string): { event: string; op: string; [k: string]: unknown }[] {
  return log
    .split('\n')
    .filter((line) => line.includes('[SharedSessionEvents]'))
    .map((line) => JSON.parse(line.slice(line.indexOf('{'), line.lastIndexOf('}') + 1)));
}

// On each of the app's HTTP platforms (DEMO_ADAPTER).
(PROMETHEUS ? describe.each(DEMO_ADAPTERS) : describe.skip.each(DEMO_ADAPTERS))(
  'operations on %s: metrics through a real Prometheus, health and events at both doors',
  (adapter) => {
    let stack: DemoStack;
    let prometheus: PrometheusServer;

    const get = (path: string, cookie?: string, port = stack.nginx.port): Promise<HttpResponse> =>
      request(port, path, { headers: cookie === undefined ? {} : { Cookie: `session=${cookie}` } });
    const post = (path: string, cookie: string): Promise<HttpResponse> =>
      request(stack.nginx.port, path, { method: 'POST', headers: { Cookie: `session=${cookie}` }, body: '' });
    const health = async (port: number): Promise<number> => (await request(port, '/health', { timeoutMs: 2_000 })).status;

    /** Every series of these families at `job`, as Prometheus has them now. */
    async function snapshot(job: 'nginx' | 'app', families: string[]): Promise<Counts> {
      const samples = await prometheus.query(`{job="${job}",__name__=~"${families.join('|')}"}`);
      return Object.fromEntries(samples.map((s) => [seriesKey(s.metric), s.value]));
    }

    /** Both doors' figures once Prometheus has scraped what they counted until now (nginx: after its flush too). */
    async function settled(nginxFamilies: string[], appFamilies: string[]): Promise<{ nginx: Counts; app: Counts }> {
      const now = Date.now();
      await prometheus.scrapedAfter('nginx', now + NGINX_FLUSH_MS + 100);
      await prometheus.scrapedAfter('app', now);
      return { nginx: await snapshot('nginx', nginxFamilies), app: await snapshot('app', appFamilies) };
    }

    beforeAll(async () => {
      stack = await DemoStack.start({
        adapter,
        prometheus: { scrapeIntervalSeconds: 1 },
        // One nginx worker: a decision it cached is a worker-cache hit the next time, never a dict hit.
        // No periodic barrier: the revocation lag histogram counts the waits of this test only.
        env: { ...process.env, NGINX_WORKERS: '1', CACHE_SECONDS: '60', REVOCATION_BARRIER_MS: '0', NO_COLOR: '1' },
      });
      prometheus = stack.prometheus!;
    }, 60_000);
    afterAll(async () => {
      await stack?.stop();
    });

    it('serves /metrics and /health on the operations ports only, never through the public ones', async () => {
      const nginxMetrics = await get('/metrics', undefined, stack.nginxAdminPort);
      expect(nginxMetrics.status).toBe(200);
      expect(nginxMetrics.headers['content-type']![0]).toMatch(/^text\/plain; version=0\.0\.4/);
      expect(nginxMetrics.body).toMatch(/^# TYPE shared_session_decisions_total counter$/m);
      const appMetrics = await get('/metrics', undefined, stack.appAdminPort);
      expect(appMetrics.status).toBe(200);
      expect(appMetrics.body).toMatch(/^# TYPE shared_session_logins_total counter$/m);
      expect(await health(stack.nginxAdminPort)).toBe(200);
      expect(await health(stack.appAdminPort)).toBe(200);
      expect(JSON.parse((await get('/health', undefined, stack.nginxAdminPort)).body)).toMatchObject({
        status: 'ok',
        redis: { ok: true },
        subscriber: { subscribed: true },
      });
      expect(JSON.parse((await get('/health', undefined, stack.appAdminPort)).body)).toMatchObject({
        status: 'ok',
        info: { shared_session: { status: 'up' } },
      });
      // Through nginx's public server (which proxies every other path to the app) and at the app's public port: 404.
      for (const port of [stack.nginx.port, stack.appPort]) {
        for (const path of ['/metrics', '/health'])
          expect([port, path, (await get(path, undefined, port)).status]).toEqual([port, path, 404]);
      }
      // The operations ports serve nothing else.
      expect((await get('/app', undefined, stack.appAdminPort)).status).toBe(404);
      expect((await get('/app', undefined, stack.nginxAdminPort)).status).toBe(404);
      // Prometheus scrapes both.
      await prometheus.scrapedAfter('nginx', Date.now());
      await prometheus.scrapedAfter('app', Date.now());
    });

    it('counts n decision-cache hits, m misses and k refusals by reason exactly, at nginx and at the app', async () => {
      const joe = await mustLogin(stack.nginx.port, 'joe@example.com', 'itsjoe');
      const esteban = await mustLogin(stack.nginx.port, 'esteban@example.com', 'itsesteban');
      const sam = await mustLogin(stack.nginx.port, 'sam@example.com', 'itssam');
      const nginxFamilies = ['shared_session_decisions_total', 'shared_session_decision_cache_total'];
      const appFamilies = ['shared_session_decisions_total', 'shared_session_logins_total'];
      const before = await settled(nginxFamilies, appFamilies);

      const n = 5;
      const report = '/app/api/v1/group/one/cacheable/ops-report';
      // m = 3 misses: joe's first request for group one (the app makes the report), esteban's (a proxy-cache
      // hit: the app sees nothing), joe's first for group three (the app makes it).
      expect((await get(report, joe)).headers['x-cache-status']).toEqual(['MISS']);
      // n hits: joe again, on one keep-alive connection, within the decision cache's 1 s.
      const conn = new HttpConnection(stack.nginx.port);
      try {
        for (let i = 0; i < n; i++) {
          const res = await conn.request(requestBytes(report, { headers: { Cookie: `session=${joe}` } }));
          expect([res.status, res.headers['x-cache-status']]).toEqual([200, ['HIT']]);
        }
      } finally {
        conn.close();
      }
      expect((await get(report, esteban)).status).toBe(200);
      expect((await get('/app/api/v1/group/three/cacheable/ops-report', joe)).status).toBe(200);
      // k = 4 refusals: two without a cookie, one non-member, one with two different session cookies.
      expect((await get(report)).status).toBe(401);
      expect((await get(report)).status).toBe(401);
      expect((await get(report, sam)).status).toBe(403);
      const tossed = await request(stack.nginx.port, report, { headers: [['Cookie', `session=${joe}; session=${sam}`]] });
      expect(JSON.parse(tossed.body)).toMatchObject({ statusCode: 403, reason: 'two_sessions' });

      const after = await settled(nginxFamilies, appFamilies);
      const nginxDelta = delta(before.nginx, after.nginx);
      // The n hits come from the worker's entry, or from the dict when the worker's cache moved to a new
      // generation between two of them (it does so on its own clock, so a loaded machine sees it now and
      // then): their sum is exact, and so is everything else.
      const workerHit = 'shared_session_decision_cache_total{result="worker_hit"}';
      const dictHit = 'shared_session_decision_cache_total{result="dict_hit"}';
      const hits = (nginxDelta[workerHit] ?? 0) + (nginxDelta[dictHit] ?? 0);
      delete nginxDelta[workerHit];
      delete nginxDelta[dictHit];
      expect([hits, nginxDelta]).toEqual([
        n,
        {
          'shared_session_decisions_total{reason="none",result="allowed"}': n + 3,
          'shared_session_decisions_total{reason="no_session",result="refused"}': 2,
          'shared_session_decisions_total{reason="not_member",result="refused"}': 1,
          'shared_session_decisions_total{reason="two_sessions",result="refused"}': 1,
          'shared_session_decision_cache_total{result="miss"}': 4,
        },
      ]);
      // The app saw the two proxy-cache misses (its GroupGuard allowed them) and nothing else.
      expect(delta(before.app, after.app)).toEqual({
        'shared_session_decisions_total{reason="none",result="allowed"}': 2,
      });
    });

    it('a logout and a revokeUser with wait: counters, the revocation lag histogram, the acknowledgement, the events', async () => {
      const joe = await mustLogin(stack.nginx.port, 'joe@example.com', 'itsjoe');
      const esteban = await mustLogin(stack.nginx.port, 'esteban@example.com', 'itsesteban');
      const admin = await mustLogin(stack.nginx.port, 'admin@example.com', 'itsadmin');
      const nginxFamilies = ['shared_session_notices_applied_total', 'shared_session_notice_apply_seconds_count'];
      const appFamilies = [
        'shared_session_logouts_total',
        'shared_session_control_operations_total',
        'shared_session_control_seconds_count',
        'shared_session_acknowledgements_total',
        'shared_session_revocation_lag_seconds_count',
      ];
      // Every message on the notice channel (PROTOCOL.md sections 7 and 13.4), as Redis sees them published.
      // MONITOR runs on a connection of its own (ioredis duplicates the client, which itself never connects:
      // lazyConnect); closed however the test ends, or its reconnecting after the stack stops keeps jest alive.
      const monitor = await new Redis(stack.redis.url, { lazyConnect: true }).monitor();
      try {
        const published: string[] = [];
        monitor.on('monitor', (_time: string, args: string[]) => {
          if (args[0].toLowerCase() === 'publish' && args[1] === `${PREFIX}:invalidate`) published.push(args[2]);
        });
        const before = await settled(nginxFamilies, appFamilies);
        const publishedBefore = published.length;
        const logFrom = stack.appLog.length;

        expect((await post('/app/logout', joe)).status).toBe(303);
        const revoked = await post('/app/admin/users/esteban%40example.com/logout-everywhere', admin);
        expect(revoked.status).toBe(303);
        expect(revoked.headers.location![0]).toMatch(/^\/app\/admin\?done=/); // acknowledged in time: not a warning
        expect((await get('/app/api/v1/group/one/cacheable/ops-report', esteban)).status).toBe(403);

        const after = await settled(nginxFamilies, appFamilies);
        const notices = published.slice(publishedBefore);
        expect(delta(before.app, after.app)).toEqual({
          'shared_session_logouts_total{}': 1,
          'shared_session_control_operations_total{op="revokeUser",result="ok"}': 1,
          'shared_session_control_seconds_count{op="revokeUser"}': 1,
          // One nginx subscribed: one acknowledgement expected and received, for the logout's wait and revokeUser's.
          'shared_session_acknowledgements_total{outcome="expected"}': 2,
          'shared_session_acknowledgements_total{outcome="received"}': 2,
          'shared_session_revocation_lag_seconds_count{}': 2,
        });
        // The notices: joe's session and esteban's one session (section 7), and a barrier for each wait (13.4).
        const sid = (cookie: string) => cookie.slice(0, cookie.indexOf('.'));
        expect(notices).toEqual(expect.arrayContaining([sid(joe), sid(esteban)]));
        expect(notices.filter((n) => n.startsWith('!ack '))).toHaveLength(2);
        // nginx applied every one of them, and timed each.
        expect(delta(before.nginx, after.nginx)).toEqual({
          'shared_session_notices_applied_total{}': notices.length,
          'shared_session_notice_apply_seconds_count{}': notices.length,
        });
        console.log(
          `notices published during the logout and revokeUser: ${notices.length} (${notices.map((n) => (n.startsWith('!') ? n.split(' ')[0] : 'session')).join(', ')})`,
        );

        const events = eventsIn(stack.appLog.slice(logFrom));
        expect(events.map((e) => [e.event, e.op])).toEqual([
          ['logout', 'logout'],
          ['revocation', 'revokeUser'],
        ]);
        // revokeUser ended each of esteban's sessions (this test's, and any an earlier test left), one notice each.
        const estebanNotices = notices.filter((n) => !n.startsWith('!') && n !== sid(joe)).length;
        expect(estebanNotices).toBeGreaterThanOrEqual(1);
        expect(events[1]).toMatchObject({ sessions: estebanNotices, acknowledged: 1, expected: 1, timedOut: false });
        // Session ids never appear, only their event id (PROTOCOL.md section 16.1).
        for (const e of events) if (e.session !== undefined) expect(e.session).toMatch(/^[0-9a-f]{32}$/);
      } finally {
        monitor.disconnect();
      }
    });

    it('each control operation of the admin page and of "Your sessions" emits its event and is counted', async () => {
      const admin = await mustLogin(stack.nginx.port, 'admin@example.com', 'itsadmin');
      await mustLogin(stack.nginx.port, 'joe@example.com', 'itsjoe');
      const phone = await mustLogin(stack.nginx.port, 'sam@example.com', 'itssam');
      await mustLogin(stack.nginx.port, 'sam@example.com', 'itssam');
      const families = ['shared_session_control_operations_total'];
      const before = await settled([], families);
      const logFrom = stack.appLog.length;

      expect((await post('/app/admin/users/joe%40example.com/groups/one/remove', admin)).status).toBe(303);
      expect((await post('/app/admin/groups/one/purge-cache', admin)).status).toBe(303);
      expect((await post('/app/sessions/others/revoke', phone)).status).toBe(303);
      // Last: it ends every session, the administrator's too.
      expect((await post('/app/admin/not-before', admin)).status).toBe(303);

      const after = await settled([], families);
      expect(delta(before.app, after.app)).toEqual({
        'shared_session_control_operations_total{op="removeUserFromGroup",result="ok"}': 1,
        'shared_session_control_operations_total{op="invalidateGroupCache",result="ok"}': 1,
        'shared_session_control_operations_total{op="revokeOtherSessions",result="ok"}': 1,
        'shared_session_control_operations_total{op="revokeIssuedBefore",result="ok"}': 1,
      });
      const events = eventsIn(stack.appLog.slice(logFrom));
      expect(events.map((e) => [e.event, e.op])).toEqual([
        ['group_change', 'removeUserFromGroup'],
        ['purge', 'invalidateGroupCache'],
        ['revocation', 'revokeOtherSessions'],
        ['not_before', 'revokeIssuedBefore'],
      ]);
      expect(events.filter((e) => e.event === 'wait_timeout')).toEqual([]);
    });

    it('the admin page shows the status panel from Prometheus', async () => {
      const admin = await mustLogin(stack.nginx.port, 'admin@example.com', 'itsadmin');
      await prometheus.scrapedAfter('nginx', Date.now());
      const page = await get('/app/admin', admin);
      expect(page.status).toBe(200);
      expect(page.body).toContain('<table id="status-panel">');
      expect(page.body).toMatch(/<tr id="status-decisions">.*nginx allowed: \d+\.\d\d\/s/);
      expect(page.body).toMatch(/<tr id="status-hit-rate">.*<td>\d+\.\d%<\/td>/);
      expect(page.body).toMatch(/<tr id="status-revocation-lag">.*<td>\d+\.\d ms<\/td>/);
      expect(page.body).toMatch(/<tr id="status-redis-p99">.*nginx: \d+\.\d ms/);
    });

    it('a Redis outage: readiness 503 within 5 s at both doors, 200 within 5 s of its return; 503 decisions counted', async () => {
      const joe = await mustLogin(stack.nginx.port, 'joe@example.com', 'itsjoe');
      const families = ['shared_session_decisions_total'];
      const before = await settled(families, families);

      await stack.redis.stop();
      const stoppedAt = Date.now();
      let down: { nginx: number; app: number };
      try {
        down = {
          nginx: await msUntil(async () => (await health(stack.nginxAdminPort)) === 503, stoppedAt),
          app: await msUntil(async () => (await health(stack.appAdminPort)) === 503, stoppedAt),
        };
        // Two requests at each door while Redis is away: nginx refuses them as unavailable (503);
        // the app's GroupGuard, reached directly, too.
        for (let i = 0; i < 2; i++) {
          expect((await get('/app/api/v1/group/one/uncacheable/outage', joe)).status).toBe(503);
          expect((await get('/app/api/v1/group/one/uncacheable/outage', joe, stack.appPort)).status).toBe(503);
        }
      } finally {
        await stack.redis.resume();
      }
      const backAt = Date.now();
      const up = {
        nginx: await msUntil(async () => (await health(stack.nginxAdminPort)) === 200, backAt),
        app: await msUntil(async () => (await health(stack.appAdminPort)) === 200, backAt),
      };
      console.log(
        `readiness after Redis stopped: 503 at nginx in ${down.nginx} ms, at the app in ${down.app} ms; after it returned: 200 in ${up.nginx} ms and ${up.app} ms`,
      );
      for (const ms of [down.nginx, down.app, up.nginx, up.app]) expect(ms).toBeLessThan(READINESS_BOUND_MS);

      const after = await settled(families, families);
      expect(delta(before.nginx, after.nginx)).toEqual({ 'shared_session_decisions_total{reason="unavailable",result="unavailable"}': 2 });
      expect(delta(before.app, after.app)).toEqual({ 'shared_session_decisions_total{reason="unavailable",result="unavailable"}': 2 });
      // Redis errors were counted at both doors (how many depends on retries and timers: at least one).
      expect(await prometheus.value('sum(shared_session_redis_errors_total{job="nginx"})')).toBeGreaterThan(0);
      // The restarted Redis is empty (nothing persisted here): a new login works again.
      expect((await demoLogin(stack.nginx.port, 'joe@example.com', 'itsjoe')).status).toBe(303);
    });

    it('scrapes both doors well within the scrape interval (scrape_duration_seconds, printed)', async () => {
      const nginx = await prometheus.value('scrape_duration_seconds{job="nginx"}');
      const app = await prometheus.value('scrape_duration_seconds{job="app"}');
      const series = await prometheus.value('scrape_samples_scraped{job="nginx"}');
      console.log(`last scrape: nginx ${(nginx * 1000).toFixed(1)} ms (${series} samples), app ${(app * 1000).toFixed(1)} ms`);
      // The rock's budget is 50 ms for 2,000 series (e2e/metrics-scrape); the app's registry (Node's process
      // metrics included) is read in the app's event loop, between requests: within the 1 s interval.
      expect(nginx).toBeLessThan(0.05);
      expect(app).toBeLessThan(0.5);
    });
  },
);

/** Milliseconds from `since` until `check` holds (polled every 50 ms, for at most 10 s). */
async function msUntil(check: () => Promise<boolean>, since: number): Promise<number> {
  await waitFor('a readiness change', async () => check().catch(() => false), 10_000);
  await sleep(0);
  return Date.now() - since;
}

(PROMETHEUS ? describe.each(DEMO_ADAPTERS) : describe.skip.each(DEMO_ADAPTERS))(
  'npm run demo (stack/demo.ts) with Prometheus installed, DEMO_ADAPTER=%s',
  (adapter) => {
    it('starts Prometheus scraping both doors, prints every operations address, and stops it all on SIGTERM', async () => {
      const ports = {
        NGINX_PORT: await freePort(),
        APP_PORT: await freePort(),
        REDIS_PORT: await freePort(),
        NGINX_ADMIN_PORT: await freePort(),
        APP_ADMIN_PORT: await freePort(),
        PROMETHEUS_PORT: await freePort(),
      };
      const env = { ...process.env, DEMO_ADAPTER: adapter, ...Object.fromEntries(Object.entries(ports).map(([k, v]) => [k, String(v)])) };
      const demo = spawn(process.execPath, [join(REPO_ROOT, 'stack/dist/stack/demo.js')], { env, stdio: ['ignore', 'pipe', 'pipe'] });
      let output = '';
      demo.stdout!.on('data', (d: Buffer) => (output += d.toString()));
      demo.stderr!.on('data', (d: Buffer) => (output += d.toString()));
      const exited = new Promise<number | null>((resolve) => demo.once('exit', resolve));
      try {
        await waitFor('the demo to be up', async () => output.includes('The demo is up') || demo.exitCode !== null, 60_000);
        expect(output).toContain('The demo is up');
        expect(output).toContain(`(nginx → the app on ${adapter} at http://127.0.0.1:${ports.APP_PORT}`);
        expect(output).toContain(
          `nginx   http://127.0.0.1:${ports.NGINX_ADMIN_PORT}/metrics   http://127.0.0.1:${ports.NGINX_ADMIN_PORT}/health`,
        );
        expect(output).toContain(
          `app     http://127.0.0.1:${ports.APP_ADMIN_PORT}/metrics   http://127.0.0.1:${ports.APP_ADMIN_PORT}/health`,
        );
        expect(output).toContain(`Prometheus http://127.0.0.1:${ports.PROMETHEUS_PORT} scrapes both every 5 s`);
        // Prometheus reads its configuration just after it answers: until then it has no targets.
        const targets = await waitFor('Prometheus to have its targets', async () => {
          const body = JSON.parse((await request(ports.PROMETHEUS_PORT, '/api/v1/targets')).body) as {
            data: { activeTargets: { labels: { job: string; instance: string } }[] };
          };
          return body.data.activeTargets.length === 2 && body.data.activeTargets;
        });
        expect(targets.map((t) => `${t.labels.job} ${t.labels.instance}`).sort()).toEqual([
          `app 127.0.0.1:${ports.APP_ADMIN_PORT}`,
          `nginx 127.0.0.1:${ports.NGINX_ADMIN_PORT}`,
        ]);
        const rules = JSON.parse((await request(ports.PROMETHEUS_PORT, '/api/v1/rules')).body) as { data: { groups: { name: string }[] } };
        expect(rules.data.groups.map((g) => g.name)).toEqual(['shared-session']);
      } finally {
        demo.kill('SIGTERM');
        expect(await exited).toBe(0);
      }
      for (const port of Object.values(ports))
        expect([
          port,
          await request(port, '/').then(
            () => 'answers',
            () => 'closed',
          ),
        ]).toEqual([port, 'closed']);
    }, 90_000);
  },
);

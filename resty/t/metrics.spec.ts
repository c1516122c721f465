/**
 * The rock's operations face in a real nginx worker against a real
 * redis-server (README, "Operations"): known traffic and the exact counter
 * deltas that serve_metrics() then shows, a Redis outage (503s counted,
 * health() 503 within 5 s and 200 again within 5 s of Redis coming back),
 * figures() agreeing with the text, and the audit log (one JSON line per
 * refusal, the session's event id of protocol/events.json, never its id;
 * floods cut per worker with a count of the lines dropped).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import Redis from 'ioredis';
import { destroySession, invalidationChannel, newTimedSessionId, writeSession } from '../../protocol/testkit';
import { NginxServer } from '../../stack/nginx-server';
import { RedisServer } from '../../stack/redis-server';
import { sleep, waitFor } from '../../stack/wait';
import {
  ACCESS_LOCATION,
  assertNoCrash,
  cookieFor,
  EPOCH_LOCATION,
  get,
  nginxConf,
  SALT,
  signature,
  startRedisAndNginx,
  stopRedisAndNginx,
} from './support';

const PREFIX = 'rss_metrics';
const FLUSH_MS = 200; // metrics.interval

interface EventIdVector {
  secret: string;
  session_id: string;
  event_id: string;
}

// protocol/events.json's vector with an untimed session id: nginx runs with its secret.
const VECTOR = (
  JSON.parse(readFileSync(join(__dirname, '../../protocol/events.json'), 'utf8')) as { vectors: EventIdVector[] }
).vectors.find((v) => v.secret === 'dev-secret')!;
const SECRET = VECTOR.secret;
const SID = VECTOR.session_id;
const WARM_SID = '11111111-2f0d-4b7a-9c53-1f1e2d3c4b5a';
const AUDIT_MAX = 5; // audit.max_lines_per_second

/** `refresh`: the option's Lua (off by default here, so that the counts of the checks stand alone). */
function conf(redisPort: number, refresh = 'refresh = false,') {
  return nginxConf({
    dict: '1m',
    http: 'lua_shared_dict shared_session_metrics 1m;',
    configure: `{
      secret = "${SECRET}", salt = "${SALT}", key_prefix = "${PREFIX}",
      redis = { port = ${redisPort}, connect_timeout = 100, read_timeout = 300 },
      decision_cache = { dict = "decisions", all_writers_publish = true },
      ${refresh}
      metrics = { dict = "shared_session_metrics", interval = ${FLUSH_MS / 1000} },
      audit = { max_lines_per_second = ${AUDIT_MAX} },
    }`,
    subscriber: true,
    locations: `${ACCESS_LOCATION}
${EPOCH_LOCATION}
    location = /metrics {
      allow 127.0.0.1; deny all;
      content_by_lua_block { require("resty.shared_session").serve_metrics() }
    }
    location = /health {
      allow 127.0.0.1; deny all;
      content_by_lua_block { require("resty.shared_session").health() }
    }
    # Test-only: n made-up series in the metrics dict (n=0: removed again), and how long the work of
    # serve_metrics() (figures, then the text) takes over what is there, in ms.
    location = /series {
      content_by_lua_block {
        local dict = ngx.shared.shared_session_metrics
        local n = tonumber(ngx.var.arg_n)
        for i = 1, 100000 do
          local k = 'shared_session_subscriber_connected{primary="10.0.' .. i .. ':6379"}'
          if i > n then
            if not dict:get(k) then break end
            dict:delete(k)
          else
            assert(dict:set(k, 1))
          end
        end
        local metrics = require "resty.shared_session.metrics"
        local shared_session = require "resty.shared_session"
        local t0 = metrics.clock()
        local text = metrics.text(assert(shared_session.figures()))
        local ms = (metrics.clock() - t0) * 1000
        local _, lines = text:gsub("%c[^#]", "")
        ngx.say(lines, " ", ms)
      }
    }
    location = /figures {
      content_by_lua_block {
        local cjson = require "cjson"
        local list = assert(require("resty.shared_session").figures())
        local out = {}
        for _, s in ipairs(list) do
          if s.type ~= "histogram" and s.name == "shared_session_decisions_total" then
            out[#out + 1] = s.labels.result .. "/" .. s.labels.reason .. "=" .. s.value
          end
        end
        ngx.say(cjson.encode(out))
      }
    }
`,
  });
}

/** The series of a scrape (`name{labels}` → value); histograms' _bucket/_sum/_count series too. */
async function scrape(nginx: NginxServer): Promise<Map<string, number>> {
  const res = await get(nginx, '/metrics');
  expect(res.status).toBe(200);
  const series = new Map<string, number>();
  for (const line of res.body.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const at = line.lastIndexOf(' ');
    series.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return series;
}

/** after - before for every series that moved (absent counts as 0). */
function deltas(before: Map<string, number>, after: Map<string, number>, only: RegExp): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of after) {
    if (!only.test(k)) continue;
    const d = v - (before.get(k) ?? 0);
    if (d !== 0) out[k] = d;
  }
  return out;
}

/** Waits long enough for every worker's counts to reach the dict (two flush intervals and a margin). */
const flushed = () => sleep(3 * FLUSH_MS);

const status = async (nginx: NginxServer, group: string, cookie?: string) => (await get(nginx, `/groups/${group}/x`, cookie)).status;

function auditLines(log: string): Record<string, unknown>[] {
  return [...log.matchAll(/shared_session audit: (\{[^}]*\})/g)].map((m) => JSON.parse(m[1]) as Record<string, unknown>);
}

describe('metrics, health and audit at nginx', () => {
  let redis: RedisServer;
  let client: Redis;
  let nginx: NginxServer;

  beforeAll(async () => {
    ({ redis, client, nginx } = await startRedisAndNginx((port) => ({ conf: conf(port) })));
    await writeSession(client, PREFIX, SID, { username: 'ada', groups: ['g1'] }, { signature: signature(SID, SECRET) });
    await writeSession(client, PREFIX, WARM_SID, { username: 'bob', groups: ['g1'] }, { signature: signature(WARM_SID, SECRET) });
    await waitFor('the subscriber', async () => (await get(nginx, '/epoch')).body.trim() === 'up', 5000);
    // One miss first: it keeps the not-before mark under the epoch, which the subscriber's next heartbeat
    // turns into a new revocation count; after that the worker's entries stay valid.
    expect(await status(nginx, 'g1', `session=${cookieFor(WARM_SID, SECRET)}`)).toBe(200);
    await sleep(600);
  });

  afterAll(async () => {
    await stopRedisAndNginx({ redis, client, nginx }, (log) => {
      assertNoCrash(log);
      expect(log).not.toContain(SID);
      expect(log).not.toContain(SID.slice(0, 6));
    });
  });

  test('known traffic gives exact counter deltas', async () => {
    const cookie = `session=${cookieFor(SID, SECRET)}`;
    await flushed();
    const before = await scrape(nginx);

    expect(await status(nginx, 'g1', cookie)).toBe(200); // miss: Redis asked
    expect(await status(nginx, 'g1', cookie)).toBe(200); // worker hit
    expect(await status(nginx, 'g1', cookie)).toBe(200); // worker hit
    expect(await status(nginx, 'g2', cookie)).toBe(403); // miss: not a member
    expect(await status(nginx, 'g2', cookie)).toBe(403); // worker hit (a refusal kept)
    // A notice for another session: every worker entry stops counting, the dict's decision for SID does not.
    await client.publish(invalidationChannel(PREFIX), WARM_SID);
    await sleep(100);
    expect(await status(nginx, 'g1', cookie)).toBe(200); // dict hit
    expect(await status(nginx, 'g1')).toBe(401); // no cookie
    expect(await status(nginx, 'g1', `session=${cookieFor(SID, 'not-the-secret')}`)).toBe(403); // forged
    expect(await status(nginx, 'g1', `session=${cookieFor(SID, SECRET)}; session=${cookieFor(WARM_SID, SECRET)}`)).toBe(403);
    const ended = newTimedSessionId(Date.now() - 60_000, Date.now() - 1000);
    expect(await status(nginx, 'g1', `session=${cookieFor(ended, SECRET)}`)).toBe(403); // past its deadline

    await flushed();
    const after = await scrape(nginx);
    expect(deltas(before, after, /^shared_session_(decisions|decision_cache|notices_applied)_total/)).toEqual({
      'shared_session_decisions_total{result="allowed",reason="none"}': 4,
      'shared_session_decisions_total{result="refused",reason="not_member"}': 2,
      'shared_session_decisions_total{result="refused",reason="no_session"}': 2,
      'shared_session_decisions_total{result="refused",reason="two_sessions"}': 1,
      'shared_session_decisions_total{result="refused",reason="session_ended"}': 1,
      'shared_session_decision_cache_total{result="worker_hit"}': 3,
      'shared_session_decision_cache_total{result="dict_hit"}': 1,
      'shared_session_decision_cache_total{result="miss"}': 2,
      shared_session_notices_applied_total: 1,
    });
    // One histogram observation per round trip of the check, and per notice applied.
    expect(deltas(before, after, /_count/)).toEqual({
      'shared_session_redis_seconds_count{op="check"}': 2,
      shared_session_notice_apply_seconds_count: 1,
    });
    // Buckets are cumulative and end at _count.
    const buckets = [...after].filter(([k]) => k.startsWith('shared_session_redis_seconds_bucket{op="check",'));
    expect(buckets.length).toBe(13);
    expect(buckets.map(([, v]) => v)).toEqual([...buckets.map(([, v]) => v)].sort((a, b) => a - b));
    expect(buckets[12]).toEqual([
      'shared_session_redis_seconds_bucket{op="check",le="+Inf"}',
      after.get('shared_session_redis_seconds_count{op="check"}'),
    ]);
    expect(after.get('shared_session_subscriber_connected{primary="127.0.0.1:' + redis.port + '"}')).toBe(1);
    expect(after.get('shared_session_dict_free_bytes{dict="decisions"}')).toBeGreaterThan(0);
    expect(after.get('shared_session_dict_free_bytes{dict="shared_session_metrics"}')).toBeGreaterThan(0);
  });

  test('figures() gives what the text gives', async () => {
    await flushed();
    const text = await scrape(nginx);
    const figures = JSON.parse((await get(nginx, '/figures')).body) as string[];
    const fromText = [...text]
      .filter(([k]) => k.startsWith('shared_session_decisions_total{'))
      .map(([k, v]) => {
        const m = /result="([^"]+)",reason="([^"]+)"/.exec(k)!;
        return `${m[1]}/${m[2]}=${v}`;
      });
    expect([...figures].sort()).toEqual([...fromText].sort());
  });

  test('the audit log: one JSON line per refusal with the event id, none without a cookie', async () => {
    await sleep(1100); // a fresh second for the per-worker limit
    const from = nginx.errorLog().length;
    expect(await status(nginx, 'g9', `session=${cookieFor(SID, SECRET)}`)).toBe(403);
    expect(await status(nginx, 'g9')).toBe(401);
    const lines = auditLines(nginx.errorLog().slice(from));
    expect(lines).toEqual([{ result: 'refused', reason: 'not_member', status: 403, session: VECTOR.event_id, at: expect.any(Number) }]);
    expect(Math.abs((lines[0].at as number) - Date.now())).toBeLessThan(5000);
  });

  test('a flood of forged cookies is cut per worker, with a count of the lines dropped', async () => {
    await sleep(1100);
    const from = nginx.errorLog().length;
    const forged = `session=${cookieFor(SID, 'forged')}`;
    const FLOOD = 40;
    for (let i = 0; i < FLOOD; i++) expect(await status(nginx, 'g1', forged)).toBe(403);
    await sleep(1100);
    expect(await status(nginx, 'g1', forged)).toBe(403); // the next line allowed says how many were dropped
    const lines = auditLines(nginx.errorLog().slice(from));
    const dropped = lines.reduce((n, l) => n + ((l.dropped as number | undefined) ?? 0), 0);
    expect(lines.length + dropped).toBe(FLOOD + 1);
    expect(dropped).toBeGreaterThan(0);
    // At most AUDIT_MAX lines in any one second.
    const perSecond = new Map<number, number>();
    for (const l of lines)
      perSecond.set(Math.floor((l.at as number) / 1000), (perSecond.get(Math.floor((l.at as number) / 1000)) ?? 0) + 1);
    expect(Math.max(...perSecond.values())).toBeLessThanOrEqual(AUDIT_MAX);
    expect(lines.every((l) => l.reason === 'no_session' && l.session === VECTOR.event_id)).toBe(true);
  });

  test('scraping while requests are answered costs no request a 5xx', async () => {
    const cookie = `session=${cookieFor(SID, SECRET)}`;
    // Ten rounds of 60 requests and 4 scrapes at once (nginxConf's worker_connections is 256).
    for (let round = 0; round < 10; round++) {
      const answers = await Promise.all([
        ...Array.from({ length: 60 }, () => status(nginx, 'g1', cookie)),
        ...Array.from({ length: 4 }, async () => (await get(nginx, '/metrics')).status),
      ]);
      expect(answers).toEqual(Array(64).fill(200));
    }
  });

  test('serve_metrics() with 2,000 series: the time it takes is printed, not asserted', async () => {
    const [series, ms] = (await get(nginx, '/series?n=2000')).body.trim().split(' ').map(Number);
    expect(series).toBeGreaterThanOrEqual(2000);
    const scrapeT0 = performance.now();
    const scraped = await scrape(nginx);
    const scrapeMs = performance.now() - scrapeT0;
    expect(scraped.size).toBe(series);
    console.log(
      `serve_metrics() with ${series} series: ${ms.toFixed(2)} ms in the worker (figures and text), ${scrapeMs.toFixed(1)} ms for the whole scrape over HTTP`,
    );
    expect((await get(nginx, '/series?n=0')).status).toBe(200);
  });

  test('a Redis outage: 503s counted as unavailable, health 503 within 5 s, 200 within 5 s of Redis back', async () => {
    const health = async () => {
      const res = await get(nginx, '/health');
      return {
        status: res.status,
        body: JSON.parse(res.body) as { status: string; redis: { ok: boolean }; subscriber: { subscribed: boolean; since: number | null } },
      };
    };
    const up = await health();
    expect(up.status).toBe(200);
    expect(up.body).toEqual({ status: 'ok', redis: { ok: true }, subscriber: { subscribed: true, since: expect.any(Number) } });
    expect(Math.abs(up.body.subscriber.since! - Date.now() / 1000)).toBeLessThan(600);

    const other = '22222222-2f0d-4b7a-9c53-1f1e2d3c4b5a';
    await flushed();
    const before = await scrape(nginx);
    await redis.stop();
    try {
      const t0 = performance.now();
      await waitFor('health 503', async () => (await health()).status === 503, 5000);
      expect(performance.now() - t0).toBeLessThan(5000);
      const down = await health();
      expect(down.body).toEqual({ status: 'unavailable', redis: { ok: false }, subscriber: { subscribed: false, since: null } });
      expect(await status(nginx, 'g1', `session=${cookieFor(other, SECRET)}`)).toBe(503);
      await flushed();
      const after = await scrape(nginx);
      expect(deltas(before, after, /^shared_session_decisions_total/)).toEqual({
        'shared_session_decisions_total{result="unavailable",reason="unavailable"}': 1,
      });
      expect(deltas(before, after, /^shared_session_redis_errors_total\{op="check"/)).toEqual({
        'shared_session_redis_errors_total{op="check",kind="connection"}': 1,
      });
      expect(after.get(`shared_session_subscriber_connected{primary="127.0.0.1:${redis.port}"}`)).toBe(0);
    } finally {
      await redis.resume();
    }
    const t1 = performance.now();
    await waitFor('health 200', async () => (await health()).status === 200, 5000);
    expect(performance.now() - t1).toBeLessThan(5000);
    await flushed();
    const back = await scrape(nginx);
    expect(back.get(`shared_session_subscriber_connected{primary="127.0.0.1:${redis.port}"}`)).toBe(1);
    expect(back.get('shared_session_subscriber_reconnects_total')).toBeGreaterThanOrEqual(1);
    // (The session outlived the outage only if Redis kept it: nothing is persisted, so it is gone.)
    await destroySession(client, PREFIX, SID).catch(() => undefined);
  });
});

describe('metrics of the refresh at nginx', () => {
  let redis: RedisServer;
  let client: Redis;
  let nginx: NginxServer;

  beforeAll(async () => {
    ({ redis, client, nginx } = await startRedisAndNginx((port) => ({ conf: conf(port, 'refresh = { interval = 1 },') })));
    await waitFor('the subscriber', async () => (await get(nginx, '/epoch')).body.trim() === 'up', 5000);
  });

  afterAll(async () => {
    await stopRedisAndNginx({ redis, client, nginx }, (log) => assertNoCrash(log));
  });

  test('a refresh sent is counted once, with its round trip', async () => {
    // Its keys expire in 5 s, its idle timeout is 30 s: a refresh is due at the first allowed request, and one
    // refresh serves the interval however many requests come.
    await writeSession(client, PREFIX, SID, { username: 'ada', groups: ['g1'], _idle: 30 }, { signature: signature(SID, SECRET), ttl: 5 });
    await flushed();
    const before = await scrape(nginx);
    for (let i = 0; i < 5; i++) expect(await status(nginx, 'g1', `session=${cookieFor(SID, SECRET)}`)).toBe(200);
    await waitFor('the refresh', async () => (await client.pttl(`${PREFIX}:data:${SID}`)) > 10_000, 3000);
    await flushed();
    const after = await scrape(nginx);
    expect(deltas(before, after, /^shared_session_refreshes_total|_count\{op="refresh"\}/)).toEqual({
      'shared_session_refreshes_total{result="sent"}': 1,
      'shared_session_redis_seconds_count{op="refresh"}': 1,
    });
  });
});

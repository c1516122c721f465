// `npm run bench:control`: how fast control from outside the request
// (PROTOCOL.md section 13) reaches nginx. For a user with 50 sessions, over
// many trials: the time from `removeUserFromGroup` / `revokeUser` returning
// to the first refusal at nginx (several workers), how many requests sent at
// once right after the call returned were still allowed, with and without
// synchronous revocation (`wait: true`), and what waiting adds to the call.
// Then a logout through a Nest app with and without the module's
// `revocation.wait`: what it adds to the logout, and how many requests sent
// at once right after the logout answered nginx still allowed. Then the
// per-user index over 10,000 logins with expiries, and what login metadata
// costs. Prints the figures; docs/control.md quotes them.
// `-- --quick` runs fewer trials; `-- --only=logout` the logout alone.
import { Controller, HttpCode, Inject, INestApplication, Module, Post, Req, Res } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import type { Request, Response } from 'express';
import Redis from 'ioredis';
import { SharedSessionModule, SharedSessionService } from '../libs/shared-session/src';
import { FlaskRedisSessionStore, sessionRepository } from '../libs/shared-session/src/flask-redis-session.store';
import { REDIS_CLIENT_DEFAULTS, whenReady } from '../libs/shared-session/src/redis-client';
import { SessionControl } from '../libs/shared-session/src/session-control';
import { SessionCookieSigner } from '../libs/shared-session/src/session-cookie-signer';
import { newSessionId } from '../libs/shared-session/src/session-id';
import { cookieSetBy } from '../stack/demo-login';
import { HttpConnection, requestBytes } from '../stack/http-client';
import { NginxServer } from '../stack/nginx-server';
import { percentile } from '../stack/percentile';
import { RedisServer } from '../stack/redis-server';
import { sleep } from '../stack/wait';

const QUICK = process.argv.includes('--quick');
const LOGOUT_ONLY = process.argv.includes('--only=logout');
const TRIALS = QUICK ? 60 : 300;
const WORKERS = 2;
const SESSIONS = 50;
const CONNECTIONS = 8; // probes sent at once right after the call returns, spread over the workers
const SECRET = 'bench-control-secret';
const PREFIX = 'bench_ctl';
const USER = 'bob@example.com';
const quiet = { error: () => undefined, warn: () => undefined, log: () => undefined };

function conf(redisPort: number) {
  return (ctx: { preamble: string; httpPreamble: string; port: number }) => `${ctx.preamble}
events { worker_connections 1024; }
http {
  ${ctx.httpPreamble}
  lua_shared_dict decisions 10m;
  init_by_lua_block {
    require("resty.shared_session").configure{
      secret = "${SECRET}", key_prefix = "${PREFIX}",
      redis = { port = ${redisPort} },
      decision_cache = { dict = "decisions", ttl = 1 },
    }
  }
  init_worker_by_lua_block { require("resty.shared_session").start_subscriber() }
  server {
    listen 127.0.0.1:${ctx.port};
    location ~ ^/groups/(?<group_id>[a-z]+)/ {
      access_by_lua_block { require("resty.shared_session").access(ngx.var.group_id) }
      content_by_lua_block { ngx.print("ok") }
    }
  }
}
`;
}

interface Trial {
  /** ms from the call's return to the first 403 (negative: none allowed after return). */
  refusedAfter: number;
  /** Requests sent at once right after the return that were still allowed. */
  allows: number;
  /** How long the call took (ms). */
  callMs: number;
}

function summary(trials: Trial[]) {
  const refused = trials.map((t) => t.refusedAfter);
  const calls = trials.map((t) => t.callMs);
  return {
    refusedP50: percentile(refused, 50),
    refusedP99: percentile(refused, 99),
    refusedMax: Math.max(...refused),
    allows: trials.reduce((n, t) => n + t.allows, 0),
    probes: trials.length * CONNECTIONS,
    callP50: percentile(calls, 50),
    callP99: percentile(calls, 99),
  };
}

async function main(): Promise<void> {
  const redis = await RedisServer.start();
  const client = new Redis(redis.url, REDIS_CLIENT_DEFAULTS);
  const admin = new Redis(redis.url);
  let nginx: NginxServer | undefined;
  try {
    nginx = await NginxServer.start({ conf: conf(redis.port), workers: WORKERS });
    if (!(await whenReady(client, 3000))) throw new Error('Redis not ready');
    const signer = new SessionCookieSigner({ secret: SECRET });
    const sessions = sessionRepository({ client, keyPrefix: PREFIX, logger: quiet });
    const store = new FlaskRedisSessionStore({ client, signer, keyPrefix: PREFIX, logger: quiet }, sessions);
    const control = new SessionControl({ sessions, client, ttlSeconds: 3600 });
    await control.prepareSynchronousRevocation();
    const conns = Array.from({ length: CONNECTIONS }, () => new HttpConnection(nginx!.port));
    const save = (sid: string, data: object) =>
      new Promise<void>((ok, fail) => store.set(sid, { cookie: {}, ...data } as never, (e) => (e ? fail(e) : ok())));

    /** The user's 50 sessions, all in group one; the probe's cookie (one of them). */
    async function fiftySessions(): Promise<string> {
      const sids = Array.from({ length: SESSIONS }, () => newSessionId());
      await Promise.all(sids.map((sid) => save(sid, { username: USER, groups: ['one', 'three'] })));
      return `session=${signer.sign(sids[0])}`;
    }
    const probe = (i: number, cookie: string) => conns[i].request(requestBytes('/groups/one/r', { headers: { Cookie: cookie } }));
    async function allowedEverywhere(cookie: string): Promise<void> {
      for (let round = 0; round < 500; round++) {
        const statuses = await Promise.all(conns.map((_, i) => probe(i, cookie).then((r) => r.status)));
        if (statuses.every((s) => s === 200)) return;
        await sleep(1);
      }
      throw new Error('the probe session never got in');
    }

    async function trial(cookie: string, change: () => Promise<unknown>): Promise<Trial> {
      const started = performance.now();
      await change();
      const returned = performance.now();
      const answers = await Promise.all(
        conns.map((_, i) => probe(i, cookie).then((r) => ({ status: r.status, at: performance.now() - returned }))),
      );
      const allows = answers.filter((a) => a.status === 200).length;
      const refusals = answers.filter((a) => a.status === 403).map((a) => a.at);
      let refusedAfter = refusals.length === CONNECTIONS ? Math.min(...refusals) : NaN;
      if (Number.isNaN(refusedAfter)) {
        // Some still allowed: ask again (one connection) until refused.
        for (;;) {
          const r = await probe(0, cookie);
          if (r.status === 403) {
            refusedAfter = performance.now() - returned;
            break;
          }
          if (performance.now() - returned > 5000) throw new Error('never refused');
        }
      }
      return { refusedAfter, allows, callMs: returned - started };
    }

    // The modes alternate trial by trial, so that a busy moment of the machine falls on both alike.
    const trials: Record<string, Trial[]> = {};
    const record = (name: string, t: Trial) => (trials[name] ??= []).push(t);
    if (!LOGOUT_ONLY) await controlCalls();
    async function controlCalls(): Promise<void> {
      const removalCookie = await fiftySessions();
      for (let i = 0; i < TRIALS; i++) {
        for (const wait of [false, true]) {
          await control.addUserToGroup(USER, 'one');
          await allowedEverywhere(removalCookie);
          record(
            `removeUserFromGroup, wait ${wait}`,
            await trial(removalCookie, () => control.removeUserFromGroup(USER, 'one', { wait, timeoutMs: 1000 })),
          );
        }
      }
      await control.revokeUser(USER);
      for (let i = 0; i < TRIALS; i++) {
        for (const wait of [false, true]) {
          const c = await fiftySessions();
          await allowedEverywhere(c);
          record(`revokeUser, wait ${wait}`, await trial(c, () => control.revokeUser(USER, { wait, timeoutMs: 1000 })));
        }
      }
      const results = Object.fromEntries(
        ['removeUserFromGroup, wait false', 'removeUserFromGroup, wait true', 'revokeUser, wait false', 'revokeUser, wait true'].map(
          (name) => [name, summary(trials[name])],
        ),
      );

      console.log(
        `\nControl from outside the request: a user with ${SESSIONS} sessions, nginx with ${WORKERS} workers, ${TRIALS} trials each;`,
      );
      console.log(
        `after each call returned, ${CONNECTIONS} requests at once on ${CONNECTIONS} keep-alive connections, then until refused.\n`,
      );
      console.log('| call | first refusal after return: p50 / p99 / max (ms) | allowed after return | call: p50 / p99 (ms) |');
      console.log('|---|---:|---:|---:|');
      for (const [name, s] of Object.entries(results)) {
        console.log(
          `| ${name} | ${s.refusedP50.toFixed(2)} / ${s.refusedP99.toFixed(2)} / ${s.refusedMax.toFixed(2)} | ${s.allows} of ${s.probes} | ${s.callP50.toFixed(2)} / ${s.callP99.toFixed(2)} |`,
        );
      }
      for (const call of ['removeUserFromGroup', 'revokeUser']) {
        const a = results[`${call}, wait false`];
        const b = results[`${call}, wait true`];
        console.log(
          `${call}: waiting adds ${(b.callP50 - a.callP50).toFixed(2)} ms at p50, ${(b.callP99 - a.callP99).toFixed(2)} ms at p99`,
        );
      }

      // The index over 10,000 logins of one user, each session living 1 s.
      const shortStore = new FlaskRedisSessionStore({ client, signer, keyPrefix: `${PREFIX}_idx`, ttlSeconds: 1, logger: quiet });
      const index = `${PREFIX}_idx:user:${USER}`;
      let maxMembers = 0;
      let maxBytes = 0;
      const t0 = performance.now();
      for (let i = 0; i < 10_000; i++) {
        await new Promise<void>((ok, fail) =>
          shortStore.set(newSessionId(), { cookie: {}, username: USER, groups: ['one'] } as never, (e) => (e ? fail(e) : ok())),
        );
        if (i % 250 === 249) {
          maxMembers = Math.max(maxMembers, await admin.zcard(index));
          maxBytes = Math.max(maxBytes, Number(await admin.memory('USAGE', index)));
        }
      }
      const seconds = (performance.now() - t0) / 1000;
      const atEnd = await admin.zcard(index);
      await sleep(1100);
      const afterwards = await admin.exists(index);
      console.log(
        `\nIndex: 10,000 logins of one user over ${seconds.toFixed(1)} s, each session living 1 s: at most ${maxMembers} members` +
          ` (${maxBytes} bytes) in the index, ${atEnd} at the end, and the key ${afterwards ? 'still there' : 'gone'} 1.1 s after the last login.`,
      );

      // Login metadata: in the session's JSON (what the module does) or a hash beside the index.
      const plain = JSON.stringify({ username: USER, groups: ['one', 'three'], _permanent: true });
      const withMeta = JSON.stringify({
        username: USER,
        groups: ['one', 'three'],
        _permanent: true,
        _login: {
          ip: '203.0.113.7',
          userAgent: 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36',
        },
      });
      await admin.set('m:plain', plain, 'EX', 3600);
      await admin.set('m:json', withMeta, 'EX', 3600);
      await admin.hset('m:hash', 'ip', '203.0.113.7', 'userAgent', JSON.parse(withMeta)._login.userAgent);
      await admin.expire('m:hash', 3600);
      const [p, j, h] = await Promise.all(['m:plain', 'm:json', 'm:hash'].map(async (k) => Number(await admin.memory('USAGE', k))));
      console.log(
        `Login metadata (IP + a 105-byte User-Agent): +${j - p} bytes in the session's JSON, or a hash of ${h} bytes beside it (one more key, one more TTL to keep).`,
      );
    }

    // A logout through a Nest app (SharedSessionService.logout), with and without `revocation.wait`.
    const apps = await Promise.all([false, true].map((wait) => logoutApp(redis.url, wait)));
    try {
      for (let i = 0; i < TRIALS; i++) {
        for (const [n, wait] of [false, true].entries()) {
          const app = apps[n];
          const login = await app.conn.request(requestBytes('/login', { method: 'POST', body: '' }));
          const cookie = cookieSetBy(login);
          if (login.status !== 204 || !cookie) throw new Error(`login at the app: ${login.status}`);
          await allowedEverywhere(`session=${cookie}`);
          record(
            `logout, revocation.wait ${wait}`,
            await trial(`session=${cookie}`, async () => {
              const out = await app.conn.request(
                requestBytes('/logout', { method: 'POST', headers: { Cookie: `session=${cookie}` }, body: '' }),
              );
              if (out.status !== 204) throw new Error(`logout at the app: ${out.status}`);
            }),
          );
        }
      }
    } finally {
      for (const app of apps) {
        app.conn.close();
        await app.app.close();
      }
    }
    const logouts = [false, true].map((wait) => summary(trials[`logout, revocation.wait ${wait}`]));
    console.log(
      `\nLogout through a Nest app (SharedSessionService.logout, HTTP on loopback), nginx with ${WORKERS} workers, ${TRIALS} trials each;`,
    );
    console.log(`after each logout answered, ${CONNECTIONS} requests at once with its cookie, then until refused.\n`);
    console.log('| logout | allowed after the answer | first refusal after the answer: p50 / p99 (ms) | logout: p50 / p99 (ms) |');
    console.log('|---|---:|---:|---:|');
    for (const [n, l] of logouts.entries()) {
      console.log(
        `| revocation.wait ${n === 1} | ${l.allows} of ${l.probes} | ${l.refusedP50.toFixed(2)} / ${l.refusedP99.toFixed(2)} | ${l.callP50.toFixed(2)} / ${l.callP99.toFixed(2)} |`,
      );
    }
    console.log(
      `revocation.wait adds ${(logouts[1].callP50 - logouts[0].callP50).toFixed(2)} ms to a logout at p50, ${(logouts[1].callP99 - logouts[0].callP99).toFixed(2)} ms at p99`,
    );
    for (const c of conns) c.close();
    await control.close();
  } finally {
    await nginx?.dispose();
    client.disconnect();
    admin.disconnect();
    await redis.dispose();
  }
}

@Controller()
class LogoutController {
  constructor(@Inject(SharedSessionService) private readonly sessions: SharedSessionService) {}

  @Post('login')
  @HttpCode(204)
  async login(@Req() req: Request): Promise<void> {
    await this.sessions.login(req, { username: USER, groups: ['one'] });
  }

  @Post('logout')
  @HttpCode(204)
  async logout(@Req() req: Request, @Res({ passthrough: true }) res: Response): Promise<void> {
    await this.sessions.logout(req, res);
  }
}

/** A Nest app with the module (the bench's prefix and secret, `revocation.wait` as given) on a free port, and a keep-alive connection to it. */
async function logoutApp(redisUrl: string, wait: boolean): Promise<{ app: INestApplication; conn: HttpConnection }> {
  @Module({
    imports: [SharedSessionModule.forRoot({ secret: SECRET, keyPrefix: PREFIX, redis: redisUrl, revocation: { wait, timeoutMs: 1000 } })],
    controllers: [LogoutController],
  })
  class LogoutModule {}
  const app = await NestFactory.create(LogoutModule, { logger: false });
  await app.listen(0, '127.0.0.1');
  const address = app.getHttpServer().address() as { port: number };
  return { app, conn: new HttpConnection(address.port) };
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});

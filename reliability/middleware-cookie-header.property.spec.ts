/**
 * The middleware's Cookie-header translation (SharedSessionMiddleware turns
 * `session=<sid>.<sig>` into express-session's own format), under arbitrary
 * input: property-based on the exported middleware class, then over raw
 * HTTP against a tiny Nest app on a real redis-server. Which cookie value is
 * a session comes from the protocol test kit, not from the library's signer.
 */
import type { INestApplication } from '@nestjs/common';
import type { AddressInfo } from 'node:net';
import { parse as parseCookieHeader } from 'cookie';
import { unsign as expressUnsign } from 'cookie-signature';
import fc from 'fast-check';
import type Redis from 'ioredis';
import request from 'supertest';
import { FlaskRedisSessionStore, SessionCookieSigner } from '../libs/shared-session/src';
import { SharedSessionMiddleware } from '../libs/shared-session/src/shared-session.middleware';
import { resolveSharedSessionOptions } from '../libs/shared-session/src/shared-session.options';
import { createTestApp } from '../libs/shared-session/test/test-app';
import { cookieValue, sessionIdOf } from '../protocol/testkit';
import { RedisServer } from '../stack/redis-server';
import { headerByte, hostileString, mutatedCookie, validSid } from './support/cookie-arbitraries';
import { requestBytes, runPool, statusCounts } from '../stack/http-client';

const SEED = process.env.FC_SEED ? Number(process.env.FC_SEED) : Date.now() ^ (Math.random() * 0x7fffffff);
const SECRET = 'middleware-secret';
const SALT = 'app_session_salt';
const signer = new SessionCookieSigner({ secret: SECRET, salt: SALT });

type Translate = (header: string | undefined) => { header: string | undefined; verified: { sid: string; signedWithFallback: boolean } | null };

/** The middleware, built as the module builds it, with a Redis client that is never called. */
function middleware(): { translate: Translate; internalSecret: string } {
  const config = resolveSharedSessionOptions({ secret: SECRET, salt: SALT, redis: 'redis://127.0.0.1:1' });
  const client = { on: () => client, defineCommand: () => undefined, status: 'ready' } as unknown as Redis;
  const store = new FlaskRedisSessionStore({ client, signer, logger: { error() {}, warn() {}, log() {} } });
  const mw = new SharedSessionMiddleware(config, signer, store) as unknown as { translateRequestCookie: Translate; internalSecret: string };
  return { translate: (h) => mw.translateRequestCookie(h), internalSecret: mw.internalSecret };
}

/** What express-session will find under our cookie name in the rebuilt header. */
function seenByExpressSession(header: string | undefined, internalSecret: string): { present: boolean; sid: string | false } {
  if (header === undefined) return { present: false, sid: false };
  const value = parseCookieHeader(header).session;
  if (value === undefined) return { present: false, sid: false };
  return { present: true, sid: value.startsWith('s:') ? expressUnsign(value.slice(2), internalSecret) : false };
}

const NAMES = ['session', 'SESSION', 'Session', ' session', 'session ', '\tsession', 'sessio', 'sessionx', 'xsession', 'other', 'a', '', 's%65ssion'];

describe('SharedSessionMiddleware cookie-header translation, property-based', () => {
  const { translate, internalSecret } = middleware();
  let total = 0;
  afterAll(() => console.log(`middleware translation properties: ${total} cases (seed ${SEED})`));

  it('never throws, and express-session sees our cookie only when its signature was valid', () => {
    const started = Date.now();
    const header = fc.oneof(
      hostileString(),
      fc.array(fc.tuple(fc.constantFrom(...NAMES), hostileString(), fc.constantFrom(';', '; ', ' ;', ';;', ',', ' ')), { maxLength: 12 }).map((parts) =>
        parts.map(([n, v, sep]) => `${n}=${v}${sep}`).join(''),
      ),
    );
    fc.assert(
      fc.property(header, (h) => {
        const { header: rebuilt, verified } = translate(h);
        const seen = seenByExpressSession(rebuilt, internalSecret);
        // Nothing an attacker wrote is handed to express-session as its session cookie.
        if (!verified) return !seen.present;
        return seen.sid === verified.sid;
      }),
      { numRuns: 15_000, seed: SEED },
    );
    total += 15_000;
    console.log(`middleware property "arbitrary Cookie headers": 15000 cases in ${Date.now() - started} ms`);
  });

  it('the first cookie of our name counts (names compared case-insensitively, as nginx does); the others are kept', () => {
    const started = Date.now();
    const cookie = fc.oneof(
      validSid().map((sid) => cookieValue(sid, SECRET, SALT)),
      validSid().chain((sid) => mutatedCookie(cookieValue(sid, SECRET, SALT)).map((m) => m.value.replace(/;/g, ''))),
      fc.string({ unit: 'grapheme-ascii', maxLength: 40 }).map((s) => s.replace(/;/g, '')),
    );
    const entry = fc.tuple(fc.constantFrom(...NAMES), cookie);
    fc.assert(
      fc.property(fc.array(entry, { minLength: 1, maxLength: 10 }), fc.constantFrom('; ', ';', ' ; '), (entries, sep) => {
        const h = entries.map(([n, v]) => `${n}=${v}`).join(sep);
        const index = entries.findIndex(([n]) => n.trim().toLowerCase() === 'session');
        // The value is judged exactly as sent, up to the next ';' (as nginx does): whitespace included.
        const raw = index < 0 ? undefined : entries[index][1] + (index < entries.length - 1 ? sep.slice(0, sep.indexOf(';')) : '');
        const expected = raw === undefined ? null : sessionIdOf(raw, SECRET, SALT);
        const { header: rebuilt, verified } = translate(h);
        if ((verified?.sid ?? null) !== expected) return false;
        // Every cookie of another name reaches express-session untouched, in order.
        const others = entries.filter(([n]) => n.trim().toLowerCase() !== 'session').map(([n, v]) => `${n}=${v}`.trim());
        const kept = (rebuilt ?? '').split(';').map((p) => p.trim()).filter((p) => p.length > 0 && !p.startsWith('session=s%3A'));
        return JSON.stringify(kept) === JSON.stringify(others.filter((o) => o.length > 0));
      }),
      { numRuns: 10_000, seed: SEED },
    );
    total += 10_000;
    console.log(`middleware property "first cookie counts": 10000 cases in ${Date.now() - started} ms`);
  });
});

describe('a Nest app with the module, over raw HTTP: arbitrary Cookie headers never cause a 5xx', () => {
  let redis: RedisServer;
  let app: INestApplication;
  let port: number;
  let valid: string;

  beforeAll(async () => {
    redis = await RedisServer.start();
    app = await createTestApp({ secret: SECRET, salt: SALT, redis: redis.url, ttlSeconds: 600 });
    await app.listen(0, '127.0.0.1');
    port = (app.getHttpServer().address() as AddressInfo).port;
    const res = await request(app.getHttpServer()).post('/login').send({ username: 'joe', groups: ['one'] }).expect(204);
    const header = ([] as string[]).concat(res.headers['set-cookie'] ?? []).find((c) => c.startsWith('session='))!;
    valid = header.slice('session='.length, header.indexOf(';'));
  }, 30_000);
  afterAll(async () => {
    await app?.close();
    await redis?.dispose();
  });

  it('3000 hostile, mutated and oversized Cookie headers: 200 only on the public route, never 5xx', async () => {
    const bytes = (s: string) => Buffer.from(s, 'latin1');
    const cookieHeader = fc.oneof(
      { weight: 4, arbitrary: mutatedCookie(valid, { bytesOnly: true }).map((m) => `session=${m.value}`) },
      { weight: 2, arbitrary: fc.array(headerByte(), { maxLength: 400 }).map((b) => b.join('')) },
      { weight: 2, arbitrary: fc.string({ unit: 'grapheme', maxLength: 60 }).map((s) => `session=${Buffer.from(s, 'utf8').toString('latin1')}`) },
      { weight: 1, arbitrary: fc.integer({ min: 2, max: 60 }).map((n) => `session=garbage${'; session='.repeat(1)}${Array(n).fill(valid).join('; session=')}`) },
      { weight: 1, arbitrary: fc.integer({ min: 1_000, max: 40_000 }).map((n) => `session=${'a'.repeat(n)}`) },
      { weight: 1, arbitrary: fc.constantFrom('', ';', ';;;;', ' ; ; ', '=', '=;=;', 'session', 'session=', 'SESSION=', ',,,', '\t') },
    );
    const cases = fc.sample(fc.tuple(cookieHeader, fc.constantFrom('/me', '/groups/one/report', '/public')), { numRuns: 3000, seed: SEED });
    const requests = cases.map(([c, path]) => requestBytes(path, { headers: { Cookie: bytes(c) } }));
    // Controls: the untouched cookie is a logged-in member.
    requests.push(requestBytes('/groups/one/report', { headers: { Cookie: `session=${valid}` } }));
    const { responses, ms, connections } = await runPool(port, requests, { concurrency: 16, deadlineMs: 60_000 });
    const control = responses.pop()!;
    expect(control.status).toBe(200);
    console.log(`Nest app raw fuzz: ${cases.length} requests in ${ms} ms over ${connections} connections: ${JSON.stringify(statusCounts(responses))}`);
    const bad = responses
      .map((r, i) => ({ status: r.status, path: cases[i][1], cookie: JSON.stringify(cases[i][0].slice(0, 120)), error: r.error }))
      .filter((r) => r.status >= 500 || r.status <= 0 || (r.status === 200 && r.path !== '/public'));
    expect(bad).toEqual([]);
    for (const r of responses) expect([200, 400, 401, 403, 431]).toContain(r.status);
  }, 90_000);
});

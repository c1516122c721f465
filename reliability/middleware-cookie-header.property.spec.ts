/**
 * The session the library's hooks take from a Cookie header (on either
 * adapter: `requestSessionCookie`, section 10's reading then the signature),
 * under arbitrary input: property-based on that function, then over raw
 * HTTP against a tiny Nest app on a real redis-server. Which cookie value
 * counts (the Cookie header's grammar, PROTOCOL.md section 10) and which is a
 * session come from the protocol test kit, not from the library.
 */
import type { INestApplication } from '@nestjs/common';
import type { AddressInfo } from 'node:net';
import fc from 'fast-check';
import request from 'supertest';
import { SessionCookieSigner } from '../libs/shared-session/src';
import { requestSessionCookie } from '../libs/shared-session/src/request-session-cookie';
import { forEachAdapter } from '../libs/shared-session/test/support';
import { createTestApp } from '../libs/shared-session/test/test-app';
import { cookieOutcome, cookieValue, sessionIdOf } from '../protocol/testkit';
import { RedisServer } from '../stack/redis-server';
import { cookieHeaderLines, headerByte, hostileString, mutatedCookie, validSid } from './support/cookie-arbitraries';
import { HttpConnection, requestBytes, runPool, statusCounts } from '../stack/http-client';

const SEED = process.env.FC_SEED ? Number(process.env.FC_SEED) : Date.now() ^ (Math.random() * 0x7fffffff);
const SECRET = 'middleware-secret';
const SALT = 'app_session_salt';
const signer = new SessionCookieSigner({ secret: SECRET, salt: SALT });

/** What either adapter's hooks take from a Cookie header: the session our cookie carries, found by section 10 and verified. */
const quiet = { warn() {} };
const sessionOf = (cookie: string | string[] | undefined) =>
  requestSessionCookie({ headers: { cookie } as never }, 'session', signer, quiet)?.sid ?? null;

const NAMES = [
  'session',
  'SESSION',
  'Session',
  ' session',
  'session ',
  '\tsession',
  'sessio',
  'sessionx',
  'xsession',
  'other',
  'a',
  '',
  's%65ssion',
];

const validSidSample = fc.sample(validSid(), { numRuns: 1, seed: SEED })[0];

/** The session id the protocol finds in these Cookie lines (section 10, then sections 1 and 2), or null. */
function expectedSid(lines: string[]): string | null {
  const outcome = cookieOutcome(lines, 'session');
  return 'value' in outcome ? sessionIdOf(outcome.value, SECRET, SALT) : null;
}

/** Headers of every shape section 10 speaks of, around valid and damaged cookies, their lines joined as Node joins them. */
const grammarHeader = () =>
  cookieHeaderLines(
    'session',
    validSid().chain((sid) =>
      fc.oneof(
        fc.constant(cookieValue(sid, SECRET, SALT)),
        mutatedCookie(cookieValue(sid, SECRET, SALT), { bytesOnly: true }).map((m) => m.value),
      ),
    ),
  ).map((lines) => lines.join('; '));

describe("the hooks' reading of the Cookie header, property-based", () => {
  let total = 0;
  afterAll(() => console.log(`cookie-header reading properties: ${total} cases (seed ${SEED})`));

  it('never throws, and finds a session only where the grammar finds our cookie with a valid signature', () => {
    const started = Date.now();
    const header = fc.oneof(
      hostileString(),
      fc
        .array(fc.tuple(fc.constantFrom(...NAMES), hostileString(), fc.constantFrom(';', '; ', ' ;', ';;', ',', ' ', '\t', ';\t')), {
          maxLength: 12,
        })
        .map((parts) => parts.map(([n, v, sep]) => `${n}=${v}${sep}`).join('')),
      grammarHeader(),
    );
    fc.assert(
      fc.property(header, (h) => sessionOf(h) === expectedSid([h])),
      { numRuns: 15_000, seed: SEED },
    );
    total += 15_000;
    console.log(`property "arbitrary Cookie headers": 15000 cases in ${Date.now() - started} ms`);
  });

  it("the cookie the protocol's grammar finds counts (names byte for byte, SP/HTAB trimmed), whatever the other cookies", () => {
    const started = Date.now();
    const cookie = fc.oneof(
      validSid().map((sid) => cookieValue(sid, SECRET, SALT)),
      validSid().chain((sid) => mutatedCookie(cookieValue(sid, SECRET, SALT)).map((m) => m.value.replace(/;/g, ''))),
      fc.string({ unit: 'grapheme-ascii', maxLength: 40 }).map((s) => s.replace(/;/g, '')),
    );
    const entry = fc.tuple(fc.constantFrom(...NAMES), cookie);
    fc.assert(
      fc.property(fc.array(entry, { minLength: 1, maxLength: 10 }), fc.constantFrom('; ', ';', ' ; ', ';\t'), (entries, sep) => {
        const h = entries.map(([n, v]) => `${n}=${v}`).join(sep);
        return sessionOf(h) === expectedSid([h]);
      }),
      { numRuns: 10_000, seed: SEED },
    );
    total += 10_000;
    console.log(`property "the grammar's cookie counts": 10000 cases in ${Date.now() - started} ms`);
  });

  it('every edge case of the grammar (commas, tabs, quotes, duplicates, several lines as Node joins them): the session the grammar finds, or none', () => {
    const started = Date.now();
    const valid = cookieValue(validSidSample, SECRET, SALT);
    const values = fc.oneof(
      { weight: 4, arbitrary: fc.constant(valid) },
      { weight: 1, arbitrary: mutatedCookie(valid, { bytesOnly: true }).map((m) => m.value) },
    );
    let sessions = 0;
    fc.assert(
      fc.property(cookieHeaderLines('session', values), (lines) => {
        const expected = expectedSid(lines);
        if (expected) sessions++;
        return sessionOf(lines.join('; ')) === expected && sessionOf([...lines]) === expected;
      }),
      { numRuns: 10_000, seed: SEED },
    );
    total += 10_000;
    console.log(`property "the grammar's edge cases": 10000 cases (${sessions} with a session) in ${Date.now() - started} ms`);
  });
});

forEachAdapter((adapter) =>
  describe('a Nest app with the module, over raw HTTP: arbitrary Cookie headers never cause a 5xx', () => {
    let redis: RedisServer;
    let app: INestApplication;
    let port: number;
    let valid: string;

    beforeAll(async () => {
      redis = await RedisServer.start();
      app = await createTestApp({ secret: SECRET, salt: SALT, redis: redis.url, ttlSeconds: 600 }, false, adapter);
      await app.listen(0, '127.0.0.1');
      port = (app.getHttpServer().address() as AddressInfo).port;
      const res = await request(app.getHttpServer())
        .post('/login')
        .send({ username: 'joe', groups: ['one'] })
        .expect(204);
      const header = ([] as string[]).concat(res.headers['set-cookie'] ?? []).find((c) => c.startsWith('session='))!;
      valid = header.slice('session='.length, header.indexOf(';'));
    }, 30_000);
    afterAll(async () => {
      await app?.close();
      await redis?.dispose();
    });

    it('3000 hostile, mutated, oversized and grammar-shaped Cookie headers: a guarded route answers 200 exactly when the grammar finds the cookie, never 5xx', async () => {
      const bytes = (s: string) => Buffer.from(s, 'latin1');
      const one = (arb: fc.Arbitrary<string>) => arb.map((h) => [h]);
      const cookieHeader = fc.oneof(
        { weight: 4, arbitrary: one(mutatedCookie(valid, { bytesOnly: true }).map((m) => `session=${m.value}`)) },
        { weight: 2, arbitrary: one(fc.array(headerByte(), { maxLength: 400 }).map((b) => b.join(''))) },
        {
          weight: 2,
          arbitrary: one(fc.string({ unit: 'grapheme', maxLength: 60 }).map((s) => `session=${Buffer.from(s, 'utf8').toString('latin1')}`)),
        },
        {
          weight: 1,
          arbitrary: one(
            fc
              .integer({ min: 2, max: 60 })
              .map((n) => `session=garbage${'; session='.repeat(1)}${Array(n).fill(valid).join('; session=')}`),
          ),
        },
        { weight: 1, arbitrary: one(fc.integer({ min: 1_000, max: 40_000 }).map((n) => `session=${'a'.repeat(n)}`)) },
        {
          weight: 1,
          arbitrary: one(fc.constantFrom('', ';', ';;;;', ' ; ; ', '=', '=;=;', 'session', 'session=', 'SESSION=', ',,,', '\t')),
        },
        // One to three Cookie lines with every edge case of section 10, around the valid cookie and damaged ones.
        {
          weight: 4,
          arbitrary: cookieHeaderLines(
            'session',
            fc.oneof(
              { weight: 3, arbitrary: fc.constant(valid) },
              { weight: 1, arbitrary: mutatedCookie(valid, { bytesOnly: true }).map((m) => m.value) },
            ),
          ),
        },
      );
      const cases = fc.sample(fc.tuple(cookieHeader, fc.constantFrom('/me', '/groups/one/report', '/public')), {
        numRuns: 3000,
        seed: SEED,
      });
      const requests = cases.map(([lines, path]) =>
        requestBytes(path, { headers: lines.map((l) => ['Cookie', bytes(l)] as [string, Buffer]) }),
      );
      // Controls: the untouched cookie is a logged-in member.
      requests.push(requestBytes('/groups/one/report', { headers: { Cookie: `session=${valid}` } }));
      const { responses, ms, connections } = await runPool(port, requests, { concurrency: 16, deadlineMs: 60_000 });
      // A request sent on a connection the server was closing has no answer (status 0): Fastify's own answer to a
      // request Node's parser refuses (400, 431) says no `Connection: close` and closes the socket after it, so the
      // pool may send its next request there. Sent again on a connection of its own, as a browser retries a GET.
      const lost = responses.flatMap((r, i) => (r.status === 0 ? [i] : []));
      for (const i of lost) {
        const retry = new HttpConnection(port);
        responses[i] = await retry.request(requests[i]);
        retry.close();
      }
      const control = responses.pop()!;
      expect(control.status).toBe(200);
      const loggedIn = cases.map(([lines]) => expectedSid(lines) !== null);
      console.log(
        `Nest app (${adapter}) raw fuzz: ${cases.length} requests in ${ms} ms over ${connections} connections (${lost.length} sent again): ${JSON.stringify(statusCounts(responses))}; ` +
          `${loggedIn.filter(Boolean).length} carry the session by the grammar`,
      );
      const bad = responses
        .map((r, i) => ({
          status: r.status,
          path: cases[i][1],
          loggedIn: loggedIn[i],
          cookie: JSON.stringify(cases[i][0].map((l) => l.slice(0, 120))),
          error: r.error,
        }))
        .filter((r) => r.status >= 500 || r.status <= 0 || (r.path === '/public' ? false : (r.status === 200) !== r.loggedIn));
      expect(bad).toEqual([]);
      for (const r of responses) expect([200, 400, 401, 403, 431]).toContain(r.status);
    }, 90_000);
  }),
);

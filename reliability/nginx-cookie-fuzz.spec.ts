/**
 * Fuzzing the cookie at nginx (resty.shared_session) and at the app behind
 * it: random and mutated cookies, and the member's own cookie in Cookie
 * headers that PROTOCOL.md section 10 refuses, sent byte for byte over raw
 * keep-alive sockets, against a group resource of the demo stack. Only 400,
 * 401 or 403; never 200, never 5xx; no nginx worker crash.
 */
import fc from 'fast-check';
import Redis from 'ioredis';
import { cookieOutcome, cookieValue, sessionIdOf } from '../protocol/testkit';
import type { DemoStack } from '../stack/demo-stack';
import { cookieHeaderLines, headerByte, mutatedCookie, validSid } from './support/cookie-arbitraries';
import { mustLogin } from '../stack/demo-login';
import { HttpResponse, requestBytes, runPool, statusCounts } from '../stack/http-client';
import { nginxWorkers } from './support/process-stats';
import { crashLines, SALT, SECRET, startDemoStack } from './support/stack';

const SEED = process.env.FC_SEED ? Number(process.env.FC_SEED) : Date.now() ^ (Math.random() * 0x7fffffff);
const CASES = 12_000;
const APP_SAMPLE = 2_000;
const PATH = '/app/api/v1/group/one/cacheable/fuzz';

interface FuzzCase {
  kind: string;
  /** The Cookie header lines (one or two), as latin1 strings: every character is one byte. */
  headers: string[];
}

describe('cookie fuzzing against nginx and the app', () => {
  let stack: DemoStack;
  let admin: Redis;
  let joe: string; // member of "one"
  let sam: string; // not a member of "one"

  beforeAll(async () => {
    stack = await startDemoStack();
    admin = new Redis(stack.redis.url);
    joe = await mustLogin(stack.nginx.port, 'joe@example.com', 'itsjoe');
    sam = await mustLogin(stack.nginx.port, 'sam@example.com', 'itssam');
  }, 60_000);
  afterAll(async () => {
    admin?.disconnect();
    await stack?.stop();
  });

  /** Whether the protocol's grammar finds the member's cookie in these lines. */
  const isMember = (lines: string[]) => {
    const outcome = cookieOutcome(lines, 'session');
    return 'value' in outcome && outcome.value === joe;
  };

  /** The member's intact cookie in the shapes section 10 refuses, given another value. */
  const refusedShapes: { kind: string; lines: (other: string) => string[] }[] = [
    { kind: 'behind-comma', lines: () => [`x=y,session=${joe}`] },
    { kind: 'behind-comma-and-again', lines: () => [`x=y,session=${joe}; session=${joe}`] },
    { kind: 'two-values', lines: (other) => [`session=${joe}; session=${other}`] },
    { kind: 'two-values-reversed', lines: (other) => [`session=${other}; a=1; session=${joe}`] },
    { kind: 'two-values-two-lines', lines: (other) => [`session=${joe}`, `session=${other}`] },
    { kind: 'empty-and-value', lines: () => [`session=; session=${joe}`] },
    { kind: 'quoted', lines: () => [`session="${joe}"`] },
    { kind: 'other-case', lines: () => [`Session=${joe}`] },
    { kind: 'control-byte', lines: () => [`session=${joe}; a=\u0001`] },
    { kind: 'del-byte', lines: () => [`session=${joe}\u007f`] },
    { kind: 'over-the-cap', lines: () => [`session=${joe}`, `pad=${'p'.repeat(7_990)}`] },
  ];

  /** Cookie headers that must never be let in: each damages, replaces or hides the member's cookie. */
  function fuzzCases(): FuzzCase[] {
    const one = (kind: string, arb: fc.Arbitrary<string>) => arb.map((h): FuzzCase => ({ kind, headers: [h] }));
    const damaged = mutatedCookie(joe, { bytesOnly: true }).map((m) => m.value);
    const plainDamaged = damaged.filter((v) => !/[;,\s]/.test(v)); // one cookie value, no separators in it
    const arb = fc.oneof(
      {
        weight: 30,
        arbitrary: mutatedCookie(joe, { bytesOnly: true }).map((m): FuzzCase => ({
          kind: `member-${m.kind}`,
          headers: [`session=${m.value}`],
        })),
      },
      {
        weight: 4,
        arbitrary: mutatedCookie(sam, { bytesOnly: true }).map((m): FuzzCase => ({
          kind: `nonmember-${m.kind}`,
          headers: [`session=${m.value}`],
        })),
      },
      { weight: 2, arbitrary: fc.constant<FuzzCase>({ kind: 'nonmember-valid', headers: [`session=${sam}`] }) },
      {
        weight: 3,
        arbitrary: one(
          'unknown-sid',
          validSid().map((sid) => `session=${cookieValue(sid, SECRET, SALT)}`),
        ),
      },
      {
        weight: 3,
        arbitrary: one(
          'foreign-secret',
          fc.constantFrom(sessionIdOf(joe, SECRET, SALT)!).map((sid) => `session=${cookieValue(sid, 'not-the-secret', SALT)}`),
        ),
      },
      {
        weight: 6,
        arbitrary: one(
          'random-bytes',
          fc.array(headerByte(), { maxLength: 300 }).map((b) => b.join('')),
        ),
      },
      {
        weight: 4,
        arbitrary: one(
          'random-value',
          fc.array(headerByte(), { maxLength: 300 }).map((b) => `session=${b.join('')}`),
        ),
      },
      {
        weight: 4,
        arbitrary: one(
          'unicode',
          fc.string({ unit: 'grapheme', maxLength: 80 }).map((s) => `session=${Buffer.from(s, 'utf8').toString('latin1')}`),
        ),
      },
      {
        weight: 4,
        arbitrary: one(
          'non-utf8',
          fc
            .tuple(fc.integer({ min: 0, max: joe.length }), fc.array(fc.integer({ min: 0x80, max: 0xff }), { minLength: 1, maxLength: 12 }))
            .map(([i, b]) => `session=${joe.slice(0, i)}${String.fromCharCode(...b)}${joe.slice(i)}`),
        ),
      },
      {
        weight: 3,
        arbitrary: one(
          'huge',
          fc.integer({ min: 257, max: 20_000 }).map((n) => `session=${(joe + joe).repeat(Math.ceil(n / joe.length)).slice(0, n)}`),
        ),
      },
      {
        weight: 4,
        arbitrary: one(
          'many-session',
          fc
            .tuple(plainDamaged, fc.integer({ min: 1, max: 60 }), fc.constantFrom('; ', ';', ' ; '))
            .map(([first, n, sep]) => [`session=${first}`, ...Array(n).fill(`session=${joe}`)].join(sep)),
        ),
      },
      {
        weight: 3,
        arbitrary: one(
          'many-cookies',
          fc
            .tuple(
              fc.array(fc.tuple(fc.stringMatching(/^[a-z]{1,8}$/), fc.stringMatching(/^[A-Za-z0-9]{0,20}$/)), { maxLength: 100 }),
              plainDamaged,
            )
            .map(([others, value]) =>
              [...others.filter(([n]) => n !== 'session').map(([n, v]) => `${n}=${v}`), `session=${value}`].join('; '),
            ),
        ),
      },
      {
        weight: 2,
        arbitrary: one(
          'name-variant',
          fc.tuple(fc.constantFrom('SESSION', 'Session', 'session ', ' session', 'sEsSiOn'), plainDamaged).map(([n, v]) => `${n}=${v}`),
        ),
      },
      {
        weight: 2,
        arbitrary: fc
          .tuple(plainDamaged)
          .map(([v]): FuzzCase => ({ kind: 'two-header-lines', headers: [`session=${v}`, `session=${joe}`] })),
      },
      {
        weight: 2,
        arbitrary: one('empty', fc.constantFrom('', ' ', 'session', 'session=', 'session= ', 'session=;', 'session=""', '=', 'session==')),
      },
      {
        weight: 2,
        arbitrary: one(
          'separators',
          fc.array(fc.constantFrom(';', ',', ' ', '=', '\t', '.'), { minLength: 1, maxLength: 50 }).map((s) => s.join('')),
        ),
      },
      {
        weight: 2,
        arbitrary: one(
          'separator-between',
          fc.tuple(fc.constantFrom(',', ', ', ' ', '\t', ';;', '&', '|'), plainDamaged).map(([sep, v]) => `a=1${sep}session=${v}${sep}b=2`),
        ),
      },
      // The member's intact cookie in a header section 10 refuses: behind a comma, beside another value of the name, quoted, with a control byte, over the cap.
      {
        weight: 4,
        arbitrary: fc
          .tuple(fc.constantFrom(...refusedShapes), damaged)
          .map(([shape, other]): FuzzCase => ({ kind: `refused-${shape.kind}`, headers: shape.lines(other) })),
      },
      // Headers of every shape section 10 speaks of, of one to three lines, in which the grammar does not find the member's cookie.
      {
        weight: 6,
        arbitrary: cookieHeaderLines('session', fc.oneof(fc.constant(joe), fc.constant(sam), damaged))
          .filter((lines) => !isMember(lines))
          .map((lines): FuzzCase => ({ kind: 'grammar', headers: lines })),
      },
    );
    return fc.sample(arb, { numRuns: CASES, seed: SEED });
  }

  const requestFor = (c: FuzzCase) =>
    requestBytes(PATH, { headers: c.headers.map((h) => ['Cookie', Buffer.from(h, 'latin1')] as [string, Buffer]) });
  const show = (c: FuzzCase, r: HttpResponse) =>
    `${r.status} ${c.kind} ${JSON.stringify(c.headers.map((h) => h.slice(0, 100)))} ${r.error ?? ''}`;

  it(`${CASES} random and mutated cookies: nginx answers only 400, 401 or 403, and no worker crashes; the app only 4xx for a sample`, async () => {
    const cases = fuzzCases();
    // The test itself: by the protocol, none of these headers carries the member's session.
    expect(cases.filter((c) => isMember(c.headers)).map((c) => c.kind)).toEqual([]);
    const kinds: Record<string, number> = {};
    for (const c of cases) {
      const kind = c.kind.replace(/^(member|nonmember)-(?!valid).*/, '$1-mutated');
      kinds[kind] = (kinds[kind] ?? 0) + 1;
    }
    const workersBefore = nginxWorkers(stack.nginx.pid!);
    const keysBefore = await admin.dbsize();

    // Controls: the member's own cookie is let in, so the test can see a 200.
    const controls = await runPool(stack.nginx.port, [requestFor({ kind: 'control', headers: [`session=${joe}`] })]);
    expect(controls.responses[0].status).toBe(200);

    const atNginx = await runPool(stack.nginx.port, cases.map(requestFor), { concurrency: 16, deadlineMs: 90_000 });
    const counts = statusCounts(atNginx.responses);
    console.log(
      `nginx fuzz (seed ${SEED}): ${cases.length} cookies in ${atNginx.ms} ms (${Math.round((cases.length * 1000) / atNginx.ms)} req/s, ` +
        `${atNginx.connections} connections, 16 in flight): ${JSON.stringify(counts)}; by kind: ${JSON.stringify(kinds)}`,
    );
    const wrong = atNginx.responses.map((r, i) => ({ r, c: cases[i] })).filter(({ r }) => ![400, 401, 403].includes(r.status));
    expect(wrong.slice(0, 20).map(({ r, c }) => show(c, r))).toEqual([]);
    // The cookies that reach resty.shared_session with a well-formed value are refused there (403), not by the HTTP parser.
    expect(counts['403']).toBeGreaterThan(cases.length / 2);

    const log = stack.nginx.errorLog();
    expect(crashLines(log)).toEqual([]);
    expect(nginxWorkers(stack.nginx.pid!)).toEqual(workersBefore);
    console.log(
      `nginx error log after the fuzz: ${log.split('\n').length} lines, ${(log.match(/\[(alert|crit|emerg)\]/g) ?? []).length} alert/crit/emerg, worker pids ${workersBefore.join(',')} unchanged`,
    );

    // The same cookies straight at the app: a sample.
    const sample = cases.filter((_c, i) => i % Math.floor(cases.length / APP_SAMPLE) === 0).slice(0, APP_SAMPLE);
    const atApp = await runPool(stack.appPort, sample.map(requestFor), { concurrency: 16, deadlineMs: 60_000 });
    console.log(
      `app fuzz: ${sample.length} cookies in ${atApp.ms} ms (${atApp.connections} connections): ${JSON.stringify(statusCounts(atApp.responses))}`,
    );
    const wrongAtApp = atApp.responses.map((r, i) => ({ r, c: sample[i] })).filter(({ r }) => ![400, 401, 403, 431].includes(r.status));
    expect(wrongAtApp.slice(0, 20).map(({ r, c }) => show(c, r))).toEqual([]);
    expect(stack.appLog).not.toMatch(/ExceptionsHandler|Unhandled/);

    // Neither nginx nor the app wrote anything to Redis for these requests.
    expect(await admin.dbsize()).toBe(keysBefore);
    // And both still serve the member.
    const after = await runPool(stack.nginx.port, [requestFor({ kind: 'control', headers: [`session=${joe}`] })]);
    expect(after.responses[0].status).toBe(200);
  }, 150_000);
});

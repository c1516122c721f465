/**
 * Property-based tests (fast-check) of SessionCookieSigner, the one TypeScript
 * implementation of the cookie format (PROTOCOL.md sections 1 and 2). What it
 * should answer comes from the protocol test kit's reference signer.
 * Over 100 000 generated cases in all; the seed of each property is printed
 * so that a failure can be replayed (FC_SEED=<seed> npx jest reliability/session-cookie).
 */
import fc from 'fast-check';
import { SessionCookieSigner } from '../libs/shared-session/src';
import { cookieValue, sessionIdOf, signature } from '../protocol/testkit';
import { hostileString, mutatedCookie, SID_ALPHABET, validSid } from './support/cookie-arbitraries';

const SEED = process.env.FC_SEED ? Number(process.env.FC_SEED) : Date.now() ^ (Math.random() * 0x7fffffff);
const SECRET = 'reliability-secret';
const SALT = 'app_session_salt';
const signer = new SessionCookieSigner({ secret: SECRET, salt: SALT });
const runs: Record<string, number> = {};

/** fc.assert with a fixed seed and a count kept for the summary line. */
function check<T>(name: string, arb: fc.Arbitrary<T>, numRuns: number, predicate: (value: T) => boolean | void): void {
  const started = Date.now();
  fc.assert(fc.property(arb, predicate), { numRuns, seed: SEED });
  runs[name] = numRuns;
  console.log(`signer property "${name}": ${numRuns} cases in ${Date.now() - started} ms (seed ${SEED})`);
}

/** The only values unsign may accept are the ones the protocol's signer makes (and it must accept those). */
function acceptsOnlyCanonical(s: SessionCookieSigner, value: unknown): boolean {
  return s.unsign(value) === sessionIdOf(value, SECRET, SALT);
}

describe('SessionCookieSigner, property-based', () => {
  afterAll(() => {
    const total = Object.values(runs).reduce((a, b) => a + b, 0);
    console.log(`signer properties: ${total} cases in total (seed ${SEED})`);
  });

  it('unsign and verify never throw, for any string (unicode, binary, huge), and accept only what sign produced', () => {
    // A throw fails the property just as a false does.
    check('unsign never throws on hostile strings', hostileString(), 25_000, (value) => {
      const verified = signer.verify(value);
      return acceptsOnlyCanonical(signer, value) && (verified === null || verified.sid === signer.unsign(value));
    });
  });

  it('unsign never throws for values that are not strings', () => {
    check(
      'unsign never throws on anything',
      fc.anything({ withBigInt: true, withBoxedValues: true, withMap: true, withSet: true, withTypedArray: true, withNullPrototype: true }),
      5_000,
      (value) => {
        return signer.unsign(value) === null && signer.verify(value) === null;
      },
    );
  });

  it('never accepts a mutation of a valid cookie (flipped, truncated, extended, other separators, case)', () => {
    const kinds: Record<string, number> = {};
    check(
      'mutations of valid cookies are refused',
      validSid().chain((sid) => mutatedCookie(cookieValue(sid, SECRET, SALT)).map((m) => ({ sid, ...m }))),
      30_000,
      ({ kind, value }) => {
        kinds[kind] = (kinds[kind] ?? 0) + 1;
        return signer.unsign(value) === null && signer.verify(value) === null;
      },
    );
    console.log(`signer mutations by kind: ${JSON.stringify(kinds)}`);
    // Every kind of mutation was exercised.
    expect(Object.keys(kinds).length).toBeGreaterThanOrEqual(10);
  });

  it('never accepts a well-formed value with a signature it did not make', () => {
    const sig = fc.string({ unit: fc.constantFrom(...SID_ALPHABET), minLength: 27, maxLength: 27 });
    check('random signatures are refused', fc.tuple(validSid(), sig), 10_000, ([sid, s]) => {
      return s === signature(sid, SECRET, SALT) || signer.unsign(`${sid}.${s}`) === null;
    });
  });

  it('round-trips every valid session id; a fallback secret is accepted and reported', () => {
    const rotating = new SessionCookieSigner({ secret: SECRET, secretFallbacks: ['old-secret'], salt: SALT });
    const COOKIE = /^[A-Za-z0-9_-]{16,128}\.[A-Za-z0-9_-]{27}$/;
    check('sign/unsign round-trip', validSid(), 15_000, (sid) => {
      // Plain comparisons (not expect) keep each case fast.
      const cookie = signer.sign(sid);
      const fromFallback = rotating.verify(cookieValue(sid, 'old-secret', SALT));
      const current = rotating.verify(cookie);
      const plain = signer.verify(cookie);
      return (
        COOKIE.test(cookie) &&
        cookie.startsWith(`${sid}.`) &&
        cookie === cookieValue(sid, SECRET, SALT) &&
        signer.unsign(cookie) === sid &&
        plain?.sid === sid &&
        plain.signedWithFallback === false &&
        current?.sid === sid &&
        current.signedWithFallback === false &&
        fromFallback?.sid === sid &&
        fromFallback.signedWithFallback === true &&
        rotating.sign(sid) === cookie
      );
    });
  });

  it('refuses a cookie signed with a secret (or salt) it does not accept', () => {
    const secret = fc.string({ minLength: 1, maxLength: 40 });
    check(
      'other secrets are refused',
      fc.record({
        sid: validSid(),
        a: secret,
        b: secret,
        fallbacks: fc.array(secret, { maxLength: 3 }),
        salt: fc.string({ maxLength: 20 }),
        otherSalt: fc.boolean(),
      }),
      15_000,
      ({ sid, a, b, fallbacks, salt, otherSalt }) => {
        fc.pre(a !== b && !fallbacks.includes(a));
        const verifier = new SessionCookieSigner({ secret: b, secretFallbacks: fallbacks, salt });
        // The same secret under another salt is another key too.
        return (
          verifier.unsign(cookieValue(sid, a, otherSalt ? `${salt}x` : salt)) === null &&
          verifier.unsign(cookieValue(sid, b, `${salt}x`)) === null
        );
      },
    );
  });
});

import { parse as parseCookieHeader } from 'cookie';
import { unsign as expressSessionUnsign } from 'cookie-signature';
import { Cookie as ExpressSessionCookie } from 'express-session';
import { cookieValue, newSessionId } from '../../../protocol/testkit';
import {
  ExpressSessionCookieValues,
  serializeSessionCookie,
  setCookieLines,
  toExpressSessionCookieHeader,
  toSharedSessionSetCookie,
} from './session-cookie-bridge';
import { SessionCookieSigner } from './session-cookie-signer';

const SECRET = 'bridge-secret';
const OLD_SECRET = 'bridge-secret-2025';
const SALT = 'app_session_salt';
const KEY = 'the-per-process-key';
const signer = new SessionCookieSigner({ secret: SECRET, secretFallbacks: [OLD_SECRET], salt: SALT });
const SID = newSessionId();
/** Our cookie as the protocol signs it (the test kit's reference signer). */
const VALID = cookieValue(SID, SECRET, SALT);

/** express-session's own cookie writer (Cookie#serialize, which its types leave out): what the one writer must match. */
const ExpressSessionCookieWriter = ExpressSessionCookie as unknown as new (options: object) => {
  serialize(name: string, value: string): string;
};

const values = new ExpressSessionCookieValues(KEY);
const translate = (header: string | undefined, name = 'session') => toExpressSessionCookieHeader(header, name, signer, values);

/** The session id express-session finds under `name` in a translated header: false when none or badly signed. */
function seenByExpressSession(header: string | undefined, name = 'session'): string | false | undefined {
  const value = header === undefined ? undefined : parseCookieHeader(header)[name];
  if (value === undefined) return undefined;
  return value.startsWith('s:') ? expressSessionUnsign(value.slice(2), KEY) : false;
}

describe('ExpressSessionCookieValues', () => {
  it("gives express-session's own signed value, the same every time, for a bounded number of ids", () => {
    const few = new ExpressSessionCookieValues(KEY, 2);
    const sids = [newSessionId(), newSessionId(), newSessionId()];
    for (const sid of [...sids, ...sids]) {
      const value = few.valueFor(sid);
      expect(expressSessionUnsign(decodeURIComponent(value).slice(2), KEY)).toBe(sid);
      expect(few.valueFor(sid)).toBe(value);
    }
    expect((few as unknown as { values: Map<string, string> }).values.size).toBe(2);
  });
});

describe('toExpressSessionCookieHeader', () => {
  it('hands a valid cookie to express-session in its own format, signed with the per-process key', () => {
    const { header, verified } = translate(`session=${VALID}`);
    expect(verified).toEqual({ sid: SID, signedWithFallback: false });
    expect(header).toMatch(/^session=s%3A/);
    expect(seenByExpressSession(header)).toBe(SID);
  });

  it('says when the cookie was signed with a fallback secret', () => {
    expect(translate(`session=${cookieValue(SID, OLD_SECRET, SALT)}`).verified).toEqual({ sid: SID, signedWithFallback: true });
  });

  it('keeps every other cookie, in order, and puts ours last', () => {
    const { header } = translate(`a=1; session=${VALID}; b=2;c=3`);
    expect(header!.split(';').map((p) => p.trim().split('=')[0])).toEqual(['a', 'b', 'c', 'session']);
    expect(header).toMatch(/^a=1; b=2;c=3; session=s%3A/);
  });

  it('removes a cookie of our name whose signature is not valid, so express-session sees none', () => {
    for (const bad of [
      '',
      'garbage',
      `${SID}.`,
      `${SID}.${'A'.repeat(27)}`,
      `s:${VALID}`,
      `"${VALID}"`,
      cookieValue(SID, 'other', SALT),
      'x'.repeat(5000),
    ]) {
      const { header, verified } = translate(`other=1; session=${bad}`);
      expect(verified).toBeNull();
      expect(header).toBe('other=1');
      expect(seenByExpressSession(header)).toBeUndefined();
    }
    expect(translate(`session=garbage`)).toEqual({ header: undefined, verified: null });
  });

  it("finds our cookie by the protocol's grammar: one value, or none when the header is refused", () => {
    const { header, verified } = translate(`session=${VALID}; x=1; session=${VALID}`);
    expect(verified?.sid).toBe(SID);
    expect(header).toMatch(/^x=1; session=s%3A/);
    expect(seenByExpressSession(header)).toBe(SID);
    // Refused headers: no session, and express-session sees none of ours.
    for (const refused of [
      `session=garbage; session=${VALID}`,
      `session=${VALID}; session=garbage; x=1`,
      `x=y,session=${VALID}; session=${VALID}`,
      `session=${VALID}; x=\u0001`,
    ]) {
      const out = translate(refused);
      expect(out.verified).toBeNull();
      expect(seenByExpressSession(out.header)).toBeUndefined();
    }
  });

  it('compares names byte for byte, around SP and HTAB, and writes the configured name back', () => {
    expect(translate(`SESSION=${VALID}`)).toEqual({ header: `SESSION=${VALID}`, verified: null });
    expect(translate(`Session=garbage; session=${VALID}`).verified?.sid).toBe(SID);
    for (const name of ['session', ' session', 'session\t', '\tsession ']) {
      const { header, verified } = translate(`${name}=${VALID}`);
      expect(verified?.sid).toBe(SID);
      expect(seenByExpressSession(header)).toBe(SID);
    }
    const custom = translate(`sid=${cookieValue(SID, SECRET, SALT)}; session=${VALID}`, 'sid');
    expect(custom.verified?.sid).toBe(SID);
    expect(custom.header).toMatch(new RegExp(`^session=${VALID}; sid=s%3A`));
  });

  it('judges the value without SP and HTAB at its ends, up to the next ";"', () => {
    expect(translate(`session= ${VALID}`).verified?.sid).toBe(SID);
    expect(translate(`session=${VALID}\t ; x=1`).verified?.sid).toBe(SID);
    expect(translate(`session="${VALID}"`).verified).toBeNull();
    expect(translate(`session=${VALID} x`).verified).toBeNull();
  });

  it('trims only SP and HTAB, as the grammar does: a name behind other whitespace is not ours, at nginx or here', () => {
    // JavaScript's trim() also strips U+00A0 (NBSP), U+FEFF and others: a cookie that is not ours to the grammar
    // (nginx passes over it) must not become ours to express-session's parser, which takes the first of a name.
    for (const lead of ['\u00a0', '\u0085', '\u00a0 ', '\ufeff', '\u2028', '\u3000']) {
      const { header, verified } = translate(`${lead}session=zzz; session=${VALID}`);
      expect(verified?.sid).toBe(SID);
      expect(seenByExpressSession(header)).toBe(SID);
      const alone = translate(`${lead}session=${VALID}`);
      expect(alone.verified).toBeNull();
      expect(seenByExpressSession(alone.header)).toBeUndefined();
    }
    expect(translate(`a=1\u00a0; session=${VALID}`).header).toMatch(/^a=1\u00a0; session=s%3A/);
  });

  it('hands on a header without a cookie of our name as it is, and no header as none', () => {
    for (const header of [undefined, '', 'a=1', ' a=1 ;b ', 'sessionx=1; xsession=2; sessio=3', 'session', `Session=${VALID}`]) {
      expect(translate(header)).toEqual({ header, verified: null });
    }
  });
});

describe('toSharedSessionSetCookie', () => {
  const expressLine = `session=s%3A${encodeURIComponent('whatever.hmac')}; Path=/app; Expires=Wed, 30 Dec 2026 18:00:00 GMT; HttpOnly; Secure; SameSite=Strict`;

  it("gives express-session's cookie our value and keeps every attribute and every other line", () => {
    expect(toSharedSessionSetCookie(['a=1; Path=/', expressLine, 'b=2'], 'session', SID, signer)).toEqual([
      'a=1; Path=/',
      `session=${VALID}; Path=/app; Expires=Wed, 30 Dec 2026 18:00:00 GMT; HttpOnly; Secure; SameSite=Strict`,
      'b=2',
    ]);
    expect(toSharedSessionSetCookie(['session=s%3Aabc'], 'session', SID, signer)).toEqual([`session=${VALID}`]);
  });

  it('returns null, signing nothing, when express-session wrote no cookie of our name', () => {
    const noSigning = {
      sign: () => {
        throw new Error('signed');
      },
    };
    for (const lines of [
      [],
      ['a=1'],
      ['session=; Path=/; Max-Age=0'],
      [`session=${VALID}; Path=/`],
      ['sessionx=s%3Aabc'],
      ['Session=s%3Aabc'],
    ]) {
      expect(toSharedSessionSetCookie(lines, 'session', SID, noSigning)).toBeNull();
    }
  });
});

describe('serializeSessionCookie, the one writer of our cookie', () => {
  const defaults = { path: '/', secure: false, httpOnly: true, sameSite: 'lax' as const };
  const expires = new Date('2026-12-30T18:00:00Z');

  it('writes the configured attributes and the expiry', () => {
    expect(serializeSessionCookie('session', VALID, defaults, { expires })).toBe(
      `session=${VALID}; Path=/; Expires=Wed, 30 Dec 2026 18:00:00 GMT; HttpOnly; SameSite=Lax`,
    );
    expect(
      serializeSessionCookie('sid', VALID, { path: '/app', domain: 'example.com', secure: true, httpOnly: false, sameSite: 'none' }, {}),
    ).toBe(`sid=${VALID}; Domain=example.com; Path=/app; Secure; SameSite=None`);
  });

  it('clears the cookie with Max-Age=0', () => {
    expect(serializeSessionCookie('session', '', defaults, { maxAge: 0, expires: new Date(0) })).toBe(
      'session=; Max-Age=0; Path=/; Expires=Thu, 01 Jan 1970 00:00:00 GMT; HttpOnly; SameSite=Lax',
    );
  });

  it.each([
    ['the defaults', defaults, expires],
    ['a browser-session cookie', defaults, null],
    ['every attribute', { path: '/app', domain: 'example.com', secure: true, httpOnly: false, sameSite: 'strict' as const }, expires],
    ['SameSite true', { ...defaults, sameSite: true }, expires],
    ['SameSite false', { ...defaults, sameSite: false }, expires],
  ])("writes what express-session's own cookie writer wrote, for %s", (_what, attributes, when) => {
    const theirs = new ExpressSessionCookieWriter({ ...attributes, expires: when });
    expect(serializeSessionCookie('session', VALID, attributes, { expires: when ?? undefined })).toBe(theirs.serialize('session', VALID));
  });
});

describe('setCookieLines', () => {
  it('reads a Set-Cookie header in any form Node keeps it', () => {
    expect(setCookieLines(undefined)).toEqual([]);
    expect(setCookieLines('a=1')).toEqual(['a=1']);
    expect(setCookieLines(['a=1', 'b=2'])).toEqual(['a=1', 'b=2']);
    expect(setCookieLines(7)).toEqual(['7']);
  });
});

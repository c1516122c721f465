import { Cookie as ExpressSessionCookie } from 'express-session';
import { cookieValue, newSessionId } from '../../../protocol/testkit';
import { serializeSessionCookie, setCookieLines } from './session-cookie-writer';

/** Our cookie as the protocol signs it (the test kit's reference signer). */
const VALID = cookieValue(newSessionId(), 'writer-secret', 'app_session_salt');

/** express-session's own cookie writer (Cookie#serialize, which its types leave out): what the one writer must match. */
const ExpressSessionCookieWriter = ExpressSessionCookie as unknown as new (options: object) => {
  serialize(name: string, value: string): string;
};

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

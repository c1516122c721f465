import { clearingSessionCookies, parentDomains } from './session-cookie-clearing';

const attributes = { path: '/app', secure: false, httpOnly: true, sameSite: 'lax' as const };

describe('parentDomains', () => {
  it('lists every parent of two labels or more, nearest first', () => {
    expect(parentDomains('app.eu.example.com')).toEqual(['eu.example.com', 'example.com']);
    expect(parentDomains('App.Example.COM.')).toEqual(['example.com']);
  });

  it('never a single label, never an IP address', () => {
    expect(parentDomains('example.com')).toEqual([]);
    expect(parentDomains('localhost')).toEqual([]);
    expect(parentDomains('127.0.0.1')).toEqual([]);
    expect(parentDomains('::1')).toEqual([]);
    expect(parentDomains('[::1]')).toEqual([]);
    expect(parentDomains(undefined)).toEqual([]);
    expect(parentDomains('a..b.c')).toEqual([]);
  });
});

describe('clearingSessionCookies', () => {
  it('clears the host cookie and each parent domain at the configured Path and at /', () => {
    const lines = clearingSessionCookies('session', attributes, 'app.example.com');
    expect(lines).toEqual([
      'session=; Max-Age=0; Path=/app; Expires=Thu, 01 Jan 1970 00:00:00 GMT; HttpOnly; SameSite=Lax',
      'session=; Max-Age=0; Path=/; Expires=Thu, 01 Jan 1970 00:00:00 GMT; HttpOnly; SameSite=Lax',
      'session=; Max-Age=0; Domain=example.com; Path=/app; Expires=Thu, 01 Jan 1970 00:00:00 GMT; HttpOnly; SameSite=Lax',
      'session=; Max-Age=0; Domain=example.com; Path=/; Expires=Thu, 01 Jan 1970 00:00:00 GMT; HttpOnly; SameSite=Lax',
    ]);
  });

  it('clears the configured Domain too, and leaves the configured place out when a login writes it', () => {
    const lines = clearingSessionCookies('session', { ...attributes, path: '/', domain: 'example.com' }, 'app.example.com', true);
    expect(lines).toEqual(['session=; Max-Age=0; Path=/; Expires=Thu, 01 Jan 1970 00:00:00 GMT; HttpOnly; SameSite=Lax']);
  });

  it('clears a __Host- cookie for the host at / only (no other copy can exist)', () => {
    const lines = clearingSessionCookies('__Host-session', { ...attributes, path: '/', secure: true }, 'app.example.com');
    expect(lines).toEqual(['__Host-session=; Max-Age=0; Path=/; Expires=Thu, 01 Jan 1970 00:00:00 GMT; HttpOnly; Secure; SameSite=Lax']);
  });
});

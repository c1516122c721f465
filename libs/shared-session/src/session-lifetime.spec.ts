import { newSessionId } from './session-id';
import { COOKIE_HORIZON_SECONDS, cookieExpiry, hasDeadline, idleSecondsOf, keyTtlMs, storableByProxy } from './session-lifetime';

const NOW = 1_796_169_600_000;
const UUID = '3f1d7c9e-8a4b-4c2d-9e6f-0a1b2c3d4e5f';

describe('session lifetime (PROTOCOL.md section 12)', () => {
  it("reads the session's own idle timeout, or falls back when it has none that is usable", () => {
    expect(idleSecondsOf({ _idle: 120 }, 60)).toBe(120);
    for (const bad of [undefined, 0, -5, '120', NaN, Infinity, null]) expect(idleSecondsOf({ _idle: bad }, 60)).toBe(60);
  });

  it('gives the keys the idle timeout, cut at the deadline; nothing once the deadline has come', () => {
    expect(keyTtlMs(UUID, 60, NOW)).toBe(60_000);
    expect(keyTtlMs(newSessionId(null, NOW), 60, NOW)).toBe(60_000);
    expect(keyTtlMs(newSessionId(NOW + 5_000, NOW), 60, NOW)).toBe(5_000);
    expect(keyTtlMs(newSessionId(NOW + 90_000, NOW), 60, NOW)).toBe(60_000);
    expect(keyTtlMs(newSessionId(NOW + 5_000, NOW), 60, NOW + 5_000)).toBeLessThanOrEqual(0);
  });

  it("gives the cookie the session's deadline, else 400 days; a browser-session cookie when not persistent", () => {
    const timed = newSessionId(NOW + 5_000, NOW);
    expect(cookieExpiry(timed, true, NOW + 1_000)).toEqual(new Date(NOW + 5_000));
    expect(cookieExpiry(UUID, true, NOW)).toEqual(new Date(NOW + COOKIE_HORIZON_SECONDS * 1000));
    expect(cookieExpiry(newSessionId(null, NOW), true, NOW)).toEqual(new Date(NOW + COOKIE_HORIZON_SECONDS * 1000));
    expect(cookieExpiry(timed, false, NOW)).toBeUndefined();
    expect(hasDeadline(timed)).toBe(true);
    expect(hasDeadline(UUID)).toBe(false);
  });

  it('knows a response that nginx or a shared cache may store', () => {
    expect(storableByProxy({ accelExpires: '60' })).toBe(true);
    expect(storableByProxy({ accelExpires: 60, cacheControl: 'private, no-store' })).toBe(true);
    expect(storableByProxy({ accelExpires: '0', cacheControl: 'private, no-store' })).toBe(false);
    expect(storableByProxy({ accelExpires: 'off' })).toBe(false);
    expect(storableByProxy({ cacheControl: 'public, max-age=60' })).toBe(true);
    expect(storableByProxy({ cacheControl: 'max-age=0, s-maxage=60' })).toBe(true);
    expect(storableByProxy({ cacheControl: 'no-store' })).toBe(false);
    expect(storableByProxy({})).toBe(false);
  });
});

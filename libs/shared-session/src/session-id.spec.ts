import { loadSessionIdCases } from '../../../protocol/testkit';
import { newSessionId, sessionIdExpired, sessionIdTimes } from './session-id';

describe('timed session ids, against every case of protocol/session-ids.json', () => {
  const cases = loadSessionIdCases();

  it.each(cases.read.map((c) => [c.why, c] as const))('reads %s', (_why, c) => {
    expect(sessionIdTimes(c.sid)).toEqual(c.timed ? { issuedAt: c.issued_ms, deadline: c.deadline_ms === 0 ? null : c.deadline_ms } : null);
  });

  it.each(cases.make.map((c) => [c.sid, c] as const))('makes ids of the form of %s, with the same times', (sid, c) => {
    const made = newSessionId(c.deadline_ms === 0 ? null : c.deadline_ms, c.issued_ms);
    expect(made).toHaveLength(48);
    expect(made.slice(0, 26)).toBe(sid.slice(0, 26));
    expect(sessionIdTimes(made)).toEqual(sessionIdTimes(sid));
  });

  it('makes a different id each time, issued now by default', () => {
    const before = Date.now();
    const a = newSessionId();
    expect(a).not.toBe(newSessionId());
    expect(sessionIdTimes(a)!.issuedAt).toBeGreaterThanOrEqual(before);
    expect(sessionIdTimes(a)!.deadline).toBeNull();
  });

  it('says a timed id has ended from its deadline on, and an untimed one never', () => {
    const sid = newSessionId(2000, 1000);
    expect(sessionIdExpired(sid, 1999)).toBe(false);
    expect(sessionIdExpired(sid, 2000)).toBe(true);
    expect(sessionIdExpired(newSessionId(null, 1000), 10 ** 13)).toBe(false);
    expect(sessionIdExpired('3f1d7c9e-8a4b-4c2d-9e6f-0a1b2c3d4e5f', 10 ** 13)).toBe(false);
  });

  it('refuses times that do not fit 12 hex digits', () => {
    expect(() => newSessionId(null, -1)).toThrow(RangeError);
    expect(() => newSessionId(2 ** 48)).toThrow(RangeError);
    expect(() => newSessionId(null, 1.5)).toThrow(RangeError);
  });
});

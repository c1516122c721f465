import { caseHeaderLines, caseOutcome, cookieGrammar, type CookieOutcome } from '../../../protocol/testkit';
import {
  isCookieNamed,
  MAX_COOKIE_HEADER_BYTES,
  readSessionCookie,
  readSessionCookieValues,
  type SessionCookieReading,
} from './session-cookie-header';

/** The reading in the form of cookie-grammar.json's outcomes. */
function outcome(reading: SessionCookieReading): CookieOutcome {
  return reading.found === 'value' ? { value: reading.value } : { none: reading.found };
}

describe('readSessionCookie, against every case of protocol/cookie-grammar.json', () => {
  it.each(cookieGrammar.cases.map((c) => [c.why, c] as const))('%s', (_why, c) => {
    const lines = caseHeaderLines(c);
    const name = c.name ?? 'session';
    // As Node gives the header (its lines joined with "; "), and as the lines themselves.
    const joined = lines.length === 0 ? undefined : lines.join('; ');
    expect(outcome(readSessionCookie(joined, name))).toEqual(caseOutcome(c));
    expect(outcome(readSessionCookie(lines, name))).toEqual(caseOutcome(c));
  });
});

describe('readSessionCookie', () => {
  it("caps the header at the protocol's size, whitespace aside", () => {
    expect(MAX_COOKIE_HEADER_BYTES).toBe(cookieGrammar.max_header_bytes);
    const header = `session=A;x=${'x'.repeat(MAX_COOKIE_HEADER_BYTES - 12)}`;
    expect(readSessionCookie(header, 'session')).toEqual({ found: 'value', value: 'A' });
    expect(readSessionCookie(` \t${header}\t `, 'session')).toEqual({ found: 'value', value: 'A' });
    expect(readSessionCookie(`${header}x`, 'session')).toEqual({ found: 'refused', reason: 'cookie header longer than 8000 bytes' });
  });

  it('says why a header is refused', () => {
    expect(readSessionCookie('session=A\u0001', 'session')).toEqual({ found: 'refused', reason: 'control character in cookie header' });
    expect(readSessionCookie('x=1,session=A', 'session')).toEqual({ found: 'refused', reason: 'cookie name after a comma' });
    expect(readSessionCookie('session=A; session=B', 'session')).toEqual({
      found: 'refused',
      reason: 'cookies of that name with different values',
      conflict: true,
    });
  });
});

describe('readSessionCookie: two sessions sent', () => {
  it('marks a header with two different values of the name as a conflict, and no other refusal', () => {
    expect(readSessionCookie('session=a.b; session=c.d', 'session')).toEqual({
      found: 'refused',
      reason: 'cookies of that name with different values',
      conflict: true,
    });
    expect(readSessionCookie('session=a\x01', 'session')).not.toHaveProperty('conflict');
    expect(readSessionCookie('session=a.b; session=a.b', 'session')).toEqual({ found: 'value', value: 'a.b' });
  });
});

describe('readSessionCookieValues', () => {
  it('lists every value of the name, in order, each once, trimmed of SP and HTAB only', () => {
    expect(readSessionCookieValues('session=a.b; other=x;\tsession = c.d ; session=a.b', 'session')).toEqual(['a.b', 'c.d']);
    expect(readSessionCookieValues(['session=a.b', 'session=c.d'], 'session')).toEqual(['a.b', 'c.d']);
    expect(readSessionCookieValues('Session=a.b; \u00a0session=c.d', 'session')).toEqual([]);
    expect(readSessionCookieValues(undefined, 'session')).toEqual([]);
  });

  it('holds none in a header that the grammar refuses before any name (a control byte, over the cap)', () => {
    expect(readSessionCookieValues('session=a.b; session=c\x01', 'session')).toEqual([]);
    expect(readSessionCookieValues(`session=a.b; x=${'y'.repeat(MAX_COOKIE_HEADER_BYTES)}`, 'session')).toEqual([]);
  });
});

describe('isCookieNamed', () => {
  it('is true for a piece whose name, without SP/HTAB around it, is the name, byte for byte', () => {
    for (const piece of ['session=A', ' session=', '\tsession \t= A', 'session==']) expect(isCookieNamed(piece, 'session')).toBe(true);
    for (const piece of ['session', 'Session=A', 'sessionx=A', 'x=session=A', '', '=A', 'x,session=A', '\u00a0session=A']) {
      expect(isCookieNamed(piece, 'session')).toBe(false);
    }
  });
});

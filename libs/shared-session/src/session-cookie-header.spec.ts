import { caseHeaderLines, caseOutcome, cookieGrammar, type CookieOutcome } from '../../../protocol/testkit';
import { isCookieNamed, MAX_COOKIE_HEADER_BYTES, readSessionCookie, type SessionCookieReading } from './session-cookie-header';

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
    });
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

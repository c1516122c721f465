/**
 * The Cookie header's grammar (PROTOCOL.md section 10): how the session
 * cookie is found in a request, exactly as nginx finds it
 * (resty.shared_session.cookie.from_header), so that the two never judge one
 * request as two different sessions, or as a session and as nobody. Pure.
 *
 * Strings are byte strings, one character per byte (latin1), which is how
 * Node gives header values.
 */

/** A header (all lines joined with "; ") with more bytes than this, SP and HTAB aside, is refused. */
export const MAX_COOKIE_HEADER_BYTES = 8000;

/** What a Cookie header holds under a cookie name. */
export type SessionCookieReading =
  /** The value that counts, untouched: section 2 judges it (it may be empty or malformed). */
  | { found: 'value'; value: string }
  /** No cookie of that name. */
  | { found: 'absent' }
  /**
   * A header both doors could not read alike: no session. `conflict`: it
   * held cookies of the name with different values (two sessions sent, as a
   * cookie set on a sibling or parent domain adds one: cookie tossing).
   */
  | { found: 'refused'; reason: string; conflict?: true };

const ABSENT: SessionCookieReading = { found: 'absent' };
const refused = (reason: string): SessionCookieReading => ({ found: 'refused', reason });

const SP = 0x20;
const HTAB = 0x09;
const isOws = (c: number) => c === SP || c === HTAB;
/** The control bytes HTTP forbids in a field value: 0x00-0x08, 0x0A-0x1F, 0x7F. */
const isControl = (c: number) => (c < 0x20 && c !== HTAB) || c === 0x7f;

/**
 * When `s` holds, from `start` to before `end`, optional SP/HTAB, `name`,
 * optional SP/HTAB and "=", the index after the "="; else -1. The name is
 * compared byte for byte (case matters).
 */
function afterName(s: string, start: number, end: number, name: string): number {
  let i = start;
  while (i < end && isOws(s.charCodeAt(i))) i++;
  if (i + name.length >= end || !s.startsWith(name, i)) return -1;
  i += name.length;
  while (i < end && isOws(s.charCodeAt(i))) i++;
  return i < end && s.charCodeAt(i) === 0x3d /* = */ ? i + 1 : -1;
}

/** How many bytes of `s` are not SP or HTAB: the cap does not count whitespace, on which the HTTP layers differ at the ends of a line. */
function withoutOwsLength(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) if (!isOws(s.charCodeAt(i))) n++;
  return n;
}

/** `s` from `start` to before `end`, without SP/HTAB at either end. */
function trimmed(s: string, start: number, end: number): string {
  while (start < end && isOws(s.charCodeAt(start))) start++;
  while (end > start && isOws(s.charCodeAt(end - 1))) end--;
  return s.slice(start, end);
}

/**
 * The cookie `name` in a Cookie header: `header` as Node gives it (every
 * line joined with "; "), or its lines.
 */
export function readSessionCookie(header: string | readonly string[] | undefined, name: string): SessionCookieReading {
  if (header === undefined) return ABSENT;
  const s = typeof header === 'string' ? header : header.join('; ');
  if (s.length > MAX_COOKIE_HEADER_BYTES && withoutOwsLength(s) > MAX_COOKIE_HEADER_BYTES) {
    return refused(`cookie header longer than ${MAX_COOKIE_HEADER_BYTES} bytes`);
  }
  for (let i = 0; i < s.length; i++) {
    if (isControl(s.charCodeAt(i))) return refused('control character in cookie header');
  }
  for (let comma = s.indexOf(','); comma >= 0; comma = s.indexOf(',', comma + 1)) {
    if (afterName(s, comma + 1, s.length, name) >= 0) return refused('cookie name after a comma');
  }
  let value: string | undefined;
  for (let start = 0; start < s.length;) {
    const semicolon = s.indexOf(';', start);
    const end = semicolon < 0 ? s.length : semicolon;
    const at = afterName(s, start, end, name);
    if (at >= 0) {
      const v = trimmed(s, at, end);
      if (value === undefined) value = v;
      else if (v !== value) return { found: 'refused', reason: 'cookies of that name with different values', conflict: true };
    }
    start = end + 1;
  }
  return value === undefined ? ABSENT : { found: 'value', value };
}

/**
 * Every value the header holds under `name`, in order, each once: every
 * `;`-separated piece named `name` (rule 4 of section 10), trimmed of SP and
 * HTAB. Not a reading of the session (that is readSessionCookie, which
 * refuses a header holding two different values): what logout and login use
 * to end every session such a header names, each value verified by the
 * signer first. A header over the size cap or with a control byte holds none.
 */
export function readSessionCookieValues(header: string | readonly string[] | undefined, name: string): string[] {
  if (header === undefined) return [];
  const s = typeof header === 'string' ? header : header.join('; ');
  if (s.length > MAX_COOKIE_HEADER_BYTES && withoutOwsLength(s) > MAX_COOKIE_HEADER_BYTES) return [];
  for (let i = 0; i < s.length; i++) if (isControl(s.charCodeAt(i))) return [];
  const values: string[] = [];
  for (let start = 0; start < s.length;) {
    const semicolon = s.indexOf(';', start);
    const end = semicolon < 0 ? s.length : semicolon;
    const at = afterName(s, start, end, name);
    if (at >= 0) {
      const v = trimmed(s, at, end);
      if (!values.includes(v)) values.push(v);
    }
    start = end + 1;
  }
  return values;
}

/** Whether one `;`-separated piece of a Cookie header is a cookie named `name` (rule 4 of section 10). */
export function isCookieNamed(piece: string, name: string): boolean {
  return afterName(piece, 0, piece.length, name) >= 0;
}

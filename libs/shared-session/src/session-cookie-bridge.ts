import { serialize } from 'cookie';
import { sign as signForExpressSession } from 'cookie-signature';
import { isCookieNamed, readSessionCookie } from './session-cookie-header';
import type { SessionCookieSigner, VerifiedSessionCookie } from './session-cookie-signer';
import type { SharedSessionCookieOptions } from './shared-session.options';

/**
 * Between our cookie `<sid>.<sig>` (PROTOCOL.md section 2) and
 * express-session, which has no hook for another signer and only reads and
 * writes its own `s:<sid>.<hmac>`. The middleware translates at the edges
 * with these functions: the request's Cookie header on the way in, the
 * response's Set-Cookie on the way out. Pure: no request, no response.
 */

/** SP and HTAB at either end of a string: what PROTOCOL.md section 10 trims, and nothing else. */
const OWS_AT_ENDS = /^[ \t]+|[ \t]+$/g;

/** What the request's Cookie header becomes for express-session. */
export interface ExpressSessionCookieHeader {
  /** The header to hand express-session; undefined: none. */
  header: string | undefined;
  /** Our cookie, found by the protocol's grammar and verified; null when there is none, the header is refused, or its signature is not valid. */
  verified: VerifiedSessionCookie | null;
  /** The header was refused for holding cookies of our name with different values (two sessions sent: cookie tossing). */
  conflict?: true;
}

/**
 * express-session's cookie value for a session id, `s:<sid>.<hmac>` signed
 * with the per-process key and URI-encoded as it writes it. It depends on
 * the id alone, so the values of the last `max` ids are remembered: a busy
 * session's request costs one HMAC less. Only ids whose own cookie was
 * verified (our HMAC, on every request) are ever asked for.
 */
export class ExpressSessionCookieValues {
  private readonly values = new Map<string, string>();

  constructor(
    private readonly key: string,
    private readonly max = 10_000,
  ) {}

  valueFor(sid: string): string {
    let value = this.values.get(sid);
    if (value === undefined) {
      value = encodeURIComponent(`s:${signForExpressSession(sid, this.key)}`);
      // Bounded: the oldest remembered id goes first.
      if (this.values.size >= this.max) this.values.delete(this.values.keys().next().value as string);
      this.values.set(sid, value);
    }
    return value;
  }
}

/**
 * The Cookie header as express-session must see it: every cookie of our
 * name removed, and the one the protocol's grammar finds (PROTOCOL.md
 * section 10, as nginx finds it) put back in express-session's format
 * (`expressSession`), when its signature is valid. A header without a
 * cookie of our name is handed on as it is.
 */
export function toExpressSessionCookieHeader(
  header: string | undefined,
  name: string,
  signer: Pick<SessionCookieSigner, 'verify'>,
  expressSession: ExpressSessionCookieValues,
): ExpressSessionCookieHeader {
  const reading = readSessionCookie(header, name);
  if (!header || reading.found === 'absent') return { header, verified: null };
  const conflict = reading.found === 'refused' && reading.conflict ? { conflict: true as const } : {};
  const verified = reading.found === 'value' ? signer.verify(reading.value) : null;
  const ours = verified ? `${name}=${expressSession.valueFor(verified.sid)}` : undefined;
  // The usual header holds our cookie alone: nothing else to keep.
  if (isCookieNamed(header, name) && header.indexOf(';') < 0) return { header: ours, verified, ...conflict };
  // express-session's parser (`cookie`) cuts at ';' and trims SP/HTAB around names, as the grammar does: it finds none of ours left.
  const kept = header.split(';').filter((piece) => !isCookieNamed(piece, name));
  if (ours) kept.push(` ${ours}`);
  // Only SP and HTAB, as the grammar: trim() would also strip U+00A0 and make a name that is not ours one.
  const rebuilt = kept.join(';').replace(OWS_AT_ENDS, '');
  return { header: rebuilt.length > 0 ? rebuilt : undefined, verified, ...conflict };
}

/**
 * The Set-Cookie lines with express-session's cookie of our name given our
 * value `<sid>.<sig>` instead (signed only when there is one to rewrite),
 * every attribute kept; null when express-session wrote none.
 */
export function toSharedSessionSetCookie(
  lines: readonly string[],
  name: string,
  sid: string,
  signer: Pick<SessionCookieSigner, 'sign'>,
): string[] | null {
  // express-session URI-encodes its value, so its cookie starts with `<name>=s%3A`.
  const theirs = `${name}=s%3A`;
  if (!lines.some((line) => line.startsWith(theirs))) return null;
  const value = signer.sign(sid);
  return lines.map((line) => {
    if (!line.startsWith(theirs)) return line;
    const semi = line.indexOf(';');
    return `${name}=${value}${semi < 0 ? '' : line.slice(semi)}`;
  });
}

/** When a cookie ends: `expires` (none: a browser-session cookie), or `maxAge` seconds (0: clear it now). */
export interface SessionCookieExpiry {
  expires?: Date;
  maxAge?: number;
}

/**
 * The one writer of our cookie: `name=value` with the configured attributes
 * (Path, Domain, Secure, HttpOnly, SameSite) and the given expiry.
 */
export function serializeSessionCookie(
  name: string,
  value: string,
  attributes: Omit<SharedSessionCookieOptions, 'persistent'>,
  expiry: SessionCookieExpiry,
): string {
  const { path, domain, secure, httpOnly, sameSite } = attributes;
  return serialize(name, value, { path, domain, secure, httpOnly, sameSite, ...expiry });
}

/** A response's Set-Cookie header as a list of lines. */
export function setCookieLines(header: number | string | readonly string[] | undefined): string[] {
  if (header === undefined) return [];
  return Array.isArray(header) ? [...header] : [String(header)];
}

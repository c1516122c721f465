import { serialize } from 'cookie';
import type { SharedSessionCookieOptions } from './shared-session.options';

/**
 * Our cookie on the response, on either adapter: the one writer of the
 * Set-Cookie line (PROTOCOL.md section 2's value, the configured
 * attributes, section 12's expiry).
 */

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

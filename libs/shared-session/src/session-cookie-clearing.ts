import { isIP } from 'node:net';
import { serializeSessionCookie } from './session-cookie-writer';
import type { SharedSessionCookieOptions } from './shared-session.options';

/**
 * The Set-Cookie lines that clear a session cookie wherever a browser may
 * hold one under this name: after cookie tossing (a sibling subdomain set a
 * second cookie of the name for a parent domain) clearing the host's cookie
 * alone would leave the other one in the browser. Pure.
 */

/**
 * The parent domains of `host` that a cookie may have been set for: every
 * suffix of two labels or more, nearest first. Never a single label (a
 * top-level domain) and never an IP address. No public-suffix list: a line
 * for a public suffix (`co.uk`) is one the browser never stored a cookie
 * under, so clearing it is harmless.
 */
export function parentDomains(host: string | undefined): string[] {
  if (!host) return [];
  const name = host.toLowerCase().replace(/\.$/, '');
  if (isIP(name) !== 0 || name.startsWith('[')) return [];
  const labels = name.split('.');
  if (labels.some((l) => l.length === 0)) return [];
  const parents: string[] = [];
  for (let i = 1; i <= labels.length - 2; i++) parents.push(labels.slice(i).join('.'));
  return parents;
}

/**
 * Expired cookies of `name`: for the host (no Domain), for the configured
 * Domain and for each parent domain of `host`, each at the configured Path
 * and at `/`. A `__Host-` cookie can only be set for the host at `/`: one
 * line, nothing else to clear. `keepOwn`: not the configured place itself
 * (Domain and Path), where a login is about to write the new cookie.
 */
export function clearingSessionCookies(
  name: string,
  attributes: Omit<SharedSessionCookieOptions, 'persistent'>,
  host: string | undefined,
  keepOwn = false,
): string[] {
  const expired = { maxAge: 0, expires: new Date(0) };
  const paths = [...new Set([attributes.path ?? '/', '/'])];
  const domains: (string | undefined)[] = name.startsWith('__Host-')
    ? [undefined]
    : [...new Set([undefined, attributes.domain, ...parentDomains(host)])];
  const own = (domain: string | undefined, path: string) => keepOwn && domain === attributes.domain && path === (attributes.path ?? '/');
  return domains.flatMap((domain) =>
    paths.filter((path) => !own(domain, path)).map((path) => serializeSessionCookie(name, '', { ...attributes, domain, path }, expired)),
  );
}

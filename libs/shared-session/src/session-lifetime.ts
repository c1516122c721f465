import { sessionIdTimes } from './session-id';

/**
 * How long a session lives, and how long its cookie does (PROTOCOL.md
 * section 12). Two limits: the absolute deadline is in the timed session id
 * (section 11) and never moves; the idle timeout is the time to live of the
 * three keys, set back to the session's `_idle` (seconds, in its JSON) when
 * it is used, never past the deadline. Pure: the clock is an argument.
 */

/** The reserved key of the session JSON that holds its idle timeout in seconds (section 12). */
export const IDLE_KEY = '_idle';

/**
 * The longest lifetime browsers give a cookie (RFC 6265bis caps Expires and
 * Max-Age at 400 days): the cookie of a session without a deadline, renewed
 * when the app extends the session.
 */
export const COOKIE_HORIZON_SECONDS = 400 * 24 * 3600;

/**
 * How long a session may go without being extended, when nothing else is
 * configured (PROTOCOL.md section 12, the same at nginx): a refresh is due
 * once the session's expiry is closer than `idle − interval`, so a session
 * never ends earlier than `idle − interval` after its last use. A tenth of
 * the idle timeout (a 30-minute session every 3 minutes, a 31-day one about
 * every 3 days), at least a minute so that a busy site does not write per
 * request, at most half of it (a 2-second session every second).
 */
export function defaultRefreshIntervalSeconds(idleSeconds: number): number {
  return Math.min(idleSeconds / 2, Math.max(60, idleSeconds / 10));
}

/** What the session's JSON says its idle timeout is, or `fallback` when it says nothing usable. */
export function idleSecondsOf(session: object, fallback: number): number {
  const idle = (session as Record<string, unknown>)[IDLE_KEY];
  return typeof idle === 'number' && Number.isFinite(idle) && idle > 0 ? idle : fallback;
}

/**
 * The time to live to give the three keys now: the idle timeout, cut at the
 * deadline of a timed id; 0 or less when the deadline has come.
 */
export function keyTtlMs(sid: string, idleSeconds: number, now = Date.now()): number {
  const idle = Math.ceil(idleSeconds * 1000);
  const deadline = sessionIdTimes(sid)?.deadline;
  return deadline == null ? idle : Math.min(idle, deadline - now);
}

/**
 * The cookie's Expires (undefined: a browser-session cookie). The deadline
 * when the id has one: it never moves, so the cookie never needs renewing,
 * and nginx, which keeps a session alive on cached responses that cannot
 * carry a cookie, never leaves it behind. Without a deadline there is no
 * moment by which the session must have ended: the longest lifetime
 * browsers keep, renewed when the app extends the session. Never the idle
 * limit: the browser must not drop the cookie of a session that nginx keeps
 * alive.
 */
export function cookieExpiry(sid: string, persistent: boolean, now = Date.now()): Date | undefined {
  if (!persistent) return undefined;
  const deadline = sessionIdTimes(sid)?.deadline;
  return new Date(deadline ?? now + COOKIE_HORIZON_SECONDS * 1000);
}

/** True when the id carries a deadline: its cookie's Expires is that deadline, and is never renewed. */
export function hasDeadline(sid: string): boolean {
  return sessionIdTimes(sid)?.deadline != null;
}

/**
 * Whether nginx (or any shared cache that honours these headers) may store
 * the response: then it must not carry a renewed cookie (PROTOCOL.md section
 * 6). `X-Accel-Expires` other than 0 tells nginx to keep it; `Cache-Control`
 * with `public` or `s-maxage` tells a shared cache.
 */
export function storableByProxy(headers: { accelExpires?: unknown; cacheControl?: unknown }): boolean {
  const accel = headers.accelExpires === undefined ? '' : String(headers.accelExpires).trim().toLowerCase();
  if (accel !== '' && accel !== '0' && accel !== 'off') return true;
  const cc = headers.cacheControl === undefined ? '' : String(headers.cacheControl).toLowerCase();
  return /(^|[\s,])(public|s-maxage)\b/.test(cc);
}

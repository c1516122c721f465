import { randomBytes } from 'node:crypto';

/**
 * Timed session ids (PROTOCOL.md section 11): `<issued>_<deadline>_<random>`,
 * the Unix times in milliseconds as 12 lower-case hex digits each (deadline
 * 0: none) and 16 random bytes in base64url. The cookie's signature covers
 * the id, so the times are as trustworthy as the session id itself.
 */

const TIMED = /^([0-9a-f]{12})_([0-9a-f]{12})_[A-Za-z0-9_-]{22}$/;
const MAX_MS = 0xffffffffffff;

export interface SessionIdTimes {
  /** When the id was made (Unix ms). */
  issuedAt: number;
  /** From when the session has ended, whatever its keys say (Unix ms); null: no deadline. */
  deadline: number | null;
}

/** A new timed session id, issued now unless told otherwise. */
export function newSessionId(deadline: number | null = null, issuedAt = Date.now()): string {
  return `${hex12(issuedAt)}_${hex12(deadline ?? 0)}_${randomBytes(16).toString('base64url')}`;
}

/** The last id read and its times: a request asks about its session's id several times (expiry, cookie, refresh). */
let lastSid: string | undefined;
let lastTimes: Readonly<SessionIdTimes> | null = null;

/** The times a timed id carries, or null for an untimed one (a UUID made by a v1 writer, say). */
export function sessionIdTimes(sid: string): Readonly<SessionIdTimes> | null {
  if (sid === lastSid) return lastTimes;
  const match = TIMED.exec(sid);
  const deadline = match ? parseInt(match[2], 16) : 0;
  lastTimes = match ? Object.freeze({ issuedAt: parseInt(match[1], 16), deadline: deadline === 0 ? null : deadline }) : null;
  lastSid = sid;
  return lastTimes;
}

/** True when `sid` is timed and its deadline has come (section 11: the session has ended). */
export function sessionIdExpired(sid: string, now = Date.now()): boolean {
  const deadline = sessionIdTimes(sid)?.deadline;
  return deadline != null && now >= deadline;
}

function hex12(ms: number): string {
  if (!Number.isInteger(ms) || ms < 0 || ms > MAX_MS) throw new RangeError(`session id time out of range: ${ms}`);
  return ms.toString(16).padStart(12, '0');
}

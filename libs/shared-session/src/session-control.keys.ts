import { sessionIdTimes } from './session-id';
import { isWellFormed } from './session-json';

/**
 * PROTOCOL.md section 13, the small pure parts: whose session it is, which
 * sessions the not-before mark ends, the notices, and the checks of the
 * control API's arguments.
 */

/** The most bytes a user id may have (section 13.1). */
const MAX_USER_ID_BYTES = 256;
// eslint-disable-next-line no-control-regex
const CONTROL_CHARACTER = /[\u0000-\u001f\u007f]/;

/** The session's user (section 13.1): the field's value when it is a non-empty string; else none. */
export function userIdOf(data: Record<string, unknown>, field: string): string | undefined {
  const value = data[field];
  return typeof value === 'string' && value.length > 0 && isUserId(value) ? value : undefined;
}

/** Section 13.1: at most 256 bytes, no control character, well-formed (a lone surrogate's UTF-8 is U+FFFD's: ids would share an index). */
function isUserId(value: string): boolean {
  return Buffer.byteLength(value, 'utf8') <= MAX_USER_ID_BYTES && !CONTROL_CHARACTER.test(value) && isWellFormed(value);
}

/** A group id: non-empty, no control character, well-formed Unicode. */
export function isGroupId(value: unknown): value is string {
  return typeof value === 'string' && value.length > 0 && !CONTROL_CHARACTER.test(value) && isWellFormed(value);
}

/** Section 13.2: true when the mark (ms, as Redis holds it; null/0: none) ends the session `sid`. */
export function refusedByNotBefore(sid: string, mark: string | number | null | undefined): boolean {
  const ms = Number(mark ?? 0);
  if (!(ms > 0)) return false;
  const times = sessionIdTimes(sid);
  return times === null || times.issuedAt < ms;
}

/** Section 13.4: the barrier each reader acknowledges on `<prefix>:ack`. */
export const ackNotice = (id: string): string => `!ack ${id}`;

/** A user id argument: a non-empty, well-formed string, at most 256 bytes, no control character. */
export function checkUserId(method: string, userId: unknown, argument = 'userId'): asserts userId is string {
  if (typeof userId !== 'string' || userId.length === 0 || !isUserId(userId)) {
    throw new TypeError(
      `${method}: ${argument} must be a non-empty, well-formed string (no lone surrogate) of at most ${MAX_USER_ID_BYTES} bytes without control characters`,
    );
  }
}

/** A group id argument: a non-empty, well-formed string without control characters. */
export function checkGroupId(method: string, group: unknown, argument = 'group'): asserts group is string {
  if (!isGroupId(group)) {
    throw new TypeError(`${method}: ${argument} must be a non-empty, well-formed string (no lone surrogate) without control characters`);
  }
}

/** A session id argument (section 1: 16 to 128 characters of [A-Za-z0-9_-]). */
export function checkSessionId(method: string, sid: unknown, argument = 'sessionId'): asserts sid is string {
  if (typeof sid !== 'string' || !/^[A-Za-z0-9_-]{16,128}$/.test(sid)) {
    throw new TypeError(`${method}: ${argument} must be a session id (16 to 128 characters of A-Z a-z 0-9 _ -)`);
  }
}

import { createHmac } from 'node:crypto';

/**
 * PROTOCOL.md sections 1 and 2, written again from the text and nothing else,
 * as the test oracle: the nginx specs, the end-to-end tests and the library's
 * own specs sign cookies with this, not with the implementation under test.
 * It is checked against vectors.json in testkit.spec.ts. No constant-time
 * compare and no rotation: a test kit signs; it does not guard anything.
 */

/** `HMAC-SHA1(key = secret, message = salt)` (itsdangerous' `key_derivation='hmac'`). */
export function deriveKey(secret: string, salt: string): Buffer {
  return createHmac('sha1', secret).update(salt).digest();
}

/** The 27-character `<sig>` of `sid`: base64url without padding of `HMAC-SHA1(derived key, sid)`. */
export function signature(sid: string, secret: string, salt: string): string {
  return createHmac('sha1', deriveKey(secret, salt)).update(sid).digest('base64url');
}

/** The cookie value `<sid>.<sig>`. */
export function cookieValue(sid: string, secret: string, salt: string): string {
  return `${sid}.${signature(sid, secret, salt)}`;
}

/**
 * The session id of a cookie value that a reader must accept (sections 1 and
 * 2) under `secret` and `salt`, else null: exactly `<sid>.<sig>`, the sid 16
 * to 128 characters of `[A-Za-z0-9_-]`, the signature its canonical 27
 * characters. The expected answer for tests of a reader, not a reader itself.
 */
export function sessionIdOf(value: unknown, secret: string, salt: string): string | null {
  const match = typeof value === 'string' ? /^([A-Za-z0-9_-]{16,128})\.([A-Za-z0-9_-]{27})$/.exec(value) : null;
  return match && match[2] === signature(match[1], secret, salt) ? match[1] : null;
}

/** A session id as a writer makes one (section 1): a random UUID v4. */
export { randomUUID as newSessionId } from 'node:crypto';

import { createHmac, timingSafeEqual } from 'node:crypto';
import { DEFAULT_SALT } from './shared-session.constants';

export interface SessionCookieSignerOptions {
  /** The current secret: every new signature is made with it. */
  secret: string;
  /** Older secrets whose signatures are still accepted. */
  secretFallbacks?: string[];
  /** Default `flask-resty-session`. */
  salt?: string;
}

/** What a verified cookie holds. */
export interface VerifiedSessionCookie {
  sid: string;
  /** true when the signature was made with a fallback secret: re-sign it. */
  signedWithFallback: boolean;
}

/** PROTOCOL.md section 1: what a reader accepts as a session id. */
const SESSION_ID = /^[A-Za-z0-9_-]{16,128}$/;
/** Section 2: the canonical signature, unpadded base64url of 20 bytes. */
const SIGNATURE = /^[A-Za-z0-9_-]{27}$/;
/** Section 2: longer cookie values are rejected before any work. */
const MAX_COOKIE_LENGTH = 256;

/**
 * The cookie signature of PROTOCOL.md v1: itsdangerous' `Signer` with
 * `key_derivation='hmac'` and SHA-1, as Flask and flask-resty-shared-session
 * use it. The one implementation of the format in TypeScript.
 */
export class SessionCookieSigner {
  /** Derived keys: the current secret's first, then the fallbacks'. */
  private readonly keys: Buffer[];

  constructor(options: SessionCookieSignerOptions) {
    const salt = options.salt ?? DEFAULT_SALT;
    const secrets = [options.secret, ...(options.secretFallbacks ?? [])];
    if (secrets.some((s) => typeof s !== 'string' || s.length === 0)) {
      throw new TypeError('SessionCookieSigner: secrets must be non-empty strings');
    }
    this.keys = secrets.map((secret) => createHmac('sha1', secret).update(salt).digest());
  }

  /** True when `sid` is a session id a reader accepts (section 1). */
  static isSessionId(sid: unknown): sid is string {
    return typeof sid === 'string' && SESSION_ID.test(sid);
  }

  /** The signature of `sid` with the current secret: 27 base64url characters. */
  signature(sid: string): string {
    return SessionCookieSigner.mac(this.keys[0], sid).toString('base64url');
  }

  /** The cookie value `<sid>.<sig>`. */
  sign(sid: string): string {
    if (!SessionCookieSigner.isSessionId(sid)) throw new TypeError('SessionCookieSigner: not a valid session id');
    return `${sid}.${this.signature(sid)}`;
  }

  /** The session id of a correctly signed cookie value, or null. */
  unsign(value: unknown): string | null {
    return this.verify(value)?.sid ?? null;
  }

  /** Parses strictly and checks the signature against every accepted secret in constant time. */
  verify(value: unknown): VerifiedSessionCookie | null {
    if (typeof value !== 'string' || value.length > MAX_COOKIE_LENGTH) return null;
    const dot = value.indexOf('.');
    if (dot < 0 || dot !== value.lastIndexOf('.')) return null;
    const sid = value.slice(0, dot);
    const sig = value.slice(dot + 1);
    if (!SESSION_ID.test(sid) || !SIGNATURE.test(sig)) return null;

    // Comparing the encoded text (not the decoded bytes) accepts only the canonical spelling.
    // Every key is tried, so the time taken does not depend on which one matched.
    const given = Buffer.from(sig, 'latin1');
    let matched = -1;
    for (let i = 0; i < this.keys.length; i++) {
      const expected = Buffer.from(SessionCookieSigner.mac(this.keys[i], sid).toString('base64url'), 'latin1');
      if (timingSafeEqual(given, expected) && matched < 0) matched = i;
    }
    if (matched < 0) return null;
    return { sid, signedWithFallback: matched > 0 };
  }

  private static mac(key: Buffer, sid: string): Buffer {
    return createHmac('sha1', key).update(sid).digest();
  }
}

import { cookieValue, deriveKey, namedSecrets, vectors } from '../../../protocol/testkit';
import { SessionCookieSigner } from './session-cookie-signer';

describe('SessionCookieSigner against vectors.json', () => {
  describe.each(vectors.valid.map((v) => [`${v.sid} / salt ${v.salt}`, v] as const))('valid %s', (_name, v) => {
    const signer = new SessionCookieSigner({ secret: v.secret, salt: v.salt });

    it('derives the key as HMAC-SHA1(secret, salt)', () => {
      expect(deriveKey(v.secret, v.salt).toString('hex')).toBe(v.derived_key_hex);
    });
    it('signs to the reference cookie', () => {
      expect(signer.signature(v.sid)).toBe(v.signature);
      expect(signer.sign(v.sid)).toBe(v.cookie);
    });
    it('unsigns the reference cookie', () => {
      expect(signer.unsign(v.cookie)).toBe(v.sid);
      expect(signer.verify(v.cookie)).toEqual({ sid: v.sid, signedWithFallback: false });
    });
  });

  describe('rotation', () => {
    for (const v of vectors.rotation) {
      it(v.note, () => {
        const signer = new SessionCookieSigner({ ...namedSecrets(v.secrets), salt: v.salt });
        if (v.sign_sid !== undefined) {
          expect(signer.sign(v.sign_sid)).toBe(v.expected_cookie);
        } else {
          const sid = v.cookie!.split('.')[0];
          expect(signer.unsign(v.cookie)).toBe(v.valid ? sid : null);
        }
      });
    }

    it('reports a cookie signed with a fallback secret, so it can be re-signed', () => {
      const [oldCookie, newCookie] = vectors.rotation.filter((v) => v.valid).map((v) => v.cookie!);
      const signer = new SessionCookieSigner({ secret: 'new-secret-2026', secretFallbacks: ['old-secret-2025'], salt: 'app_session_salt' });
      expect(signer.verify(oldCookie)?.signedWithFallback).toBe(true);
      expect(signer.verify(newCookie)?.signedWithFallback).toBe(false);
    });
  });

  describe('invalid', () => {
    const signer = new SessionCookieSigner({ secret: vectors.invalid.secret, salt: vectors.invalid.salt });
    it.each(vectors.invalid.cases.map((c) => [c.why, c] as const))('rejects: %s', (_why, c) => {
      expect(c.must_accept).toBe(false);
      expect(signer.unsign(c.cookie)).toBeNull();
    });
  });
});

describe('SessionCookieSigner input rules', () => {
  const signer = new SessionCookieSigner({ secret: 'fishes', salt: 'app_session_salt' });
  const good = vectors.valid[0].cookie;

  it('rejects values that are not strings without throwing', () => {
    for (const value of [undefined, null, 42, {}, [], Buffer.from(good)]) expect(signer.unsign(value)).toBeNull();
  });

  it('rejects a value longer than 256 characters before any work', () => {
    const sid = 'a'.repeat(128);
    const cookie = signer.sign(sid);
    expect(signer.unsign(cookie)).toBe(sid);
    expect(signer.unsign(`${'a'.repeat(257 - 28)}.${'b'.repeat(27)}`)).toBeNull();
  });

  it('accepts session ids of 16 to 128 characters of [A-Za-z0-9_-] only', () => {
    for (const sid of ['a'.repeat(16), 'Z'.repeat(128), 'AbC-_09'.repeat(4)]) expect(signer.unsign(signer.sign(sid))).toBe(sid);
    for (const sid of ['a'.repeat(15), 'a'.repeat(129), 'abcdefghijklmnop!', 'abcdefghijklmnopé']) {
      expect(() => signer.sign(sid)).toThrow(TypeError);
      // Well signed by the protocol's rule, but not a session id a reader accepts.
      expect(signer.unsign(cookieValue(sid, 'fishes', 'app_session_salt'))).toBeNull();
    }
  });

  it('accepts only the canonical spelling of the signature', () => {
    // 27 base64url characters carry 162 bits for 160: the last one has spare bits.
    const [sid, sig] = good.split('.');
    const last = sig[26];
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
    const sameBytes = [...alphabet].filter((ch) => ch !== last && alphabet.indexOf(ch) >> 2 === alphabet.indexOf(last) >> 2);
    expect(sameBytes.length).toBe(3);
    for (const ch of sameBytes) {
      const variant = `${sid}.${sig.slice(0, 26)}${ch}`;
      expect(Buffer.from(variant.split('.')[1], 'base64url')).toEqual(Buffer.from(sig, 'base64url'));
      expect(signer.unsign(variant)).toBeNull();
    }
  });

  it('refuses to be built without a secret', () => {
    expect(() => new SessionCookieSigner({ secret: '' })).toThrow(TypeError);
    expect(() => new SessionCookieSigner({ secret: 'x', secretFallbacks: [''] })).toThrow(TypeError);
  });
});

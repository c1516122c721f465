import { PROTOCOL_DEFAULTS } from '../../../protocol/testkit';
import {
  COOKIE_NAME_PATTERN,
  DEFAULT_COOKIE_NAME,
  DEFAULT_COOKIE_OPTIONS,
  DEFAULT_KEY_PREFIX,
  DEFAULT_SALT,
  DEFAULT_TTL_SECONDS,
  KEY_PREFIX_PATTERN,
} from './shared-session.constants';

describe('the library defaults', () => {
  it("are the protocol's (PROTOCOL.md sections 2 and 3)", () => {
    expect({ salt: DEFAULT_SALT, keyPrefix: DEFAULT_KEY_PREFIX, cookieName: DEFAULT_COOKIE_NAME, ttlSeconds: DEFAULT_TTL_SECONDS }).toEqual(
      PROTOCOL_DEFAULTS,
    );
  });

  it('give the cookie the attributes section 2 recommends: Path=/; HttpOnly; SameSite=Lax', () => {
    expect(DEFAULT_COOKIE_OPTIONS).toMatchObject({ path: '/', httpOnly: true, sameSite: 'lax' });
  });

  it('pass their own patterns', () => {
    expect(KEY_PREFIX_PATTERN.test(DEFAULT_KEY_PREFIX)).toBe(true);
    expect(COOKIE_NAME_PATTERN.test(DEFAULT_COOKIE_NAME)).toBe(true);
  });
});

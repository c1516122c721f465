import * as api from '../src';

describe('the public API (index.ts)', () => {
  it('exports what a user needs and nothing internal', () => {
    expect(Object.keys(api).sort()).toEqual([
      'AllowUnavailableSession',
      'FlaskRedisSessionStore',
      'GROUPS_METADATA',
      'GroupGuard',
      'Groups',
      'InjectSharedSessionRedis',
      'LOGIN_THROTTLE_STORAGE',
      'LoginThrottle',
      'LoginThrottledException',
      'RedisLoginThrottleStorage',
      'SHARED_SESSION_CONFIG',
      'SHARED_SESSION_EVENTS',
      'SHARED_SESSION_REDIS',
      'SessionCookieSigner',
      'SharedSessionHealthIndicator',
      'SharedSessionModule',
      'SharedSessionOptionsError',
      'SharedSessionService',
      'SkipCsrfCheck',
      'sessionEventId',
    ]);
  });
});

import { PROTOCOL_DEFAULTS } from '../../../protocol/testkit';
import { resolveSharedSessionOptions, SharedSessionModuleOptions, weakSecretWarnings } from './shared-session.options';

describe('resolveSharedSessionOptions', () => {
  it('takes idle and absolute timeouts (PROTOCOL.md section 12), and ttlSeconds as the old name of the idle one', () => {
    expect(resolveSharedSessionOptions({ secret: 's', idleTimeoutSeconds: 1800, absoluteTimeoutSeconds: 43200 })).toMatchObject({
      idleTimeoutSeconds: 1800,
      absoluteTimeoutSeconds: 43200,
      ttlSeconds: 1800,
    });
    expect(resolveSharedSessionOptions({ secret: 's', ttlSeconds: 600 })).toMatchObject({
      idleTimeoutSeconds: 600,
      absoluteTimeoutSeconds: null,
    });
    expect(
      resolveSharedSessionOptions({ secret: 's', idleTimeoutSeconds: 5, absoluteTimeoutSeconds: 5, touchAfterSeconds: 1 }),
    ).toMatchObject({
      absoluteTimeoutSeconds: 5,
    });
  });

  it('makes the default touchAfterSeconds follow the idle timeout (PROTOCOL.md section 12), so a short idle timeout alone starts', () => {
    const touchAfter = (idleTimeoutSeconds: number) => resolveSharedSessionOptions({ secret: 's', idleTimeoutSeconds }).touchAfterSeconds;
    expect(touchAfter(2)).toBe(1); // half of it
    expect(touchAfter(30)).toBe(15);
    expect(touchAfter(60)).toBe(30);
    expect(touchAfter(1800)).toBe(180); // a tenth, at least a minute
    expect(touchAfter(31 * 86400)).toBe(31 * 8640); // about 3 days
    expect(resolveSharedSessionOptions({ secret: 's', ttlSeconds: 2 }).touchAfterSeconds).toBe(1);
    // An explicit value is kept, and an explicit bad one is still an error that names it.
    expect(resolveSharedSessionOptions({ secret: 's', idleTimeoutSeconds: 2, touchAfterSeconds: 0 }).touchAfterSeconds).toBe(0);
    expect(() => resolveSharedSessionOptions({ secret: 's', idleTimeoutSeconds: 2, touchAfterSeconds: 60 })).toThrow(
      /"touchAfterSeconds" must be .* less than idleTimeoutSeconds/,
    );
  });

  it('fills in the documented defaults', () => {
    expect(resolveSharedSessionOptions({ secret: 's' })).toEqual({
      secret: 's',
      secretFallbacks: [],
      salt: PROTOCOL_DEFAULTS.salt,
      keyPrefix: PROTOCOL_DEFAULTS.keyPrefix,
      cookieName: PROTOCOL_DEFAULTS.cookieName,
      idleTimeoutSeconds: PROTOCOL_DEFAULTS.ttlSeconds,
      absoluteTimeoutSeconds: null,
      ttlSeconds: PROTOCOL_DEFAULTS.ttlSeconds,
      redis: 'redis://127.0.0.1:6379',
      keyLayout: 'v1',
      cookie: { path: '/', domain: undefined, secure: false, httpOnly: true, sameSite: 'lax', persistent: true },
      touch: true,
      touchAfterSeconds: 31 * 8640, // follows the idle timeout (31 days): a tenth of it
      proxy: undefined,
      csrf: { enabled: true, trustedOrigins: [] },
      userIdField: 'username',
      maxSessionsPerUser: 0,
      loginMetadata: { ip: false, userAgent: false },
      revocation: { wait: false, timeoutMs: 500, barrierIntervalMs: 0 },
      loginThrottle: null,
      events: { log: false, includeUser: false, listener: null },
      metrics: null,
    });
  });

  it('takes metrics: true for the default registry, { registry } for a given one', () => {
    const registry = { getSingleMetric: () => undefined, registerMetric: () => undefined };
    expect(resolveSharedSessionOptions({ secret: 's', metrics: false }).metrics).toBeNull();
    expect(resolveSharedSessionOptions({ secret: 's', metrics: true }).metrics).toEqual({ registry: null });
    expect(resolveSharedSessionOptions({ secret: 's', metrics: {} }).metrics).toEqual({ registry: null });
    expect(resolveSharedSessionOptions({ secret: 's', metrics: { registry } }).metrics).toEqual({ registry });
    expect(resolveSharedSessionOptions({ secret: 's', revocation: { barrierIntervalMs: 5000 } }).revocation.barrierIntervalMs).toBe(5000);
  });

  const bad: [string, Partial<SharedSessionModuleOptions> | Record<string, unknown>, RegExp][] = [
    ['a missing secret', {}, /"secret"/],
    ['an empty secret', { secret: '' }, /"secret" must be a non-empty string/],
    ['an empty fallback', { secret: 's', secretFallbacks: ['ok', ''] }, /"secretFallbacks\[1\]"/],
    ['fallbacks that are not an array', { secret: 's', secretFallbacks: 'old' }, /"secretFallbacks"/],
    ['an empty salt', { secret: 's', salt: '' }, /"salt"/],
    ['a zero TTL', { secret: 's', ttlSeconds: 0 }, /"ttlSeconds"/],
    ['a negative TTL', { secret: 's', ttlSeconds: -5 }, /"ttlSeconds"/],
    ['a fractional TTL', { secret: 's', ttlSeconds: 1.5 }, /"ttlSeconds"/],
    ['a TTL given as text', { secret: 's', ttlSeconds: '3600' }, /"ttlSeconds"/],
    ['a zero idle timeout', { secret: 's', idleTimeoutSeconds: 0 }, /"idleTimeoutSeconds" must be a positive whole number/],
    ['a negative idle timeout', { secret: 's', idleTimeoutSeconds: -1 }, /"idleTimeoutSeconds"/],
    ['an idle timeout given as text', { secret: 's', idleTimeoutSeconds: '1800' }, /"idleTimeoutSeconds"/],
    ['a NaN absolute timeout', { secret: 's', absoluteTimeoutSeconds: NaN }, /"absoluteTimeoutSeconds" must be a positive whole number/],
    ['a negative absolute timeout', { secret: 's', absoluteTimeoutSeconds: -3600 }, /"absoluteTimeoutSeconds"/],
    [
      'an absolute timeout shorter than the idle one',
      { secret: 's', idleTimeoutSeconds: 1800, absoluteTimeoutSeconds: 900 },
      /"absoluteTimeoutSeconds" must be at least idleTimeoutSeconds/,
    ],
    ['an absolute timeout shorter than the default idle one', { secret: 's', absoluteTimeoutSeconds: 3600 }, /"absoluteTimeoutSeconds"/],
    ['both ttlSeconds and its new name', { secret: 's', ttlSeconds: 60, idleTimeoutSeconds: 60 }, /"ttlSeconds" is the old name/],
    [
      'a touchAfterSeconds as long as the idle timeout',
      { secret: 's', idleTimeoutSeconds: 60, touchAfterSeconds: 60 },
      /"touchAfterSeconds" must be .* less than idleTimeoutSeconds/,
    ],
    ['an empty prefix', { secret: 's', keyPrefix: '' }, /"keyPrefix"/],
    ['a prefix with a space', { secret: 's', keyPrefix: 'my prefix' }, /"keyPrefix"/],
    ['a prefix with a newline', { secret: 's', keyPrefix: 'p\r\nFLUSHALL' }, /"keyPrefix"/],
    ['a prefix that is too long', { secret: 's', keyPrefix: 'p'.repeat(65) }, /"keyPrefix"/],
    ['a cookie name with a separator', { secret: 's', cookieName: 'my;session' }, /"cookieName"/],
    ['a __Host- name without Secure', { secret: 's', cookieName: '__Host-session' }, /"cookieName" '__Host-' names need/],
    [
      'a __Host- name with a Domain',
      { secret: 's', cookieName: '__Host-session', cookie: { secure: true, domain: 'example.com' } },
      /"cookieName" '__Host-' names need/,
    ],
    [
      'a __Host- name with another Path',
      { secret: 's', cookieName: '__Host-session', cookie: { secure: true, path: '/app' } },
      /"cookieName" '__Host-' names need/,
    ],
    ['a __Secure- name without Secure', { secret: 's', cookieName: '__Secure-session' }, /"cookieName" '__Secure-' names need/],
    ['a redis URL of another scheme', { secret: 's', redis: 'http://127.0.0.1:6379' }, /"redis"/],
    ['a cookie path without a slash', { secret: 's', cookie: { path: 'app' } }, /"cookie.path"/],
    ['SameSite=None without Secure', { secret: 's', cookie: { sameSite: 'none' } }, /"cookie.sameSite"/],
    ['a non-boolean httpOnly', { secret: 's', cookie: { httpOnly: 'yes' } }, /"cookie.httpOnly"/],
    ['an empty userIdField', { secret: 's', userIdField: '' }, /"userIdField"/],
    ['a fractional maxSessionsPerUser', { secret: 's', maxSessionsPerUser: 2.5 }, /"maxSessionsPerUser"/],
    ['a negative maxSessionsPerUser', { secret: 's', maxSessionsPerUser: -1 }, /"maxSessionsPerUser"/],
    ['an unknown loginMetadata key', { secret: 's', loginMetadata: { email: true } }, /"loginMetadata.email"/],
    ['a non-boolean loginMetadata.ip', { secret: 's', loginMetadata: { ip: 'yes' } }, /"loginMetadata.ip"/],
    ['a zero revocation.timeoutMs', { secret: 's', revocation: { timeoutMs: 0 } }, /"revocation.timeoutMs"/],
    ['a non-boolean revocation.wait', { secret: 's', revocation: { wait: 1 } }, /"revocation.wait"/],
    ['a barrier every 10 ms', { secret: 's', revocation: { barrierIntervalMs: 10 } }, /"revocation.barrierIntervalMs"/],
    ['a fractional barrier interval', { secret: 's', revocation: { barrierIntervalMs: 1000.5 } }, /"revocation.barrierIntervalMs"/],
    ['metrics that are a string', { secret: 's', metrics: 'on' }, /"metrics" must be true, false or an object/],
    ['an unknown metrics option', { secret: 's', metrics: { prefix: 'x' } }, /"metrics.prefix" is not a known option/],
    ['a metrics registry that is none', { secret: 's', metrics: { registry: {} } }, /"metrics.registry" must be a prom-client Registry/],
    ['a negative touchAfterSeconds', { secret: 's', touchAfterSeconds: -1 }, /"touchAfterSeconds"/],
    ['a touchAfterSeconds as long as the TTL', { secret: 's', ttlSeconds: 60, touchAfterSeconds: 60 }, /"touchAfterSeconds"/],
    ['an unknown option (a typo)', { secret: 's', ttl: 5 }, /"ttl" is not a known option/],
    ['a csrf that is not an object', { secret: 's', csrf: false }, /"csrf" must be an object/],
    [
      'an unknown csrf option',
      { secret: 's', csrf: { trustedOrigin: ['https://a.example'] } },
      /"csrf.trustedOrigin" is not a known option/,
    ],
    ['a non-boolean csrf.enabled', { secret: 's', csrf: { enabled: 'no' } }, /"csrf.enabled"/],
    ['trusted origins that are not an array', { secret: 's', csrf: { trustedOrigins: 'https://a.example' } }, /"csrf.trustedOrigins"/],
    [
      'a trusted origin with a path',
      { secret: 's', csrf: { trustedOrigins: ['https://a.example/app'] } },
      /"csrf.trustedOrigins\[0\]" must be an origin/,
    ],
    [
      'a trusted origin with a wildcard',
      { secret: 's', csrf: { trustedOrigins: ['https://ok.example', 'https://*.example'] } },
      /"csrf.trustedOrigins\[1\]"/,
    ],
    ['a trusted origin without a scheme', { secret: 's', csrf: { trustedOrigins: ['a.example'] } }, /"csrf.trustedOrigins\[0\]"/],
    ['a trusted origin of another scheme', { secret: 's', csrf: { trustedOrigins: ['ftp://a.example'] } }, /"csrf.trustedOrigins\[0\]"/],
    ['the null origin as trusted', { secret: 's', csrf: { trustedOrigins: ['null'] } }, /"csrf.trustedOrigins\[0\]"/],
    ['an unknown key layout', { secret: 's', keyLayout: 'compakt' }, /"keyLayout" must be 'v1', 'cluster' or 'compact'/],
    ['a brace in the prefix of the compact layout', { secret: 's', keyLayout: 'compact', keyPrefix: 'app{' }, /"keyPrefix".*'compact'/],
  ];
  it.each(bad)('rejects %s, naming the option', (_what, options, message) => {
    expect(() => resolveSharedSessionOptions(options as SharedSessionModuleOptions)).toThrow(message);
  });

  it("accepts keyLayout 'compact' (PROTOCOL.md section 15) on one Redis and on a cluster", () => {
    expect(resolveSharedSessionOptions({ secret: 's', keyLayout: 'compact' }).keyLayout).toBe('compact');
    const onCluster = { secret: 's', keyLayout: 'compact' as const, redis: { cluster: [{ host: '127.0.0.1', port: 7000 }] } };
    expect(resolveSharedSessionOptions(onCluster).keyLayout).toBe('compact');
  });

  it('accepts prefixes with colons and Redis Cluster hash tags', () => {
    expect(resolveSharedSessionOptions({ secret: 's', keyPrefix: '{app}:session' }).keyPrefix).toBe('{app}:session');
  });

  it('takes trusted origins as a browser writes them: lower-case, without a trailing slash', () => {
    const csrf = resolveSharedSessionOptions({
      secret: 's',
      csrf: { trustedOrigins: ['https://Admin.Example.com/', 'http://127.0.0.1:8089'] },
    }).csrf;
    expect(csrf).toEqual({ enabled: true, trustedOrigins: ['https://admin.example.com', 'http://127.0.0.1:8089'] });
  });
});

describe('weakSecretWarnings', () => {
  const strong = 'k'.repeat(32);

  it('says nothing about secrets of 32 bytes or more', () => {
    expect(weakSecretWarnings({ secret: strong, secretFallbacks: ['é'.repeat(16)] })).toEqual([]);
  });

  it('names each secret shorter than 32 bytes and its length, never the secret itself', () => {
    const warnings = weakSecretWarnings({ secret: 'short-secret', secretFallbacks: [strong, 'old-but-short'] });
    expect(warnings).toHaveLength(2);
    expect(warnings[0]).toMatch(/^option "secret" is 12 bytes long: a secret shorter than 32 bytes can be guessed offline/);
    expect(warnings[1]).toMatch(/^option "secretFallbacks\[1\]" is 13 bytes long/);
    for (const warning of warnings) {
      expect(warning).not.toContain('short-secret');
      expect(warning).not.toContain('old-but-short');
    }
  });

  it('counts bytes, not characters', () => {
    expect(weakSecretWarnings({ secret: 'é'.repeat(15), secretFallbacks: [] })[0]).toMatch(/is 30 bytes long/);
  });
});

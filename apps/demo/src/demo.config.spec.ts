import { demoConfig, DEV_SECRET, trustProxyValue } from './demo.config';

describe('demoConfig: the signing secret (issue 12, finding 6)', () => {
  const strong = 'Qm9xLCBub3QgYSByZWFsIHNlY3JldCwgYnV0IGxvbmc=';

  it('outside development mode, refuses to start without SESSION_SECRET', () => {
    expect(() => demoConfig({})).toThrow(/^SESSION_SECRET is not set: set it to 32 or more random bytes .* or DEMO_DEV_MODE=1/);
  });

  it('outside development mode, refuses the published demo secret, as the secret or as a fallback', () => {
    for (const env of [
      { SESSION_SECRET: DEV_SECRET },
      { SESSION_SECRET: strong, SESSION_SECRET_FALLBACKS: `old, ${DEV_SECRET}` },
      { SESSION_SECRET: DEV_SECRET, DEMO_DEV_MODE: 'true' },
    ]) {
      expect(() => demoConfig(env)).toThrow(
        /is the published demo secret "demo-secret-change-me", with which anyone can forge a session cookie/,
      );
    }
  });

  it('takes a secret of the operator’s own', () => {
    expect(demoConfig({ SESSION_SECRET: strong }).session.secret).toBe(strong);
  });

  it('in development mode (DEMO_DEV_MODE=1), signs with the published secret unless told otherwise', () => {
    expect(demoConfig({ DEMO_DEV_MODE: '1' }).session.secret).toBe(DEV_SECRET);
    expect(demoConfig({ DEMO_DEV_MODE: '1', SESSION_SECRET: DEV_SECRET }).session.secret).toBe(DEV_SECRET);
    expect(demoConfig({ DEMO_DEV_MODE: '1', SESSION_SECRET: strong }).session.secret).toBe(strong);
  });
});

describe('demoConfig: session timeouts from the environment (PROTOCOL.md section 12)', () => {
  const dev = { DEMO_DEV_MODE: '1' };

  it('leaves the library defaults when unset, and "keep me signed in" to 30 days unused, a year at most', () => {
    const config = demoConfig(dev);
    expect(config.session).toMatchObject({
      idleTimeoutSeconds: undefined,
      absoluteTimeoutSeconds: undefined,
      touchAfterSeconds: undefined,
    });
    expect(config.rememberMe).toEqual({ idleTimeoutSeconds: 30 * 86400, absoluteTimeoutSeconds: 365 * 86400 });
    // A logout or a group change answers once nginx has applied it.
    expect(config.session.revocation).toEqual({ wait: true, barrierIntervalMs: 5000 });
  });

  it('takes short timeouts for trying them out, and refreshes at least once per half the idle timeout', () => {
    const config = demoConfig({
      ...dev,
      SESSION_IDLE_TIMEOUT_SECONDS: '2',
      SESSION_ABSOLUTE_TIMEOUT_SECONDS: '5',
      REMEMBER_ME_IDLE_TIMEOUT_SECONDS: '3',
      REMEMBER_ME_ABSOLUTE_TIMEOUT_SECONDS: '8',
    });
    expect(config.session).toMatchObject({ idleTimeoutSeconds: 2, absoluteTimeoutSeconds: 5, touchAfterSeconds: 1 });
    expect(config.rememberMe).toEqual({ idleTimeoutSeconds: 3, absoluteTimeoutSeconds: 8 });
  });

  it('refuses a timeout that is not a whole number, naming the variable', () => {
    expect(() => demoConfig({ ...dev, SESSION_IDLE_TIMEOUT_SECONDS: 'soon' })).toThrow(
      /SESSION_IDLE_TIMEOUT_SECONDS must be a whole number/,
    );
    expect(() => demoConfig({ ...dev, REMEMBER_ME_ABSOLUTE_TIMEOUT_SECONDS: '-1' })).toThrow(/REMEMBER_ME_ABSOLUTE_TIMEOUT_SECONDS/);
    expect(() => demoConfig({ ...dev, REMEMBER_ME_IDLE_TIMEOUT_SECONDS: '0' })).toThrow(
      /REMEMBER_ME_IDLE_TIMEOUT_SECONDS must be a positive/,
    );
    expect(() => demoConfig({ ...dev, REMEMBER_ME_IDLE_TIMEOUT_SECONDS: '60', REMEMBER_ME_ABSOLUTE_TIMEOUT_SECONDS: '30' })).toThrow(
      /REMEMBER_ME_ABSOLUTE_TIMEOUT_SECONDS must be at least REMEMBER_ME_IDLE_TIMEOUT_SECONDS/,
    );
  });
});

describe('demoConfig: login throttling and trust proxy (issue 23, item 6)', () => {
  const dev = { DEMO_DEV_MODE: '1' };

  it('turns login throttling on, unless LOGIN_THROTTLE=off; trusts nginx on loopback unless TRUST_PROXY says otherwise', () => {
    expect(demoConfig(dev)).toMatchObject({ trustProxy: 'loopback', session: { loginThrottle: true } });
    expect(demoConfig({ ...dev, LOGIN_THROTTLE: 'off', TRUST_PROXY: '10.0.0.0/8' })).toMatchObject({
      trustProxy: '10.0.0.0/8',
      session: { loginThrottle: false },
    });
  });
});

describe('demoConfig: the cookie behind TLS (issue 23, finding 2: the __Host- prefix)', () => {
  it('SESSION_COOKIE_SECURE=1 makes the cookie Secure and trusts the proxy; unset, neither', () => {
    const secure = demoConfig({ DEMO_DEV_MODE: '1', SESSION_COOKIE_NAME: '__Host-session', SESSION_COOKIE_SECURE: '1' });
    expect(secure.session).toMatchObject({ cookieName: '__Host-session', cookie: { secure: true }, proxy: true });
    const plain = demoConfig({ DEMO_DEV_MODE: '1' }).session;
    expect(plain).not.toHaveProperty('cookie');
    expect(plain).not.toHaveProperty('proxy');
  });
});

describe('demoConfig: the HTTP platform (issue 25: DEMO_ADAPTER)', () => {
  const dev = { DEMO_DEV_MODE: '1' };

  it('runs on Express unless DEMO_ADAPTER=fastify; any other value stops the demo, naming the variable', () => {
    expect(demoConfig(dev).adapter).toBe('express');
    expect(demoConfig({ ...dev, DEMO_ADAPTER: 'express' }).adapter).toBe('express');
    expect(demoConfig({ ...dev, DEMO_ADAPTER: 'fastify' }).adapter).toBe('fastify');
    for (const bad of ['Fastify', 'koa', ' fastify']) {
      expect(() => demoConfig({ ...dev, DEMO_ADAPTER: bad })).toThrow(`DEMO_ADAPTER must be express or fastify, not "${bad}"`);
    }
  });

  it('takes TRUST_PROXY as Express does; on Fastify, which trusts nobody by a number of hops, a number stops the demo', () => {
    expect(['true', 'false', '2', 'loopback', '10.0.0.0/8, 127.0.0.1'].map(trustProxyValue)).toEqual([
      true,
      false,
      2,
      'loopback',
      '10.0.0.0/8, 127.0.0.1',
    ]);
    expect(demoConfig({ ...dev, DEMO_ADAPTER: 'fastify', TRUST_PROXY: 'loopback' }).trustProxy).toBe('loopback');
    expect(demoConfig({ ...dev, TRUST_PROXY: '1' }).trustProxy).toBe('1');
    expect(() => demoConfig({ ...dev, DEMO_ADAPTER: 'fastify', TRUST_PROXY: '1' })).toThrow(
      /^TRUST_PROXY must be true, false or addresses on Fastify .*not a number of hops \("1"\)/,
    );
  });
});

import { demoConfig, DEV_SECRET } from './demo.config';

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

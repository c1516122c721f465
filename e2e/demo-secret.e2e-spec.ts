import { join } from 'node:path';
import { REPO_ROOT } from '../stack/nginx-conf';
import { freePort } from '../stack/ports';
import { RedisServer } from '../stack/redis-server';
import { ServerProcess } from '../stack/server-process';

/** The built demo app, with only the environment given here (none of the test run's, DEMO_DEV_MODE above all). */
async function startDemoApp(env: NodeJS.ProcessEnv, redisUrl: string): Promise<ServerProcess> {
  const port = await freePort();
  const appEnv = { PATH: process.env.PATH, APP_HOST: '127.0.0.1', APP_PORT: String(port), REDIS_URL: redisUrl, ...env };
  return ServerProcess.node(join(REPO_ROOT, 'apps/demo/dist/main.js'), appEnv, { port, path: '/app' });
}

describe('the demo app and the published demo secret (issue 12, finding 6)', () => {
  let redis: RedisServer;
  beforeAll(async () => {
    redis = await RedisServer.start();
  });
  afterAll(() => redis.dispose());

  it.each([
    ['no SESSION_SECRET', {}, /SESSION_SECRET is not set/],
    ['the published secret', { SESSION_SECRET: 'demo-secret-change-me' }, /is the published demo secret "demo-secret-change-me"/],
    [
      'the published secret as a fallback',
      { SESSION_SECRET: 'x'.repeat(40), SESSION_SECRET_FALLBACKS: 'demo-secret-change-me' },
      /published demo secret/,
    ],
    [
      'the published secret with NODE_ENV=development (not the switch)',
      { SESSION_SECRET: 'demo-secret-change-me', NODE_ENV: 'development' },
      /published demo secret/,
    ],
  ])('refuses to start outside development mode with %s, and says why', async (_what, env, why) => {
    const started = await startDemoApp(env, redis.url).catch((error: Error) => error);
    if (started instanceof ServerProcess) await started.stop(); // it should not have started: fail below, leaving nothing behind
    expect(started).toBeInstanceOf(Error);
    expect((started as Error).message).toMatch(new RegExp(`exited \\(1\\):[\\s\\S]*${why.source}`));
  });

  it('starts with a secret of its own, and with the published one in development mode (DEMO_DEV_MODE=1), saying so; secrets never reach the log', async () => {
    const own = 'an-operator-secret-of-more-than-32-bytes';
    const production = await startDemoApp({ SESSION_SECRET: own }, redis.url);
    await production.stop();
    expect(production.output).not.toContain(own);
    expect(production.output).not.toMatch(/DEMO_DEV_MODE|bytes long/);

    const dev = await startDemoApp({ DEMO_DEV_MODE: '1' }, redis.url);
    await dev.stop();
    expect(dev.output).toMatch(/DEMO_DEV_MODE=1: a development run, signing with the published demo secret/);
    // The library's start-up warning: the published secret is 21 bytes.
    expect(dev.output).toMatch(/option "secret" is 21 bytes long/);
    expect(dev.output).not.toContain('demo-secret-change-me');
  });
});

import Redis from 'ioredis';
import { RedisServer } from '../../../stack/redis-server';
import { waitFor } from '../../../stack/wait';
import { sessionRepository } from '../src/flask-redis-session.store';
import { RedisLoginThrottleStorage } from '../src/login-throttle.storage';
import { REDIS_CLIENT_DEFAULTS } from '../src/redis-client';
import { cli } from './cli-runner';
import { quietLogger } from './support';

/**
 * The operator CLI's login-ban commands (issue 23, item 6) as a user runs
 * them: the built dist/cli.js in a child process, on a real redis-server
 * where the library's storage made the bans.
 */
const PREFIX = 'cli_throttle';
const LIMIT = { max: 2, windowMs: 60_000, banMs: 300_000 };

describe('npx nest-resty-shared-session bans / lift-ban', () => {
  let server: RedisServer;
  let client: Redis;
  let storage: RedisLoginThrottleStorage;
  let env: Record<string, string>;

  beforeAll(async () => {
    server = await RedisServer.start();
    client = new Redis(server.url, REDIS_CLIENT_DEFAULTS);
    storage = new RedisLoginThrottleStorage(client, sessionRepository({ client, keyPrefix: PREFIX, logger: quietLogger }));
    await waitFor('client ready', async () => client.status === 'ready');
    env = { REDIS_URL: server.url, SESSION_KEY_PREFIX: PREFIX };
  });
  afterAll(async () => {
    client.disconnect();
    await server.dispose();
  });
  beforeEach(() => client.flushall());

  async function ban(address: string, user?: string): Promise<void> {
    for (let i = 0; i < LIMIT.max; i++) await storage.failed(address, user, LIMIT);
  }

  it('lists the bans (text and --json); "no ban" when there is none', async () => {
    expect(await cli(['bans'], env)).toEqual({ status: 0, stdout: 'no ban\n', stderr: '' });
    await ban('203.0.113.66', 'joe@example.com');
    await ban('10.9.9.9');
    const text = await cli(['bans'], env);
    expect(text).toMatchObject({ status: 0, stderr: '' });
    expect(text.stdout).toMatch(
      /^joe@example\.com at 203\.0\.113\.66 {2}until \S+Z\naddress 10\.9\.9\.9 {2}until \S+Z\n$|^address 10\.9\.9\.9 {2}until \S+Z\njoe@example\.com at 203\.0\.113\.66 {2}until \S+Z\n$/,
    );
    const json = JSON.parse((await cli(['--json', 'bans'], env)).stdout);
    expect(json.bans).toHaveLength(2);
    expect(json.bans).toContainEqual({ user: 'joe@example.com', address: '203.0.113.66', until: expect.any(String) });
    expect(json.bans).toContainEqual({ address: '10.9.9.9', until: expect.any(String) });
  });

  it('lift-ban <user> lifts the user’s bans at every address; lift-ban <address> the address’s; the login is let through', async () => {
    await ban('10.0.0.1', 'joe@example.com');
    await ban('10.0.0.2', 'joe@example.com');
    await ban('10.9.9.9');
    expect(await storage.banned('10.0.0.1', 'joe@example.com')).toBeGreaterThan(0);
    const lifted = await cli(['lift-ban', 'joe@example.com'], env);
    expect(lifted).toMatchObject({ status: 0, stderr: '' });
    expect(lifted.stdout).toMatch(/^lifted 2 ban\(s\) of joe@example\.com\n/);
    expect(await storage.banned('10.0.0.1', 'joe@example.com')).toBe(0);
    expect(await storage.banned('10.0.0.2', 'joe@example.com')).toBe(0);
    expect(await storage.banned('10.9.9.9')).toBeGreaterThan(0);
    expect(JSON.parse((await cli(['--json', 'lift-ban', '10.9.9.9'], env)).stdout)).toEqual({
      lifted: [{ address: '10.9.9.9', until: expect.any(String) }],
    });
    expect(await storage.banned('10.9.9.9')).toBe(0);
    expect(await cli(['lift-ban', 'nobody'], env)).toEqual({ status: 0, stdout: 'lifted 0 ban(s) of nobody\n', stderr: '' });
  });

  it('exit codes as the other commands: 2 for an empty subject, 1 when Redis cannot be reached', async () => {
    expect(await cli(['lift-ban', ''], env)).toMatchObject({
      status: 2,
      stderr: expect.stringContaining('give a user id or a client address'),
    });
    expect((await cli(['lift-ban'], env)).stderr).toMatch(/missing required argument 'subject'/);
    const down = await cli(['bans'], { ...env, REDIS_URL: 'redis://127.0.0.1:1' });
    expect(down.status).toBe(1);
    expect(down.stderr).toContain('cannot reach Redis');
  });
});

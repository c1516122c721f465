import Redis from 'ioredis';
import {
  compactKey,
  groupGenerationKey,
  invalidationChannel,
  newTimedSessionId,
  notBeforeKey,
  sessionKeys,
  userIndexKey,
  writeSession,
} from '../../../protocol/testkit';
import { RedisServer } from '../../../stack/redis-server';
import { waitFor } from '../../../stack/wait';
import { FlaskRedisSessionStore } from '../src/flask-redis-session.store';
import { REDIS_CLIENT_DEFAULTS } from '../src/redis-client';
import { SessionCookieSigner } from '../src/session-cookie-signer';
import { cli } from './cli-runner';

/**
 * The operator tool as a user runs it: the built dist/cli.js (scripts/test.sh
 * builds first; so must you) in a child process, against a real
 * redis-server, its output and exit code. PROTOCOL.md section 13.
 */
const PREFIX = 'cli_prefix';

describe('the operator CLI (npx nest-resty-shared-session) against a real redis-server', () => {
  let server: RedisServer;
  let admin: Redis;
  let client: Redis;
  let store: FlaskRedisSessionStore;
  let env: Record<string, string>;

  beforeAll(async () => {
    server = await RedisServer.start();
    admin = new Redis(server.url);
    client = new Redis(server.url, REDIS_CLIENT_DEFAULTS);
    store = new FlaskRedisSessionStore({
      client,
      signer: new SessionCookieSigner({ secret: 'cli-secret' }),
      keyPrefix: PREFIX,
      logger: { error: jest.fn(), warn: jest.fn(), log: jest.fn() },
    });
    await waitFor('client ready', async () => client.status === 'ready');
    env = { REDIS_URL: server.url, SESSION_KEY_PREFIX: PREFIX };
  });
  afterAll(async () => {
    client.disconnect();
    admin.disconnect();
    await server.dispose();
  });
  beforeEach(() => admin.flushall());

  async function login(user: string, groups: string[]): Promise<string> {
    const sid = newTimedSessionId(Date.now());
    await new Promise<void>((ok, fail) =>
      store.set(sid, { cookie: { originalMaxAge: 1000 }, username: user, groups } as never, (err) => (err ? fail(err) : ok())),
    );
    return sid;
  }

  it('lists a user’s sessions (text and --json), none for an unknown user, and finds v1 sessions with --scan', async () => {
    const a = await login('joe@example.com', ['one', 'three']);
    const flask = '3f1d7c9e-8a4b-4c2d-9e6f-0a1b2c3d4e5f';
    await writeSession(admin, PREFIX, flask, { username: 'joe@example.com', groups: ['one'] }, { signature: 'x'.repeat(27) });
    const text = await cli(['sessions', 'joe@example.com'], env);
    expect(text).toMatchObject({ status: 0, stderr: '' });
    expect(text.stdout).toContain(`${a}  created `);
    expect(text.stdout).toContain('groups one,three');
    expect(text.stdout).not.toContain(flask);
    const json = JSON.parse((await cli(['--json', 'sessions', 'joe@example.com', '--scan'], env)).stdout);
    expect(json.sessions.map((s: { sessionId: string }) => s.sessionId)).toEqual([a]);
    expect(json.untracked).toEqual([flask]);
    expect(await cli(['sessions', 'nobody@example.com'], env)).toEqual({
      status: 0,
      stdout: 'no live session for nobody@example.com\n',
      stderr: '',
    });
  });

  it('--layout compact (SESSION_KEY_LAYOUT): lists, regroups and revokes sessions of the compact layout; the v1-only commands are refused', async () => {
    const compact = new FlaskRedisSessionStore({
      client,
      signer: new SessionCookieSigner({ secret: 'cli-secret' }),
      keyPrefix: PREFIX,
      keyLayout: 'compact',
      logger: { error: jest.fn(), warn: jest.fn(), log: jest.fn() },
    });
    const sids = [newTimedSessionId(Date.now() - 1000), newTimedSessionId(Date.now())];
    for (const sid of sids) {
      await new Promise<void>((ok, fail) =>
        compact.set(sid, { cookie: { originalMaxAge: 1000 }, username: 'joe@example.com', groups: ['one'] } as never, (e) =>
          e ? fail(e) : ok(),
        ),
      );
    }
    const layoutEnv = { ...env, SESSION_KEY_LAYOUT: 'compact' };
    const listed = JSON.parse((await cli(['--json', 'sessions', 'joe@example.com'], layoutEnv)).stdout);
    expect(listed.sessions.map((s: { sessionId: string }) => s.sessionId)).toEqual(sids);
    expect(await cli(['revoke-session', sids[0]], layoutEnv)).toMatchObject({ status: 0, stdout: `ended session ${sids[0]}\n` });
    expect(await admin.exists(compactKey(PREFIX, sids[0]))).toBe(0);
    expect(await cli(['--layout', 'compact', 'revoke-user', 'joe@example.com'], env)).toMatchObject({
      status: 0,
      stdout: 'ended 1 session(s) of joe@example.com\n',
    });
    expect(await admin.exists(compactKey(PREFIX, sids[1]))).toBe(0);
    expect(await cli(['sessions', 'joe@example.com', '--scan'], layoutEnv)).toMatchObject({ status: 2 });
    expect(await cli(['clear-not-before'], layoutEnv)).toMatchObject({ status: 2, stderr: expect.stringContaining('compact layout') });
    expect(await cli(['--layout', 'compakt', 'sessions', 'x'], env)).toMatchObject({
      status: 2,
      stderr: expect.stringContaining('--layout'),
    });
    expect(await cli(['--layout', 'compact', '--prefix', 'a{b', 'sessions', 'x'], env)).toMatchObject({ status: 2 });
  });

  it('revoke-user ends every session of the user (with --scan, v1 ones too), flags beat the environment', async () => {
    const a = await login('joe@example.com', ['one']);
    const b = await login('joe@example.com', ['one']);
    const sam = await login('sam@example.com', ['two']);
    const flask = '3f1d7c9e-8a4b-4c2d-9e6f-0a1b2c3d4e5f';
    await writeSession(admin, PREFIX, flask, { username: 'joe@example.com', groups: ['one'] }, { signature: 'x'.repeat(27) });
    const out = await cli(['revoke-user', 'joe@example.com', '--except', b, '--scan', '--prefix', PREFIX], {
      REDIS_URL: server.url,
      SESSION_KEY_PREFIX: 'other',
    });
    expect(out).toEqual({ status: 0, stdout: 'ended 2 session(s) of joe@example.com\n', stderr: '' });
    for (const sid of [a, flask]) expect(await admin.exists(sessionKeys(PREFIX, sid).data)).toBe(0);
    for (const sid of [b, sam]) expect(await admin.exists(sessionKeys(PREFIX, sid).data)).toBe(1);
    expect(await admin.zrange(userIndexKey(PREFIX, 'joe@example.com'), 0, -1)).toEqual([b]);
  });

  it('revoke-before sets the mark and announces it; clear-not-before lifts it; purge-group makes a new generation', async () => {
    const sub = new Redis(server.url);
    const heard: string[] = [];
    sub.on('message', (_c, m: string) => heard.push(m));
    await sub.subscribe(invalidationChannel(PREFIX));
    try {
      const out = await cli(['revoke-before', '2026-01-02T03:04:05.678Z'], env);
      expect(out).toEqual({ status: 0, stdout: 'not-before mark: 2026-01-02T03:04:05.678Z\n', stderr: '' });
      expect(await admin.get(notBeforeKey(PREFIX))).toBe(String(Date.parse('2026-01-02T03:04:05.678Z')));
      expect((await cli(['clear-not-before'], env)).status).toBe(0);
      expect(await admin.get(notBeforeKey(PREFIX))).toBeNull();
      expect(await cli(['purge-group', 'one'], env)).toEqual({ status: 0, stdout: 'group one: cache generation 1\n', stderr: '' });
      expect(await admin.get(groupGenerationKey(PREFIX, 'one'))).toBe('1');
      await waitFor('notices', async () => heard.length === 3);
      expect(heard).toEqual([`!not-before ${Date.parse('2026-01-02T03:04:05.678Z')}`, '!not-before 0', '!generation 1 one']);
    } finally {
      sub.disconnect();
    }
  });

  it('clear-not-before brings back the untimed sessions nobody used under the mark; those read meanwhile were ended (docs/control.md)', async () => {
    const [used, unused] = ['3f1d7c9e-8a4b-4c2d-9e6f-0a1b2c3d4e5f', '7a6b5c4d-3e2f-4a1b-9c8d-7e6f5a4b3c2d'];
    for (const sid of [used, unused]) {
      await writeSession(admin, PREFIX, sid, { username: 'flask-user', groups: ['one'] }, { signature: 'x'.repeat(27) });
    }
    const read = (sid: string) => new Promise((ok, fail) => store.get(sid, (err, s) => (err ? fail(err) : ok(s))));
    expect((await cli(['revoke-before', 'now'], env)).status).toBe(0);
    expect(await read(used)).toBeNull();
    expect(await admin.exists(sessionKeys(PREFIX, used).data)).toBe(0);
    expect((await cli(['clear-not-before'], env)).status).toBe(0);
    expect(await read(unused)).toMatchObject({ username: 'flask-user' });
    expect(await read(used)).toBeNull();
  });

  it('--wait reports the acknowledgements, and exits 3 when a subscribed reader does not answer in time', async () => {
    expect((await cli(['purge-group', 'one', '--wait'], env)).stdout).toContain('acknowledged by 0 of 0 nginx subscriber(s)\n');
    const silent = new Redis(server.url);
    await silent.subscribe(invalidationChannel(PREFIX));
    try {
      const out = await cli(['purge-group', 'one', '--wait', '--timeout', '50'], env);
      expect(out).toEqual({
        status: 3,
        stdout: 'group one: cache generation 2\nacknowledged by 0 of 1 nginx subscriber(s) (timed out)\n',
        stderr: '',
      });
    } finally {
      silent.disconnect();
    }
  });

  it('says what is wrong, with exit 2 for bad usage and 1 when Redis cannot be reached (never printing a password)', async () => {
    const badDate = await cli(['revoke-before', 'yesterday-ish'], env);
    expect(badDate.status).toBe(2);
    expect(badDate.stderr).toMatch(/not a date: yesterday-ish/);
    const future = await cli(['revoke-before', '2999-01-01T00:00:00Z'], env);
    expect([future.status, future.stderr]).toEqual([
      2,
      'nest-resty-shared-session: revokeIssuedBefore: date must be a valid date, not in the future\n',
    ]);
    expect((await cli(['purge-group', ''], env)).status).toBe(2);
    expect((await cli(['frobnicate'], env)).status).toBe(2);
    expect((await cli(['sessions'], env)).stderr).toMatch(/missing required argument 'userId'/);
    const down = await cli(['sessions', 'joe'], { REDIS_URL: 'redis://:hunter2@127.0.0.1:1' });
    expect(down).toEqual({ status: 1, stdout: '', stderr: 'nest-resty-shared-session: cannot reach Redis at redis://:***@127.0.0.1:1\n' });
    expect((await cli(['--help'])).status).toBe(0);
  });
});

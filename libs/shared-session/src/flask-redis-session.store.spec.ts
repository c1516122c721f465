import Redis from 'ioredis';
import type { SessionData } from 'express-session';
import { RedisServer } from '../../../stack/redis-server';
import { waitFor } from '../../../stack/ports';
import { invalidationChannel, readSession, sessionKeyList, sessionKeys, signature, writeSession } from '../../../protocol/testkit';
import { FlaskRedisSessionStore } from './flask-redis-session.store';
import { SessionCookieSigner } from './session-cookie-signer';
import { REDIS_CLIENT_DEFAULTS } from './redis-client';

const SID = '3f1d7c9e-8a4b-4c2d-9e6f-0a1b2c3d4e5f';
const SECRET = 'fishes';
const SALT = 'app_session_salt';
const PREFIX = 'app_session_prefix';
const KEYS = sessionKeys(PREFIX, SID);
const quietLogger = { error: jest.fn(), warn: jest.fn(), log: jest.fn() };

function call<T>(fn: (cb: (err?: unknown, value?: T) => void) => void): Promise<T | undefined> {
  return new Promise((resolve, reject) => fn((err, value) => (err ? reject(err) : resolve(value))));
}

function session(data: Record<string, unknown>): SessionData {
  return { cookie: { originalMaxAge: 1000, path: '/' }, ...data } as unknown as SessionData;
}

describe('FlaskRedisSessionStore on a real redis-server', () => {
  let server: RedisServer;
  let client: Redis;
  let admin: Redis;
  let store: FlaskRedisSessionStore;
  const signer = new SessionCookieSigner({ secret: SECRET, salt: SALT });

  beforeAll(async () => {
    server = await RedisServer.start();
    client = new Redis(server.url, REDIS_CLIENT_DEFAULTS);
    admin = new Redis(server.url);
    store = new FlaskRedisSessionStore({ client, signer, keyPrefix: PREFIX, ttlSeconds: 3600, logger: quietLogger });
    await waitFor('client ready', async () => client.status === 'ready');
  });
  afterAll(async () => {
    client.disconnect();
    admin.disconnect();
    await server.dispose();
  });
  beforeEach(() => admin.flushall());

  async function expireAll(seconds: number): Promise<void> {
    for (const key of sessionKeyList(PREFIX, SID)) await admin.expire(key, seconds);
  }

  it('writes the three keys of PROTOCOL.md section 3 with the same TTL', async () => {
    await call((cb) => store.set(SID, session({ username: 'joe@example.com', groups: ['one', 'three'], theme: 'dark' }), cb));

    expect((await admin.keys('*')).sort()).toEqual(sessionKeyList(PREFIX, SID).sort());
    expect(await admin.type(KEYS.data)).toBe('string');
    expect(await admin.type(KEYS.signature)).toBe('string');
    expect(await admin.type(KEYS.groups)).toBe('set');
    const stored = await readSession(admin, PREFIX, SID);
    expect(stored.data).toEqual({ username: 'joe@example.com', groups: ['one', 'three'], theme: 'dark' });
    // The signature key holds exactly the cookie's <sig> part, as the protocol signs it.
    expect(stored.signature).toBe(signature(SID, SECRET, SALT));
    expect(stored.groups).toEqual(['one', 'three']);
    for (const ttl of Object.values(stored.ttl)) {
      expect(ttl).toBeGreaterThan(3590);
      expect(ttl).toBeLessThanOrEqual(3600);
    }
  });

  it('writes all keys in one MULTI/EXEC, in the protocol order', async () => {
    const monitor = await admin.monitor();
    const seen: string[] = [];
    monitor.on('monitor', (_time: string, args: string[]) => seen.push(args.join(' ')));
    await call((cb) => store.set(SID, session({ username: 'u', groups: ['g1', 'g2'] }), cb));
    await waitFor('EXEC in MONITOR', async () => seen.some((line) => line.startsWith('exec')));
    monitor.disconnect();
    const writes = seen.filter((line) => !line.startsWith('info') && !line.startsWith('monitor'));
    expect(writes.map((line) => line.split(' ')[0].toLowerCase())).toEqual(['multi', 'set', 'set', 'del', 'sadd', 'expire', 'publish', 'exec']);
    expect(writes[4]).toBe(`sadd ${KEYS.groups} g1 g2`);
  });

  it('keeps no groups key when the session has no groups, and removes a stale one', async () => {
    await call((cb) => store.set(SID, session({ username: 'u', groups: ['a'] }), cb));
    await call((cb) => store.set(SID, session({ username: 'u', groups: [] }), cb));
    expect(await admin.exists(KEYS.groups)).toBe(0);
    await call((cb) => store.set(SID, session({ username: 'u' }), cb));
    expect(await admin.exists(KEYS.groups)).toBe(0);
    expect(await admin.exists(KEYS.data)).toBe(1);
  });

  it('refuses groups that are not an array of strings, writing nothing', async () => {
    await expect(call((cb) => store.set(SID, session({ username: 'u', groups: 'one' }), cb))).rejects.toThrow(/groups/);
    await expect(call((cb) => store.set(SID, session({ username: 'u', groups: [1] }), cb))).rejects.toThrow(/groups/);
    expect(await admin.dbsize()).toBe(0);
  });

  it('reads what Flask wrote, keeping keys it does not know, and rebuilds the cookie from the TTL', async () => {
    const flask = { _permanent: true, username: 'sam', groups: ['two'], csrf: 'x' };
    await writeSession(admin, PREFIX, SID, flask, { signature: signature(SID, SECRET, SALT), ttl: 600 });
    const read = (await call<SessionData | null>((cb) => store.get(SID, cb))) as SessionData & Record<string, unknown>;
    expect(read).toMatchObject(flask);
    const expires = new Date(read.cookie.expires as unknown as string).getTime();
    expect(expires - Date.now()).toBeGreaterThan(590_000);
    expect(expires - Date.now()).toBeLessThanOrEqual(600_000);

    // Written back, the unknown keys survive.
    await call((cb) => store.set(SID, read, cb));
    expect((await readSession(admin, PREFIX, SID)).data).toEqual(flask);
  });

  it('treats missing data, or data that is not a JSON object, as no session', async () => {
    expect(await call((cb) => store.get(SID, cb))).toBeNull();
    for (const bad of ['not json', '[1,2]', '"text"', 'null', '42']) {
      await admin.set(KEYS.data, bad);
      expect(await call((cb) => store.get(SID, cb))).toBeNull();
    }
    expect(quietLogger.warn).toHaveBeenCalledWith(expect.stringContaining('not a JSON object'));
  });

  it('publishes the session id on <prefix>:invalidate when a session is written or destroyed (section 7)', async () => {
    const subscriber = new Redis(server.url);
    const heard: string[] = [];
    await subscriber.subscribe(invalidationChannel(PREFIX));
    subscriber.on('message', (_channel: string, message: string) => heard.push(message));
    await call((cb) => store.set(SID, session({ username: 'u', groups: ['g'] }), cb));
    await call((cb) => store.touch!(SID, session({}), cb));
    await call((cb) => store.destroy(SID, cb));
    await waitFor('two notices', async () => heard.length >= 2);
    subscriber.disconnect();
    // touch only extends the TTL: nothing nginx decided can have changed.
    expect(heard).toEqual([SID, SID]);
  });

  it('touch refreshes the TTL of all three keys once they have aged past touchAfterSeconds', async () => {
    await call((cb) => store.set(SID, session({ username: 'u', groups: ['g'] }), cb));
    // Read at once, a fresh session is not rewritten: touch is a no-op.
    await call((cb) => store.get(SID, cb));
    await expireAll(3590);
    await call((cb) => store.touch!(SID, session({}), cb));
    expect((await readSession(admin, PREFIX, SID)).ttl.groups).toBeLessThanOrEqual(3590);
    // Older than touchAfterSeconds (60 s by default): refreshed.
    await expireAll(10);
    await call((cb) => store.get(SID, cb));
    await call((cb) => store.touch!(SID, session({}), cb));
    for (const ttl of Object.values((await readSession(admin, PREFIX, SID)).ttl)) expect(ttl).toBeGreaterThan(3590);
  });

  it('with touch: false has no touch method, so express-session never refreshes the keys', () => {
    const untouched = new FlaskRedisSessionStore({ client, signer, touch: false, logger: quietLogger });
    expect(untouched.touch).toBeUndefined();
    expect(typeof store.touch).toBe('function');
  });

  it('destroy deletes all three keys', async () => {
    await call((cb) => store.set(SID, session({ username: 'u', groups: ['g'] }), cb));
    await call((cb) => store.destroy(SID, cb));
    expect(await admin.dbsize()).toBe(0);
  });

  it('fails calls while Redis is stopped, logs the fault once, and works again when it is back', async () => {
    quietLogger.error.mockClear();
    quietLogger.log.mockClear();
    await server.stop();
    await waitFor('client to notice', async () => !store.available);
    for (let i = 0; i < 5; i++) {
      await expect(call((cb) => store.get(SID, cb))).rejects.toBeDefined();
      await expect(call((cb) => store.set(SID, session({ username: 'u' }), cb))).rejects.toBeDefined();
    }
    expect(quietLogger.error).toHaveBeenCalledTimes(1);
    expect(quietLogger.error.mock.calls[0][0]).toMatch(/Redis unavailable/);

    await server.resume();
    await waitFor('client to reconnect', async () => store.available, 5000);
    await admin.ping().catch(() => undefined);
    await call((cb) => store.set(SID, session({ username: 'u' }), cb));
    expect(await call((cb) => store.get(SID, cb))).toMatchObject({ username: 'u' });
    expect(quietLogger.log).toHaveBeenCalledWith(expect.stringMatching(/reachable again/));
  });
});

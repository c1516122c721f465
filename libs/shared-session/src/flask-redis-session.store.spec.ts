import Redis from 'ioredis';
import type { SessionData } from 'express-session';
import { RedisServer } from '../../../stack/redis-server';
import { waitFor } from '../../../stack/wait';
import {
  invalidationChannel,
  KeyLayout,
  newTimedSessionId,
  readSession,
  sessionKeyList,
  sessionKeys,
  signature,
  userIndexKey,
  writeSession,
} from '../../../protocol/testkit';
import { FlaskRedisSessionStore } from './flask-redis-session.store';
import { SessionCookieSigner } from './session-cookie-signer';
import { REDIS_CLIENT_DEFAULTS } from './redis-client';
import { call, quietLogger, session } from '../test/support';

const SID = '3f1d7c9e-8a4b-4c2d-9e6f-0a1b2c3d4e5f';
const SECRET = 'fishes';
const SALT = 'app_session_salt';
const PREFIX = 'app_session_prefix';
const KEYS = sessionKeys(PREFIX, SID);

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

    // The three keys, and the user's index (PROTOCOL.md section 13.1).
    expect((await admin.keys('*')).sort()).toEqual([...sessionKeyList(PREFIX, SID), userIndexKey(PREFIX, 'joe@example.com')].sort());
    expect(await admin.type(KEYS.data)).toBe('string');
    expect(await admin.type(KEYS.signature)).toBe('string');
    expect(await admin.type(KEYS.groups)).toBe('set');
    const stored = await readSession(admin, PREFIX, SID);
    // _permanent: Flask's flag for a cookie with an expiry (the default, persistent cookie).
    expect(stored.data).toEqual({ username: 'joe@example.com', groups: ['one', 'three'], theme: 'dark', _permanent: true, _idle: 3600 });
    // The signature key holds exactly the cookie's <sig> part, as the protocol signs it.
    expect(stored.signature).toBe(signature(SID, SECRET, SALT));
    expect(stored.groups).toEqual(['one', 'three']);
    for (const ttl of Object.values(stored.ttl)) {
      expect(ttl).toBeGreaterThan(3590);
      expect(ttl).toBeLessThanOrEqual(3600);
    }
  });

  it('writes all keys in one script (atomic), in the protocol order', async () => {
    const monitor = await admin.monitor();
    const seen: string[] = [];
    // Commands a script runs show in upper case: compare the names in lower case.
    monitor.on('monitor', (_time: string, [name, ...args]: string[]) => seen.push([name.toLowerCase(), ...args].join(' ')));
    await call((cb) => store.set(SID, session({ username: 'u', groups: ['g1', 'g2'] }), cb));
    await waitFor('PUBLISH in MONITOR', async () => seen.some((line) => line.startsWith('publish')));
    monitor.disconnect();
    // MONITOR lists the script call, then each command the script ran.
    const script = seen.map((line) => /^eval(sha)? /.test(line)).lastIndexOf(true);
    expect(script).toBeGreaterThanOrEqual(0);
    const writes = seen.slice(script + 1);
    // Then the user's index (PROTOCOL.md section 13.1: pruned, added to, its expiry the latest member's), in the same script.
    expect(writes.map((line) => line.split(' ')[0])).toEqual([
      'set',
      'set',
      'del',
      'sadd',
      'expire',
      'zremrangebyscore',
      'zadd',
      'zrange',
      'pexpireat',
      'publish',
    ]);
    expect(writes[3]).toBe(`sadd ${KEYS.groups} g1 g2`);
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

  it('reads what Flask wrote, keeping keys it does not know; the cookie of a session without a deadline lasts 400 days (section 12)', async () => {
    const flask = { _permanent: true, username: 'sam', groups: ['two'], csrf: 'x' };
    await writeSession(admin, PREFIX, SID, flask, { signature: signature(SID, SECRET, SALT), ttl: 600 });
    const read = (await call<SessionData | null>((cb) => store.get(SID, cb))) as SessionData & Record<string, unknown>;
    expect(read).toMatchObject(flask);
    const expires = new Date(read.cookie.expires as unknown as string).getTime();
    expect(expires - Date.now()).toBeGreaterThan(400 * 86_400_000 - 10_000);
    expect(expires - Date.now()).toBeLessThanOrEqual(400 * 86_400_000);

    // Written back, the unknown keys survive; the store's idle timeout is added (section 12).
    await call((cb) => store.set(SID, read, cb));
    expect((await readSession(admin, PREFIX, SID)).data).toEqual({ ...flask, _idle: 3600 });
  });

  it('treats missing data, or data that is not a JSON object, as no session', async () => {
    expect(await call((cb) => store.get(SID, cb))).toBeNull();
    for (const bad of ['not json', '[1,2]', '"text"', 'null', '42']) {
      await admin.set(KEYS.data, bad);
      expect(await call((cb) => store.get(SID, cb))).toBeNull();
    }
    expect(quietLogger.warn).toHaveBeenCalledWith(expect.stringContaining('not a JSON object'));
  });

  it('removes and announces what is left of a half-deleted session when it reads one (section 9)', async () => {
    const subscriber = new Redis(server.url);
    const heard: string[] = [];
    await subscriber.subscribe(invalidationChannel(PREFIX));
    subscriber.on('message', (_channel, sid: string) => heard.push(sid));
    try {
      // The data key gone (evicted, deleted, expired first) while nginx's keys remain.
      await writeSession(admin, PREFIX, SID, { username: 'u', groups: ['g'] }, { signature: signature(SID, SECRET, SALT) });
      await admin.del(KEYS.data);
      expect(await call((cb) => store.get(SID, cb))).toBeNull();
      expect(await admin.exists(...sessionKeyList(PREFIX, SID))).toBe(0);
      // Data that is not a JSON object, with its siblings.
      for (const bad of ['not json{', '[]', 'null', '"x"']) {
        await writeSession(admin, PREFIX, SID, { groups: ['g'] }, { signature: signature(SID, SECRET, SALT) });
        await admin.set(KEYS.data, bad, 'KEEPTTL');
        expect(await call((cb) => store.get(SID, cb))).toBeNull();
        expect(await admin.exists(...sessionKeyList(PREFIX, SID))).toBe(0);
      }
      await waitFor('five notices', async () => heard.length >= 5);
      expect(heard).toEqual(Array(5).fill(SID));
    } finally {
      subscriber.disconnect();
    }
  });

  it('treats a timed session id past its deadline as no session, removing and announcing its keys (section 11)', async () => {
    const subscriber = new Redis(server.url);
    const heard: string[] = [];
    await subscriber.subscribe(invalidationChannel(PREFIX));
    subscriber.on('message', (_channel, sid: string) => heard.push(sid));
    try {
      const ended = newTimedSessionId(Date.now() - 10_000, Date.now() - 1);
      const live = newTimedSessionId(Date.now() - 10_000, Date.now() + 60_000);
      for (const sid of [ended, live]) {
        await writeSession(admin, PREFIX, sid, { username: 'u', groups: ['g'] }, { signature: signature(sid, SECRET, SALT) });
      }
      expect(await call((cb) => store.get(ended, cb))).toBeNull();
      expect(await admin.exists(...sessionKeyList(PREFIX, ended))).toBe(0);
      expect(await call((cb) => store.get(live, cb))).toMatchObject({ username: 'u', groups: ['g'] });
      await waitFor('the notice', async () => heard.length >= 1);
      expect(heard).toEqual([ended]);
    } finally {
      subscriber.disconnect();
    }
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

  describe('idle and absolute timeouts (PROTOCOL.md section 12)', () => {
    const pttls = async (sid: string) => Promise.all(sessionKeyList(PREFIX, sid).map((key) => admin.pttl(key)));

    it("writes the session's own idle timeout (_idle) and sets it as the ttl, never past the deadline of a timed id", async () => {
      await call((cb) => store.set(SID, session({ username: 'u', groups: ['g'], _idle: 120 }), cb));
      for (const ttl of await pttls(SID)) expect(ttl).toBeGreaterThan(115_000);
      for (const ttl of await pttls(SID)) expect(ttl).toBeLessThanOrEqual(120_000);

      const sid = newTimedSessionId(Date.now(), Date.now() + 30_000);
      await call((cb) => store.set(sid, session({ username: 'u', groups: ['g'] }), cb));
      expect((await readSession(admin, PREFIX, sid)).data).toMatchObject({ _idle: 3600 });
      // Whole seconds (the v1 layout's EX), rounded up: at most a second past the deadline.
      for (const ttl of await pttls(sid)) expect(ttl).toBeLessThanOrEqual(31_000);
    });

    it('writes nothing for a timed id past its deadline', async () => {
      const sid = newTimedSessionId(Date.now() - 10_000, Date.now() - 1);
      await call((cb) => store.set(sid, session({ username: 'u', groups: ['g'] }), cb));
      expect(await admin.dbsize()).toBe(0);
    });

    it("touch sets the ttl back to the session's _idle, cut at the deadline, to the millisecond", async () => {
      const sid = newTimedSessionId(Date.now(), Date.now() + 2_000);
      await call((cb) => store.set(sid, session({ username: 'u', groups: ['g'], _idle: 60 }), cb));
      for (const key of sessionKeyList(PREFIX, sid)) await admin.pexpire(key, 500);
      await call((cb) => store.get(sid, cb));
      expect(store.refreshDue(sid, { _idle: 60 })).toBe(true);
      await call((cb) => store.touch!(sid, session({ _idle: 60 }), cb));
      for (const ttl of await pttls(sid)) {
        expect(ttl).toBeGreaterThan(1_000);
        expect(ttl).toBeLessThanOrEqual(2_000);
      }
    });

    it('touch never re-creates a key that is gone', async () => {
      await call((cb) => store.set(SID, session({ username: 'u', groups: ['g'], _idle: 60 }), cb));
      await admin.del(KEYS.data, KEYS.groups);
      await call((cb) => store.touch!(SID, session({ _idle: 60 }), cb));
      expect(await admin.exists(KEYS.data, KEYS.groups)).toBe(0);
      expect(await admin.pttl(KEYS.signature)).toBeGreaterThan(0);
    });

    it('a short idle timeout is refreshed at least every half of it, however long touchAfterSeconds is', async () => {
      await call((cb) => store.set(SID, session({ username: 'u', _idle: 4 }), cb));
      await call((cb) => store.get(SID, cb));
      expect(store.refreshDue(SID, { _idle: 4 })).toBe(false);
      expect(store.refreshDue(SID, { _idle: 4 }, Date.now() + 2_100)).toBe(true);
    });

    it('without touchAfterSeconds, is due once the session has not been extended for a tenth of its own idle timeout (section 12)', async () => {
      const day = 86_400_000;
      await call((cb) => store.set(SID, session({ username: 'u', _idle: 30 * 86_400 }), cb));
      await call((cb) => store.get(SID, cb));
      // 30 days: about 3 days, not a minute.
      expect(store.refreshDue(SID, { _idle: 30 * 86_400 }, Date.now() + 2 * day)).toBe(false);
      expect(store.refreshDue(SID, { _idle: 30 * 86_400 }, Date.now() + 3.1 * day)).toBe(true);
      // 30 minutes: 3 minutes.
      await call((cb) => store.set(SID, session({ username: 'u', _idle: 1800 }), cb));
      await call((cb) => store.get(SID, cb));
      expect(store.refreshDue(SID, { _idle: 1800 }, Date.now() + 170_000)).toBe(false);
      expect(store.refreshDue(SID, { _idle: 1800 }, Date.now() + 190_000)).toBe(true);
    });
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

  // Section 15: the compact layout keeps section 8 on its one key.
  describe.each<KeyLayout>(['v1', 'compact'])('concurrent requests of one session (PROTOCOL.md section 8), %s layout', (layout) => {
    let store: FlaskRedisSessionStore;
    beforeAll(() => {
      store = new FlaskRedisSessionStore({ client, signer, keyPrefix: PREFIX, keyLayout: layout, ttlSeconds: 3600, logger: quietLogger });
    });

    /** What one request holds: the session as express-session loads it (through the store's createSession). */
    function load(sid = SID): Promise<SessionData & Record<string, unknown>> {
      return call((cb) => store.load(sid, cb as never)) as Promise<SessionData & Record<string, unknown>>;
    }
    const save = (s: SessionData, sid = SID) => call((cb) => store.set(sid, s, cb));
    const login = (data: Record<string, unknown>) => save(session(data));

    it('a request that read the session before a logout does not bring it back when it saves', async () => {
      await login({ username: 'joe', groups: ['one'] });
      const slow = await load();
      await call((cb) => store.destroy(SID, cb)); // logout by another request
      slow.visits = 1;
      await save(slow);
      expect(await admin.exists(...sessionKeyList(PREFIX, SID, layout))).toBe(0);
    });

    it('nor after the session was deleted from outside (another process, an operator)', async () => {
      await login({ username: 'joe', groups: ['one'] });
      const slow = await load();
      await admin.del(...sessionKeyList(PREFIX, SID, layout));
      slow.groups = ['one', 'two']; // even a group change of its own
      await save(slow);
      expect(await admin.exists(...sessionKeyList(PREFIX, SID, layout))).toBe(0);
    });

    it('a stale save keeps a group removal made after it read the session, and writes its other changes', async () => {
      await login({ username: 'joe', groups: ['one', 'two'] });
      const slow = await load();
      const other = await load();
      other.groups = ['one'];
      await save(other); // the removal, by another request
      slow.visits = 1;
      await save(slow);
      const stored = await readSession(admin, PREFIX, SID, layout);
      expect(stored.groups).toEqual(['one']);
      expect(stored.data).toEqual({ username: 'joe', groups: ['one'], visits: 1, _permanent: true, _idle: 3600 });
      expect(slow.groups).toEqual(['one']); // the request's session shows the truth
    });

    it('keeps a group change written by another party (Flask, the test kit) just the same', async () => {
      await login({ username: 'joe', groups: ['one', 'two'] });
      const slow = await load();
      await writeSession(
        admin,
        PREFIX,
        SID,
        { username: 'joe', groups: ['three'] },
        { signature: signature(SID, SECRET, SALT), publish: true, layout },
      );
      slow.visits = 2;
      await save(slow);
      const stored = await readSession(admin, PREFIX, SID, layout);
      expect(stored.groups).toEqual(['three']);
      expect(stored.data).toMatchObject({ groups: ['three'], visits: 2 });
    });

    it('a request that changes the groups itself writes them: the last explicit change wins', async () => {
      await login({ username: 'joe', groups: ['one', 'two'] });
      const first = await load();
      const second = await load();
      first.groups = ['one'];
      await save(first);
      second.groups = ['two', 'four'];
      await save(second);
      expect((await readSession(admin, PREFIX, SID, layout)).groups).toEqual(['four', 'two']);
    });

    it('a second save in the same request is an update of what the first wrote', async () => {
      await login({ username: 'joe', groups: ['one'] });
      const req = await load();
      req.groups = ['one', 'two'];
      await save(req);
      req.visits = 3;
      await save(req);
      const stored = await readSession(admin, PREFIX, SID, layout);
      expect(stored.groups).toEqual(['one', 'two']);
      expect(stored.data).toMatchObject({ groups: ['one', 'two'], visits: 3 });
    });

    it('writes _permanent: false for a browser-session cookie, and keeps a value Flask wrote', async () => {
      const browserSession = new FlaskRedisSessionStore({
        client,
        signer,
        keyPrefix: PREFIX,
        keyLayout: layout,
        cookie: { persistent: false },
        logger: quietLogger,
      });
      await call((cb) => browserSession.set(SID, session({ username: 'u' }), cb));
      expect((await readSession(admin, PREFIX, SID, layout)).data).toEqual({ username: 'u', _permanent: false, _idle: 2678400 });
      await call((cb) => store.set(SID, session({ username: 'u', _permanent: false }), cb));
      expect((await readSession(admin, PREFIX, SID, layout)).data).toEqual({ username: 'u', _permanent: false, _idle: 3600 });
    });

    it('a new session (a fresh id, as after regenerate) is written whole', async () => {
      await save(session({ username: 'sam', groups: ['two'] }), 'a-fresh-session-id-0000');
      expect((await readSession(admin, PREFIX, 'a-fresh-session-id-0000', layout)).groups).toEqual(['two']);
    });
  });
});

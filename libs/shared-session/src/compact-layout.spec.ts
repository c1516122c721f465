import Redis from 'ioredis';
import type { SessionData } from 'express-session';
import { RedisServer } from '../../../stack/redis-server';
import { waitFor } from '../../../stack/wait';
import {
  compactKey,
  decodeCompact,
  encodeCompact,
  noticesDuring,
  loadCompactCases,
  newTimedSessionId,
  readSession,
  sessionKeyCount,
  signature,
  userIndexKey,
  writeSession,
} from '../../../protocol/testkit';
import { parseCompactValue } from './compact-value';
import { FlaskRedisSessionStore } from './flask-redis-session.store';
import { REDIS_CLIENT_DEFAULTS } from './redis-client';
import { SessionCookieSigner } from './session-cookie-signer';
import { call, quietLogger, session } from '../test/support';

const SID = '3f1d7c9e-8a4b-4c2d-9e6f-0a1b2c3d4e5f';
const SECRET = 'fishes';
const SALT = 'app_session_salt';
const PREFIX = 'app_session_prefix';
const KEY = compactKey(PREFIX, SID);
const SIG = signature(SID, SECRET, SALT);
const CASES = loadCompactCases();

describe('PROTOCOL.md section 15 cases (compact.json)', () => {
  it.each(CASES.valid)('reads a valid value: $why', ({ value, signature: sig, groups }) => {
    const read = parseCompactValue(value)!;
    expect(read.signature).toBe(sig);
    expect([...read.groups].sort()).toEqual([...groups].sort());
    expect(read.data).toEqual(decodeCompact(value)!.data); // as the test kit reads it
  });

  it.each(CASES.malformed)('refuses a malformed value: $why', ({ value }) => {
    expect(parseCompactValue(value)).toBeNull();
  });
});

describe('FlaskRedisSessionStore with keyLayout compact (PROTOCOL.md section 15) on a real redis-server', () => {
  let server: RedisServer;
  let client: Redis;
  let admin: Redis;
  let store: FlaskRedisSessionStore;
  const signer = new SessionCookieSigner({ secret: SECRET, salt: SALT });

  beforeAll(async () => {
    server = await RedisServer.start();
    client = new Redis(server.url, REDIS_CLIENT_DEFAULTS);
    admin = new Redis(server.url);
    store = new FlaskRedisSessionStore({ client, signer, keyPrefix: PREFIX, keyLayout: 'compact', ttlSeconds: 3600, logger: quietLogger });
    await waitFor('client ready', async () => client.status === 'ready');
  });
  afterAll(async () => {
    client.disconnect();
    admin.disconnect();
    await server.dispose();
  });
  beforeEach(() => admin.flushall());

  function load(sid = SID): Promise<SessionData & Record<string, unknown>> {
    return call((cb) => store.load(sid, cb as never)) as Promise<SessionData & Record<string, unknown>>;
  }
  const save = (s: SessionData, sid = SID) => call((cb) => store.set(sid, s, cb));

  /** Everything published on the invalidation channel while `run` runs. */
  const notices = (run: () => Promise<unknown>) => noticesDuring(admin, PREFIX, run);

  it("writes one string key, the test kit's encodeCompact(signature, JSON), with the ttl; the test kit reads it", async () => {
    const heard = await notices(() => save(session({ username: 'joe@example.com', groups: ['one', 'three'], theme: 'dark' })));
    expect(heard).toEqual([SID]);
    // One key for the session (and the user's index, section 13.1): nothing else under its name.
    expect(await admin.keys(`${PREFIX}:{${SID}}*`)).toEqual([KEY]);
    expect((await admin.keys('*')).sort()).toEqual([KEY, userIndexKey(PREFIX, 'joe@example.com')].sort());
    expect(await admin.type(KEY)).toBe('string');
    const json = JSON.stringify({ username: 'joe@example.com', groups: ['one', 'three'], theme: 'dark', _permanent: true, _idle: 3600 });
    expect(await admin.get(KEY)).toBe(encodeCompact(SIG, json));
    const stored = await readSession(admin, PREFIX, SID, 'compact');
    expect(stored.signature).toBe(SIG);
    expect(stored.groups).toEqual(['one', 'three']);
    expect(stored.ttl.data).toBeGreaterThan(3590);
    expect(stored.ttl.data).toBeLessThanOrEqual(3600);
    expect(await admin.zrange(userIndexKey(PREFIX, 'joe@example.com'), 0, -1)).toEqual([SID]);
  });

  it('reads what another writer wrote (the test kit), refreshes it with one PEXPIRE, and ends it: key, index member, notice', async () => {
    await writeSession(admin, PREFIX, SID, { username: 'joe', groups: ['g1'], _idle: 600 }, { signature: SIG, ttl: 60, layout: 'compact' });
    await admin.zadd(userIndexKey(PREFIX, 'joe'), Date.now() + 60_000, SID);
    const read = await load();
    expect(read).toMatchObject({ username: 'joe', groups: ['g1'] });
    await call((cb) => store.touch!(SID, read, cb));
    expect(await admin.pttl(KEY)).toBeGreaterThan(590_000);
    expect(Number(await admin.zscore(userIndexKey(PREFIX, 'joe'), SID))).toBeGreaterThan(Date.now() + 590_000);
    const heard = await notices(() => call((cb) => store.destroy(SID, cb)));
    expect(heard).toEqual([SID]);
    expect(await sessionKeyCount(admin, PREFIX, SID, 'compact')).toBe(0);
    expect(await admin.exists(userIndexKey(PREFIX, 'joe'))).toBe(0);
  });

  it.each(CASES.malformed.filter((c) => c.value !== ''))(
    'a malformed value is no session, deleted and published: $why',
    async ({ value }) => {
      await admin.set(KEY, value, 'EX', 60);
      let read: unknown;
      const heard = await notices(async () => {
        read = await call((cb) => store.get(SID, cb));
      });
      expect(read).toBeNull();
      expect(heard).toEqual([SID]);
      expect(await admin.exists(KEY)).toBe(0);
    },
  );

  it('an empty value is no session either, and a session of the v1 or cluster layout is none here', async () => {
    await admin.set(KEY, '');
    expect(await call((cb) => store.get(SID, cb))).toBeNull();
    expect(await admin.exists(KEY)).toBe(0);
    await writeSession(admin, PREFIX, SID, { username: 'joe', groups: ['g1'] }, { signature: SIG });
    await writeSession(admin, PREFIX, SID, { username: 'joe', groups: ['g1'] }, { signature: SIG, layout: 'cluster' });
    expect(await call((cb) => store.get(SID, cb))).toBeNull();
  });

  describe('section 8 on one key', () => {
    it('a stale update after a concurrent group change adopts the stored groups (written by another party too)', async () => {
      await save(session({ username: 'joe', groups: ['one', 'two'] }));
      const slow = await load();
      await writeSession(admin, PREFIX, SID, { username: 'joe', groups: ['three', 'one'] }, { signature: SIG, layout: 'compact' });
      slow.visits = 2;
      await save(slow);
      const stored = await readSession(admin, PREFIX, SID, 'compact');
      expect(stored.groups).toEqual(['one', 'three']);
      expect(stored.data).toMatchObject({ groups: ['one', 'three'], visits: 2 });
      expect(slow.groups).toEqual(['one', 'three']);
    });

    it('an update after a logout, a deletion or a malformed value never re-creates the session', async () => {
      for (const end of [
        () => call((cb) => store.destroy(SID, cb)),
        () => admin.del(KEY),
        () => admin.set(KEY, `${SIG}{"groups":["one"]`, 'KEEPTTL'),
      ]) {
        await save(session({ username: 'joe', groups: ['one'] }));
        const slow = await load();
        const changing = await load();
        await end();
        slow.visits = 1;
        await save(slow);
        changing.groups = ['one', 'two']; // update-groups: not re-created either
        await save(changing);
        expect(parseCompactValue(await admin.get(KEY))).toBeNull();
      }
    });

    it('compares the groups as a set, as the protocol reads them (the Lua agrees with compact.json)', async () => {
      // The valid cases a request can save back (groups absent, or strings): unchanged groups, so an update that
      // succeeds at once keeps them as they are; a wrongly read set would be replaced by the sorted stored one.
      const saveable = CASES.valid.filter((c) => {
        if (c.value.length > 60_000) return false; // with `visits` added, beyond the size bound (section 15.1)
        const groups = (JSON.parse(c.value.slice(27)) as { groups?: unknown }).groups;
        return groups === undefined || (Array.isArray(groups) && groups.every((g) => typeof g === 'string'));
      });
      expect(saveable.length).toBeGreaterThanOrEqual(5);
      // And one whose stored order would show an adoption (sorted) for a member listed twice.
      saveable.push({ value: `${SIG}{"groups":["g2","g1","g2"]}`, signature: SIG, groups: ['g1', 'g2'], why: 'unsorted, twice' });
      for (const c of saveable) {
        await admin.set(KEY, c.value, 'EX', 60);
        const req = await load();
        req.visits = 1;
        await save(req);
        const stored = decodeCompact(await admin.get(KEY))!;
        expect(stored.groups).toEqual(c.groups);
        expect(stored.data.groups).toEqual((decodeCompact(c.value)!.data as { groups?: unknown }).groups);
        expect(stored.data.visits).toBe(1);
      }
    });

    it('a request that changes the groups writes them; a new id is written whole', async () => {
      await save(session({ username: 'joe', groups: ['one', 'two'] }));
      const first = await load();
      const second = await load();
      first.groups = ['one'];
      await save(first);
      second.groups = ['two', 'four'];
      await save(second);
      expect((await readSession(admin, PREFIX, SID, 'compact')).groups).toEqual(['four', 'two']);
      const fresh = newTimedSessionId(Date.now());
      await save(session({ groups: ['x'] }), fresh);
      expect((await readSession(admin, PREFIX, fresh, 'compact')).groups).toEqual(['x']);
    });
  });
});

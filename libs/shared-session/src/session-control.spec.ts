import Redis from 'ioredis';
import { ServiceUnavailableException } from '@nestjs/common';
import type { SessionData } from 'express-session';
import { RedisServer } from '../../../stack/redis-server';
import { waitFor } from '../../../stack/wait';
import {
  ackChannel,
  compactKey,
  encodeCompact,
  groupGenerationKey,
  KeyLayout,
  invalidationChannel,
  noticesDuring,
  loadControlCases,
  newTimedSessionId,
  notBeforeKey,
  readSession,
  refusedByMark,
  sessionKeyCount,
  sessionKeys,
  userIndexKey,
  writeSession,
} from '../../../protocol/testkit';
import { FlaskRedisSessionStore, sessionRepository } from './flask-redis-session.store';
import { REDIS_CLIENT_DEFAULTS } from './redis-client';
import { SessionControl } from './session-control';
import { refusedByNotBefore } from './session-control.keys';
import { SessionCookieSigner } from './session-cookie-signer';
import { newSessionId } from './session-id';
import { SessionEvents } from './shared-session.events';
import { SharedSessionHttp } from './shared-session-http';
import { SharedSessionService } from './shared-session.service';
import { resolveSharedSessionOptions } from './shared-session.options';
import { call, quietLogger, session } from '../test/support';

const PREFIX = 'ctl';
const TTL = 3600;
const JOE = 'joe@example.com';

describe('PROTOCOL.md section 13 cases (control.json)', () => {
  it.each(loadControlCases().mark)('the mark: $why', ({ sid, mark_ms, refused }) => {
    expect(refusedByNotBefore(sid, mark_ms)).toBe(refused);
    expect(refusedByMark(sid, mark_ms)).toBe(refused); // the test kit agrees with the text
  });
});

// Section 15: the compact layout runs section 13 as the cluster layout does (sections 14.1 to 14.3), here on one Redis.
describe.each<KeyLayout>(['v1', 'compact'])('SessionControl on a real redis-server (PROTOCOL.md section 13), %s layout', (layout) => {
  let server: RedisServer;
  let client: Redis;
  let admin: Redis;
  let store: FlaskRedisSessionStore;
  let control: SessionControl;
  const signer = new SessionCookieSigner({ secret: 'control-secret', salt: 'salt' });

  beforeAll(async () => {
    server = await RedisServer.start();
    client = new Redis(server.url, REDIS_CLIENT_DEFAULTS);
    admin = new Redis(server.url);
    const options = { client, signer, keyPrefix: PREFIX, keyLayout: layout, ttlSeconds: TTL, logger: quietLogger, maxSessionsPerUser: 4 };
    const sessions = sessionRepository(options);
    store = new FlaskRedisSessionStore(options, sessions);
    control = new SessionControl({ sessions, client, ttlSeconds: TTL });
    await waitFor('client ready', async () => client.status === 'ready');
  });
  afterAll(async () => {
    await control.close();
    client.disconnect();
    admin.disconnect();
    await server.dispose();
  });
  beforeEach(() => admin.flushall());

  /** The key that says whether a session exists: its data key, or (compact) its one key. */
  const mainKey = (sid: string) => (layout === 'compact' ? compactKey(PREFIX, sid) : sessionKeys(PREFIX, sid).data);
  const keyCount = (sid: string) => sessionKeyCount(admin, PREFIX, sid, layout);
  /** Replaces a session's JSON as another writer would, its ttl kept. */
  const setJson = (sid: string, data: object) =>
    admin.set(
      mainKey(sid),
      layout === 'compact' ? encodeCompact(signer.signature(sid), JSON.stringify(data)) : JSON.stringify(data),
      'KEEPTTL',
    );

  /** A logged-in session written by the store, as a login writes it; its id. */
  async function loginAs(user: string, groups: string[], sid = newSessionId()): Promise<string> {
    await call((cb) => store.set(sid, session({ username: user, groups }), cb));
    return sid;
  }

  /** Everything published on the invalidation channel while `run` runs. */
  const notices = (run: () => Promise<unknown>) => noticesDuring(admin, PREFIX, run);

  describe('the per-user index (13.1)', () => {
    it('holds each live session with its expiry, in the same script as its keys, and expires with the last', async () => {
      const before = Date.now();
      const a = await loginAs(JOE, ['one']);
      const b = await loginAs(JOE, ['three']);
      const index = await admin.zrange(userIndexKey(PREFIX, JOE), 0, -1, 'WITHSCORES');
      expect([index[0], index[2]].sort()).toEqual([a, b].sort());
      for (const score of [Number(index[1]), Number(index[3])]) {
        expect(score).toBeGreaterThanOrEqual(before + TTL * 1000);
        expect(score).toBeLessThanOrEqual(Date.now() + TTL * 1000);
      }
      const pttl = await admin.pttl(userIndexKey(PREFIX, JOE));
      expect(pttl).toBeGreaterThan((TTL - 5) * 1000);
      // A session without a user is in no index.
      await call((cb) => store.set(newSessionId(), session({ theme: 'dark' }), cb));
      expect(await admin.keys(`${PREFIX}:user:*`)).toEqual([userIndexKey(PREFIX, JOE)]);
    });

    it('drops expired members on every write, so it stays bounded', async () => {
      const index = userIndexKey(PREFIX, JOE);
      for (let i = 0; i < 50; i++) await admin.zadd(index, Date.now() - 1000 - i, `expired-session-${i}-xxxxxx`);
      const live = await loginAs(JOE, ['one']);
      expect(await admin.zrange(index, 0, -1)).toEqual([live]);
    });

    it('loses a session on logout, and refreshes its score when the session is touched', async () => {
      const sid = await loginAs(JOE, ['one']);
      const index = userIndexKey(PREFIX, JOE);
      await admin.zadd(index, 'XX', Date.now() + 1000, sid);
      await admin.pexpire(index, 5000);
      await call((cb) => store.touch!(sid, session({ username: JOE, groups: ['one'] }), cb));
      expect(Number(await admin.zscore(index, sid))).toBeGreaterThan(Date.now() + (TTL - 5) * 1000);
      expect(await admin.pttl(index)).toBeGreaterThan((TTL - 5) * 1000);
      const other = await loginAs(JOE, ['one']);
      await call((cb) => store.destroy(sid, cb));
      expect(await admin.zrange(index, 0, -1)).toEqual([other]);
    });

    it('with maxSessionsPerUser, a login beyond it ends the oldest session (keys, index, notice)', async () => {
      const t = Date.now() - 10_000;
      const sids = [0, 1, 2, 3].map((i) => newTimedSessionId(t + i * 1000));
      for (const sid of sids) await loginAs(JOE, ['one'], sid);
      const heard = await notices(async () => {
        await loginAs(JOE, ['one']);
      });
      expect(await keyCount(sids[0])).toBe(0);
      expect(await admin.zcard(userIndexKey(PREFIX, JOE))).toBe(4);
      expect(await admin.zscore(userIndexKey(PREFIX, JOE), sids[0])).toBeNull();
      expect(heard).toContain(sids[0]);
      for (const sid of sids.slice(1)) expect(await admin.exists(mainKey(sid))).toBe(1);
    });
  });

  describe('listSessions', () => {
    it('lists a user’s live sessions oldest first, with when each was issued, last seen and its groups; [] for anyone else', async () => {
      const t = Date.now() - 60_000;
      const older = await loginAs(JOE, ['one', 'three'], newTimedSessionId(t));
      const newer = await loginAs(JOE, ['three'], newTimedSessionId(t + 1000));
      await setJson(newer, { username: JOE, groups: ['three'], _login: { ip: '10.0.0.7', userAgent: 'UA/1' } });
      const list = await control.listSessions(JOE);
      expect(list.map((s) => s.sessionId)).toEqual([older, newer]);
      expect(list[0]).toMatchObject({ createdAt: new Date(t), groups: ['one', 'three'] });
      expect(list[0].ip).toBeUndefined();
      expect(list[1]).toMatchObject({ ip: '10.0.0.7', userAgent: 'UA/1', groups: ['three'] });
      expect(Math.abs(list[1].lastSeenAt.getTime() - Date.now())).toBeLessThan(5000);
      expect(list[1].expiresAt.getTime()).toBeGreaterThan(Date.now() + (TTL - 5) * 1000);
      // A member whose data is gone is no session.
      await admin.del(mainKey(older));
      expect((await control.listSessions(JOE)).map((s) => s.sessionId)).toEqual([newer]);
      expect(await control.listSessions('nobody@example.com')).toEqual([]);
    });
  });

  describe('revocation', () => {
    it('revokeUser ends every session of the user but the ones kept, and publishes each id', async () => {
      const a = await loginAs(JOE, ['one']);
      const b = await loginAs(JOE, ['one']);
      const c = await loginAs(JOE, ['three']);
      const sam = await loginAs('sam@example.com', ['two']);
      let result;
      const heard = await notices(async () => {
        result = await control.revokeUser(JOE, { except: c });
      });
      expect(result).toEqual({ sessions: 2 });
      expect(heard.sort()).toEqual([a, b].sort());
      for (const sid of [a, b]) expect(await keyCount(sid)).toBe(0);
      expect(await admin.exists(mainKey(c))).toBe(1);
      expect(await admin.exists(mainKey(sam))).toBe(1);
      expect(await admin.zrange(userIndexKey(PREFIX, JOE), 0, -1)).toEqual([c]);
      expect(await control.revokeUser('nobody@example.com')).toEqual({ sessions: 0 });
    });

    it('revokeSession ends one session and takes it out of its index', async () => {
      const a = await loginAs(JOE, ['one']);
      const b = await loginAs(JOE, ['one']);
      expect(await control.revokeSession(a)).toEqual({ sessions: 1 });
      expect(await control.revokeSession(a)).toEqual({ sessions: 0 });
      expect(await admin.zrange(userIndexKey(PREFIX, JOE), 0, -1)).toEqual([b]);
    });

    it('revokeIssuedBefore sets the mark (forward only) and ends older sessions and untimed ones at the next read', async () => {
      const old = await loginAs(JOE, ['one'], newTimedSessionId(Date.now() - 60_000));
      const untimed = '3f1d7c9e-8a4b-4c2d-9e6f-0a1b2c3d4e5f';
      await writeSession(
        admin,
        PREFIX,
        untimed,
        { username: 'flask-user', groups: ['one'] },
        { signature: signer.signature(untimed), layout },
      );
      const mark = Date.now() - 30_000;
      const fresh = await loginAs(JOE, ['one']);
      let result;
      const heard = await notices(async () => {
        result = await control.revokeIssuedBefore(new Date(mark));
      });
      expect(result).toEqual({ sessions: 0, notBefore: new Date(mark) });
      expect(heard).toEqual([`!not-before ${mark}`]);
      expect(await admin.get(notBeforeKey(PREFIX))).toBe(String(mark));
      // Forward only.
      expect((await control.revokeIssuedBefore(mark - 10_000)).notBefore).toEqual(new Date(mark));
      expect(await admin.get(notBeforeKey(PREFIX))).toBe(String(mark));

      expect(await call((cb) => store.get(old, cb))).toBeNull();
      expect(await keyCount(old)).toBe(0);
      expect(await call((cb) => store.get(untimed, cb))).toBeNull();
      expect(await call((cb) => store.get(fresh, cb))).toMatchObject({ username: JOE });
    });

    it('a request that read a session before the mark saves nothing after it', async () => {
      const sid = await loginAs(JOE, ['one'], newTimedSessionId(Date.now() - 60_000));
      const read = (await call<SessionData | null>((cb) => store.get(sid, cb)))!;
      const loaded = store.createSession({ sessionID: sid, sessionStore: store } as never, read);
      await control.revokeIssuedBefore(Date.now() - 1000);
      await call((cb) => store.set(sid, Object.assign(loaded, { theme: 'dark' }), cb));
      expect((await readSession(admin, PREFIX, sid, layout)).data).not.toHaveProperty('theme');
    });
  });

  describe('group changes for every session of a user (13.5)', () => {
    it('removeUserFromGroup, addUserToGroup and setUserGroups change every live session: data, groups set, ttl kept, notices', async () => {
      const a = await loginAs(JOE, ['one', 'three']);
      const b = await loginAs(JOE, ['one']);
      const esteban = await loginAs('esteban@example.com', ['one', 'four']);
      await admin.pexpire(mainKey(a), 500_000);
      let result;
      const heard = await notices(async () => {
        result = await control.removeUserFromGroup(JOE, 'one');
      });
      expect(result).toEqual({ sessions: 2 });
      expect(heard.sort()).toEqual([a, b].sort());
      const sa = await readSession(admin, PREFIX, a, layout);
      expect(sa.data).toMatchObject({ username: JOE, groups: ['three'] });
      expect(sa.signature).toBe(signer.signature(a));
      expect(sa.groups).toEqual(['three']);
      expect(sa.ttl.data).toBeLessThanOrEqual(500);
      expect(sa.ttl.groups).toBeLessThanOrEqual(500);
      expect(sa.ttl.groups).toBeGreaterThan(490);
      expect((await readSession(admin, PREFIX, b, layout)).groups).toEqual([]);
      if (layout === 'v1') expect(await admin.exists(sessionKeys(PREFIX, b).groups)).toBe(0);
      expect((await readSession(admin, PREFIX, esteban, layout)).groups).toEqual(['four', 'one']);

      await control.addUserToGroup(JOE, 'two');
      expect((await readSession(admin, PREFIX, a, layout)).groups).toEqual(['three', 'two']);
      expect((await readSession(admin, PREFIX, b, layout)).groups).toEqual(['two']);
      await control.setUserGroups(JOE, ['five']);
      expect((await readSession(admin, PREFIX, a, layout)).data).toMatchObject({ groups: ['five'] });
      expect((await readSession(admin, PREFIX, b, layout)).groups).toEqual(['five']);
      expect(await control.setUserGroups('nobody@example.com', ['x'])).toEqual({ sessions: 0 });
    });

    it('wins over a request that read the session before the change (section 8)', async () => {
      const sid = await loginAs(JOE, ['one', 'three']);
      const read = (await call<SessionData | null>((cb) => store.get(sid, cb)))!;
      const loaded = store.createSession({ sessionID: sid, sessionStore: store } as never, read);
      await control.removeUserFromGroup(JOE, 'one');
      await call((cb) => store.set(sid, Object.assign(loaded, { theme: 'dark' }), cb));
      const stored = await readSession(admin, PREFIX, sid, layout);
      expect(stored.groups).toEqual(['three']);
      expect(stored.data).toMatchObject({ groups: ['three'], theme: 'dark' });
    });
  });

  it('invalidateGroupCache increments the group’s generation and announces it', async () => {
    let first;
    const heard = await notices(async () => {
      first = await control.invalidateGroupCache('one');
      await control.invalidateGroupCache('one');
      await control.invalidateGroupCache('group with spaces');
    });
    expect(first).toEqual({ sessions: 0, generation: 1 });
    expect(heard).toEqual(['!generation 1 one', '!generation 2 one', '!generation 1 group with spaces']);
    expect(await admin.get(groupGenerationKey(PREFIX, 'one'))).toBe('2');
  });

  it('refuses bad arguments with a TypeError that names them, changing nothing', async () => {
    await loginAs(JOE, ['one']);
    const before = await admin.dbsize();
    await expect(control.listSessions('')).rejects.toThrow(/listSessions: userId/);
    await expect(control.revokeUser(undefined as never)).rejects.toThrow(/revokeUser: userId/);
    await expect(control.revokeUser(JOE, { except: 'bad id' })).rejects.toThrow(/except\[0\]/);
    await expect(control.revokeSession('short')).rejects.toThrow(/sessionId/);
    expect(() => control.removeUserFromGroup(JOE, '')).toThrow(/removeUserFromGroup: group/);
    expect(() => control.addUserToGroup(JOE, 'a\nb')).toThrow(/addUserToGroup: group/);
    expect(() => control.setUserGroups(JOE, ['one', 7 as never])).toThrow(/groups\[1\]/);
    await expect(control.invalidateGroupCache('')).rejects.toThrow(TypeError);
    await expect(control.revokeIssuedBefore(new Date(Date.now() + 3_600_000))).rejects.toThrow(/not in the future/);
    await expect(control.revokeIssuedBefore(new Date('nonsense'))).rejects.toThrow(/date/);
    expect(await admin.dbsize()).toBe(before);
    expect(await admin.get(notBeforeKey(PREFIX))).toBeNull();
  });

  describe('synchronous revocation (13.4)', () => {
    /** A reader that acknowledges barriers, as nginx's subscriber does; `ack: false`: one that never does (a v1 reader). */
    async function reader(ack: boolean): Promise<Redis> {
      const sub = new Redis(server.url);
      const pub = new Redis(server.url);
      sub.on('message', (_c, m: string) => {
        if (ack && m.startsWith('!ack ')) void pub.publish(ackChannel(PREFIX), m.slice(5));
      });
      sub.on('end', () => pub.disconnect());
      await sub.subscribe(invalidationChannel(PREFIX));
      return sub;
    }

    it('waits for every subscribed reader, and says when one did not answer in time', async () => {
      const a = await reader(true);
      const b = await reader(true);
      try {
        await loginAs(JOE, ['one']);
        expect(await control.revokeUser(JOE, { wait: true })).toEqual({
          sessions: 1,
          confirmation: { acknowledged: 2, expected: 2, timedOut: false },
        });
        const silent = await reader(false);
        try {
          const result = await control.invalidateGroupCache('one', { wait: true, timeoutMs: 100 });
          expect(result.confirmation).toEqual({ acknowledged: 2, expected: 3, timedOut: true });
        } finally {
          silent.disconnect();
        }
      } finally {
        a.disconnect();
        b.disconnect();
      }
      // No reader at all: nothing to wait for.
      await waitFor('readers gone', async () => Number((await admin.pubsub('NUMSUB', invalidationChannel(PREFIX)))[1]) === 0);
      expect((await control.revokeSession(newSessionId(), { wait: true })).confirmation).toEqual({
        acknowledged: 0,
        expected: 0,
        timedOut: false,
      });
    });
  });

  describe('with Redis down', () => {
    it('SharedSessionService answers 503 for every control call, and argument errors stay TypeErrors', async () => {
      const down = await RedisServer.start();
      const downClient = new Redis(down.url, REDIS_CLIENT_DEFAULTS);
      await waitFor('ready', async () => downClient.status === 'ready');
      await down.stop();
      await waitFor('client notices', async () => downClient.status !== 'ready');
      const downStore = new FlaskRedisSessionStore({
        client: downClient,
        signer,
        keyPrefix: PREFIX,
        keyLayout: layout,
        logger: quietLogger,
      });
      const config = resolveSharedSessionOptions({ secret: 'control-secret', keyPrefix: PREFIX });
      const downControl = new SessionControl({
        sessions: sessionRepository({ client: downClient, keyPrefix: PREFIX, keyLayout: layout, logger: quietLogger }),
        client: downClient,
        ttlSeconds: TTL,
      });
      const events = new SessionEvents(config.secret, config.events);
      const service = new SharedSessionService(
        config,
        downStore,
        downControl,
        signer,
        events,
        new SharedSessionHttp(config, signer, downStore),
      );
      try {
        const calls: (() => Promise<unknown>)[] = [
          () => service.listSessions(JOE),
          () => service.revokeUser(JOE),
          () => service.revokeSession(newSessionId()),
          () => service.revokeIssuedBefore(Date.now() - 1000),
          () => service.setUserGroups(JOE, ['one']),
          () => service.addUserToGroup(JOE, 'one'),
          () => service.removeUserFromGroup(JOE, 'one'),
          () => service.invalidateGroupCache('one'),
          () => service.revokeUser(JOE, { wait: true }),
        ];
        for (const c of calls) await expect(c()).rejects.toBeInstanceOf(ServiceUnavailableException);
        await expect(service.removeUserFromGroup(JOE, '')).rejects.toBeInstanceOf(TypeError);
      } finally {
        await downControl.close();
        downClient.disconnect();
        await down.dispose();
      }
    });
  });
});

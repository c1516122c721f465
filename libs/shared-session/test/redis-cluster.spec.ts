import type { INestApplication } from '@nestjs/common';
import type { Cluster } from 'ioredis';
import request from 'supertest';
import { compactKey, KeyLayout, readSession, sessionKeyCount, sessionKeys, userIndexKey } from '../../../protocol/testkit';
import { RedisClusterStack } from '../../../stack/redis-cluster';
import { sleep } from '../../../stack/wait';
import { LOGIN_THROTTLE_STORAGE, LoginThrottleStorage, SharedSessionHealthIndicator, SharedSessionService } from '../src';
import { resolveSharedSessionOptions, SharedSessionOptionsError } from '../src/shared-session.options';
import { SessionRepository } from '../src/session-repository';
import { cli } from './cli-runner';
import { createTestApp } from './test-app';

/**
 * The module on a real Redis Cluster (3 primaries, 3 replicas) with the
 * cluster layout (PROTOCOL.md section 14): sessions on every primary, the
 * atomic writes of section 8 within each session's slot, logout, section
 * 13's per-user index and operations in their cluster form (section 14.1),
 * and a failover (503s until the replica is promoted, never a session that
 * is not there). The same with the compact layout (section 15: one key per
 * session, section 13 as on the cluster layout).
 */
const PREFIX = 'app_cl';
const SECRET = 'a-secret-of-at-least-32-bytes!!!';

describe.each<KeyLayout>(['cluster', 'compact'])('SharedSessionModule on Redis Cluster (%s layout)', (layout) => {
  let cluster: RedisClusterStack;
  let client: Cluster;
  let app: INestApplication;
  const http = () => request(app.getHttpServer());
  /** How many keys a live session has. */
  const LIVE = layout === 'compact' ? 1 : 3;
  /** The session's data key (compact: its one key); its slot is the session id's. */
  const mainKey = (sid: string) => (layout === 'compact' ? compactKey(PREFIX, sid) : sessionKeys(PREFIX, sid, 'cluster').data);

  async function login(username: string, groups: string[], on = app): Promise<{ cookie: string; sid: string }> {
    const res = await request(on.getHttpServer()).post('/login').send({ username, groups }).expect(204);
    const cookie = ([] as string[]).concat(res.headers['set-cookie'] ?? [])[0].split(';')[0];
    return { cookie, sid: cookie.slice(cookie.indexOf('=') + 1, cookie.indexOf('.')) };
  }

  beforeAll(async () => {
    cluster = await RedisClusterStack.start();
    client = cluster.client();
    app = await createTestApp({ secret: SECRET, keyPrefix: PREFIX, keyLayout: layout, redis: { cluster: cluster.startupNodes } });
  }, 60_000);
  afterAll(async () => {
    await app?.close();
    client?.disconnect();
    await cluster?.dispose();
  });

  it('login throttling’s storage: bans counted, listed and lifted with each subject’s keys in one slot, on every primary (issue 23, item 6)', async () => {
    const storage = app.get<LoginThrottleStorage>(LOGIN_THROTTLE_STORAGE);
    const sessions = app.get(SessionRepository, { strict: false });
    const limit = { max: 2, windowMs: 60_000, banMs: 60_000 };
    const primaries = new Set<number>();
    for (let i = 0; i < 12; i++) {
      const [address, user] = [`10.0.0.${i}`, i % 2 ? `user${i}@example.com` : undefined];
      expect(await storage.failed(address, user, limit)).toBe(0);
      expect(await storage.failed(address, user, limit)).toBe(60_000);
      expect(await storage.banned(address, user)).toBeGreaterThan(59_000);
      const ban = sessions.throttleKeys(address, user).ban;
      expect(await client.exists(ban)).toBe(1);
      primaries.add((await cluster.primaryOf(Number(await client.cluster('KEYSLOT', ban)))).port);
    }
    expect(primaries.size).toBeGreaterThan(1);
    expect(await storage.bans()).toHaveLength(12);
    expect(await storage.liftBans('user3@example.com')).toEqual([
      { user: 'user3@example.com', address: '10.0.0.3', until: expect.any(Date) },
    ]);
    expect(await storage.banned('10.0.0.3', 'user3@example.com')).toBe(0);
    expect(await storage.bans()).toHaveLength(11);
    for (const b of await storage.bans()) await storage.liftBans(b.address);
    expect(await storage.bans()).toEqual([]);
  });

  it('logs in, guards, changes groups and logs out, each session in its own slot on one of the three primaries', async () => {
    const primaries = new Set<number>();
    // Until sessions have landed on all three primaries (slots are random; 40 logins leave ~1e-7 of chance).
    for (let i = 0; i < 40 && (i < 6 || primaries.size < 3); i++) {
      const { cookie, sid } = await login(`user${i}@example.com`, ['one']);
      const stored = await readSession(client, PREFIX, sid, layout);
      expect(stored.groups).toEqual(['one']);
      expect(stored.data).toMatchObject({ username: `user${i}@example.com` });
      primaries.add((await cluster.primaryOf(Number(await client.cluster('KEYSLOT', mainKey(sid))))).port);
      await http().get('/groups/one/report').set('Cookie', cookie).expect(200);
      await http().get('/groups/two/report').set('Cookie', cookie).expect(403);
      await http()
        .post('/groups')
        .set('Cookie', cookie)
        .send({ groups: ['two'] })
        .expect(204);
      await http().get('/groups/two/report').set('Cookie', cookie).expect(200);
      expect((await readSession(client, PREFIX, sid, layout)).groups).toEqual(['two']);
      await http().post('/logout').set('Cookie', cookie).expect(204);
      expect(await sessionKeyCount(client, PREFIX, sid, layout)).toBe(0);
    }
    expect(primaries.size).toBe(3);
  });

  /** The port of the primary that holds the session's slot now. */
  async function primaryPort(sid: string): Promise<number> {
    return (await cluster.primaryOf(Number(await client.cluster('KEYSLOT', mainKey(sid))))).port;
  }

  /** Logins of one user until its sessions are on at least two primaries (and `atLeast` sessions). */
  async function spreadLogins(user: string, atLeast: number, on = app): Promise<{ cookie: string; sid: string }[]> {
    const made: { cookie: string; sid: string }[] = [];
    const primaries = new Set<number>();
    while (made.length < atLeast || (primaries.size < 2 && made.length < 30)) {
      const s = await login(user, ['one'], on);
      made.push(s);
      primaries.add(await primaryPort(s.sid));
    }
    expect(primaries.size).toBeGreaterThanOrEqual(2);
    return made;
  }

  it("section 14.1: a user's sessions on several primaries are listed, regrouped and revoked, each in its own slot", async () => {
    const service = app.get(SharedSessionService);
    const user = 'spread@example.com';
    const sessions = await spreadLogins(user, 6);
    const sids = sessions.map((s) => s.sid);
    // The index, in its own slot, holds every session, scored with its expiry.
    const index = userIndexKey(PREFIX, user);
    expect((await client.zrange(index, 0, -1)).sort()).toEqual([...sids].sort());
    expect(await client.pttl(index)).toBeGreaterThan(0);
    // A dangling member (an index written, a session never written: a crash between the two steps) is no session.
    await client.zadd(index, Date.now() + 60_000, 'dangling-session-id-0123456789');

    expect((await service.listSessions(user)).map((s) => s.sessionId).sort()).toEqual([...sids].sort());

    expect((await service.setUserGroups(user, ['two', 'three'])).sessions).toBe(sids.length);
    for (const { cookie, sid } of sessions) {
      expect((await readSession(client, PREFIX, sid, layout)).groups).toEqual(['three', 'two']);
      await http().get('/groups/one/report').set('Cookie', cookie).expect(403);
      await http().get('/groups/two/report').set('Cookie', cookie).expect(200);
    }
    expect((await service.removeUserFromGroup(user, 'two')).sessions).toBe(sids.length);
    expect((await service.addUserToGroup(user, 'four')).sessions).toBe(sids.length);
    for (const s of await service.listSessions(user)) expect(s.groups).toEqual(['three', 'four']);

    // The session's next save keeps the groups the change gave it.
    await http().post('/count').set('Cookie', sessions[0].cookie).expect(201);
    expect((await readSession(client, PREFIX, sids[0], layout)).groups).toEqual(['four', 'three']);

    const keep = sids[2];
    expect((await service.revokeUser(user, { except: keep })).sessions).toBe(sids.length - 1);
    for (const { cookie, sid } of sessions) {
      expect(await sessionKeyCount(client, PREFIX, sid, layout)).toBe(sid === keep ? LIVE : 0);
      await http()
        .get('/groups/three/report')
        .set('Cookie', cookie)
        .expect(sid === keep ? 200 : 401);
    }
    expect((await service.listSessions(user)).map((s) => s.sessionId)).toEqual([keep]);
    // The ended sessions left the index; the dangling member stays until its score passes.
    expect((await client.zrange(index, 0, -1)).sort()).toEqual([keep, 'dangling-session-id-0123456789'].sort());

    expect((await service.revokeSession(keep)).sessions).toBe(1);
    expect(await service.listSessions(user)).toEqual([]);
    // A rerun changes nothing more.
    expect((await service.revokeUser(user)).sessions).toBe(0);
  });

  it("section 14.1 with wait: the barrier comes after every session's notice, and a reader on every primary acknowledges it once", async () => {
    const service = app.get(SharedSessionService);
    const user = 'acked@example.com';
    const sids = (await spreadLogins(user, 3)).map((s) => s.sid);
    // A reader as section 14 says: subscribed on every primary, `!ack` answered at its last copy.
    const readers = client.nodes('master').map((node) => node.duplicate());
    const copies = new Map<string, number>();
    const revoked = new Set<string>();
    for (const reader of readers) {
      reader.on('message', (_channel: string, notice: string) => {
        if (!notice.startsWith('!ack ')) return void revoked.add(notice);
        const id = notice.slice('!ack '.length);
        copies.set(id, (copies.get(id) ?? 0) + 1);
        if (copies.get(id) === readers.length) void client.publish(`${PREFIX}:ack`, id);
      });
      await reader.subscribe(`${PREFIX}:invalidate`);
    }
    try {
      const result = await service.revokeUser(user, { wait: true, timeoutMs: 2000 });
      expect(result).toEqual({ sessions: sids.length, confirmation: { acknowledged: 1, expected: 1, timedOut: false } });
      for (const sid of sids) expect(revoked.has(sid)).toBe(true);
    } finally {
      readers.forEach((r) => r.disconnect());
    }
  });

  it('section 14.1: a login above maxSessionsPerUser ends the oldest sessions, wherever they are', async () => {
    const limited = await createTestApp({
      secret: SECRET,
      keyPrefix: PREFIX,
      keyLayout: layout,
      maxSessionsPerUser: 2,
      redis: { cluster: cluster.startupNodes },
    });
    try {
      const sessions = await spreadLogins('limited@example.com', 5, limited);
      const live = sessions.slice(-2).map((s) => s.sid);
      for (const { sid } of sessions) expect(await sessionKeyCount(client, PREFIX, sid, layout)).toBe(live.includes(sid) ? LIVE : 0);
      const listed = await limited.get(SharedSessionService).listSessions('limited@example.com');
      expect(listed.map((s) => s.sessionId)).toEqual(live);
    } finally {
      await limited.close();
    }
  });

  it("section 14.1: the operator tool lists and revokes a user's sessions on the cluster (--cluster / REDIS_CLUSTER_NODES)", async () => {
    const user = 'cli@example.com';
    const sids = (await spreadLogins(user, 4)).map((s) => s.sid);
    const env = {
      REDIS_CLUSTER_NODES: cluster.startupNodes.map((n) => `${n.host}:${n.port}`).join(','),
      SESSION_KEY_PREFIX: PREFIX,
      SESSION_KEY_LAYOUT: layout,
    };
    const listed = await cli(['--json', 'sessions', user], env);
    expect(listed.status).toBe(0);
    expect((JSON.parse(listed.stdout) as { sessions: { sessionId: string }[] }).sessions.map((s) => s.sessionId).sort()).toEqual(
      [...sids].sort(),
    );
    expect(await cli(['revoke-session', sids[0]], env)).toMatchObject({ status: 0, stdout: `ended session ${sids[0]}\n` });
    expect(await cli(['revoke-user', user, '--except', sids[1]], env)).toMatchObject({
      status: 0,
      stdout: `ended ${sids.length - 2} session(s) of ${user}\n`,
    });
    for (const sid of sids) expect(await sessionKeyCount(client, PREFIX, sid, layout)).toBe(sid === sids[1] ? LIVE : 0);
    expect(await cli(['purge-group', 'cli-group'], env)).toMatchObject({ status: 0, stdout: 'group cli-group: cache generation 1\n' });
    // A Redis URL beside the cluster is ambiguous; --scan finds v1 writers' sessions; the mark cannot be lifted on a cluster.
    expect((await cli(['sessions', user], { ...env, REDIS_URL: 'redis://127.0.0.1:1' })).status).toBe(2);
    expect((await cli(['sessions', user, '--scan'], env)).status).toBe(2);
    expect((await cli(['clear-not-before'], env)).status).toBe(2);
  });

  it("section 14.2: a group cache generation is one script in its key's slot", async () => {
    const service = app.get(SharedSessionService);
    const key = `${PREFIX}:group-generation:purged`;
    expect((await service.invalidateGroupCache('purged')).generation).toBe(1);
    expect((await service.invalidateGroupCache('purged')).generation).toBe(2);
    expect(await client.get(key)).toBe('2');
  });

  it('section 14.3: the not-before mark ends every session issued before it, wherever it is; it only moves forward', async () => {
    const service = app.get(SharedSessionService);
    const before = await spreadLogins('marked@example.com', 3);
    await sleep(5);
    const at = new Date();
    await sleep(5);
    const after = await login('marked@example.com', ['one']);
    expect((await service.revokeIssuedBefore(at)).notBefore).toEqual(at);
    // Only forward: an older date keeps the stored mark.
    expect((await service.revokeIssuedBefore(new Date(at.getTime() - 60_000))).notBefore).toEqual(at);
    for (const { cookie, sid } of before) {
      await http().get('/groups/one/report').set('Cookie', cookie).expect(401);
      expect(await sessionKeyCount(client, PREFIX, sid, layout)).toBe(0);
    }
    await http().get('/groups/one/report').set('Cookie', after.cookie).expect(200);
    await http().post('/count').set('Cookie', after.cookie).expect(201);
    expect(await client.get(`${PREFIX}:not-before`)).toBe(String(at.getTime()));
    await client.del(`${PREFIX}:not-before`);
  });

  it('the health indicator PINGs every primary: up while all three answer', async () => {
    // The acknowledgement subscriber is reported too: a test above waited for acknowledgements.
    expect(await app.get(SharedSessionHealthIndicator).isHealthy('shared_session')).toEqual({
      shared_session: { status: 'up', redis: 'up', acknowledgements: 'up' },
    });
  });

  it('failover: 503 while the primary of a session is down, the session again once its replica is promoted', async () => {
    const { cookie, sid } = await login('joe@example.com', ['one']);
    const primary = await cluster.primaryOf(Number(await client.cluster('KEYSLOT', mainKey(sid))));
    // Replication is asynchronous: a session written just before its primary
    // dies can be lost with it (its user logs in again). Here the replica has it.
    await cluster.waitReplicated(primary, mainKey(sid));
    await primary.stop();
    const killedAt = performance.now();
    const seen: Record<number, number> = {};
    let back = 0;
    while (performance.now() - killedAt < 20_000) {
      const { status } = await http().get('/groups/one/report').set('Cookie', cookie);
      seen[status] = (seen[status] ?? 0) + 1;
      expect([200, 503]).toContain(status);
      if (status === 200) {
        back = performance.now() - killedAt;
        break;
      }
      await sleep(50);
    }
    console.log(
      `Cluster failover at the app: the session was served again ${Math.round(back)} ms after its primary was killed; answers ${JSON.stringify(seen)}`,
    );
    expect(back).toBeGreaterThan(0);
  }, 30_000);
});

describe('SharedSessionModule options for Redis Cluster', () => {
  it('refuses Redis Cluster without the cluster layout, and a prefix that would be the hash tag, naming the option', () => {
    expect(() => resolveSharedSessionOptions({ secret: SECRET, redis: { cluster: [{ host: '127.0.0.1', port: 7000 }] } })).toThrow(
      new SharedSessionOptionsError(
        'keyLayout',
        "must be 'cluster' or 'compact' with Redis Cluster (the v1 keys of a session are in three slots)",
      ),
    );
    expect(() => resolveSharedSessionOptions({ secret: SECRET, keyLayout: 'cluster', keyPrefix: '{app}' })).toThrow(/option "keyPrefix"/);
    expect(() => resolveSharedSessionOptions({ secret: SECRET, keyLayout: 'cluster', redis: { cluster: [] } })).toThrow(
      /option "redis.cluster"/,
    );
    expect(() => resolveSharedSessionOptions({ secret: SECRET, keyLayout: 'cluster', redis: { cluster: undefined as never } })).toThrow(
      /option "redis.cluster"/,
    );
    expect(() => resolveSharedSessionOptions({ secret: SECRET, keyLayout: 'compakt' as never })).toThrow(/option "keyLayout"/);
    // Section 15: the compact layout too holds the session id as a hash tag.
    expect(() => resolveSharedSessionOptions({ secret: SECRET, keyLayout: 'compact', keyPrefix: 'a{b' })).toThrow(
      new SharedSessionOptionsError('keyPrefix', "must hold no { or } with keyLayout 'compact' (the session id is the hash tag)"),
    );
    expect(
      resolveSharedSessionOptions({ secret: SECRET, keyLayout: 'compact', redis: { cluster: [{ host: '127.0.0.1', port: 7000 }] } })
        .keyLayout,
    ).toBe('compact');
  });
});

import Redis, { Cluster } from 'ioredis';
import {
  KeyLayout,
  newTimedSessionId,
  noticesDuring,
  readSession,
  sessionKeyCount,
  sessionKeys,
  signature,
  userIndexKey,
  writeSession,
} from '../../../protocol/testkit';
import { RedisClusterStack } from '../../../stack/redis-cluster';
import { RedisServer } from '../../../stack/redis-server';
import { sleep } from '../../../stack/wait';
import { sessionRepository } from '../src/flask-redis-session.store';
import type { SessionRepository } from '../src/session-repository';
import { quietLogger } from './support';

/**
 * The contract of the session repository, the same on every key layout: each
 * of its operations, on a real redis-server (v1, cluster and compact) and on
 * a real Redis Cluster (cluster and compact), judged by what Redis holds as
 * the protocol's test kit reads it (PROTOCOL.md sections 3, 14 and 15) and by
 * the notices heard on the channel (section 7).
 */
const SECRET = 'contract-secret';
const SALT = 'contract-salt';
const JOE = 'joe@example.com';

interface Target {
  layout: KeyLayout;
  topology: 'one Redis' | 'Redis Cluster';
}
const TARGETS: Target[] = [
  { layout: 'v1', topology: 'one Redis' },
  { layout: 'cluster', topology: 'one Redis' },
  { layout: 'compact', topology: 'one Redis' },
  { layout: 'cluster', topology: 'Redis Cluster' },
  { layout: 'compact', topology: 'Redis Cluster' },
];

let server: RedisServer;
let cluster: RedisClusterStack;
beforeAll(async () => {
  [server, cluster] = await Promise.all([RedisServer.start(), RedisClusterStack.start()]);
}, 60_000);
afterAll(async () => {
  await server?.dispose();
  await cluster?.dispose();
});

describe.each(TARGETS)('SessionRepository on the $layout layout, $topology', ({ layout, topology }) => {
  let client: Redis | Cluster;
  /** Where the notices are heard (on a Cluster, PUBLISH reaches every node). */
  let listener: Redis;
  let prefix: string;
  let sessions: SessionRepository;
  let n = 0;

  const repository = (options: { prefix?: string; max?: number } = {}) =>
    sessionRepository({
      client,
      keyPrefix: options.prefix ?? prefix,
      keyLayout: layout,
      userIdField: 'username',
      maxSessionsPerUser: options.max ?? 0,
      logger: quietLogger,
    });
  const sid = (issued = Date.now()) => newTimedSessionId(issued);
  const sig = (id: string) => signature(id, SECRET, SALT);
  /** A create, as a login makes it. */
  const create = (id: string, data: Record<string, unknown>, on = sessions) =>
    on.save(id, data, (data.groups as string[]) ?? [], undefined, sig(id), 3600, data.username as string | undefined);
  const stored = (id: string, on = prefix) => readSession(client, on, id, layout);
  const indexed = (user: string, on = prefix) => client.zrange(userIndexKey(on, user), 0, -1);
  /**
   * The notices heard while `run` runs. On a Cluster a PUBLISH reaches the
   * listener's node over the cluster bus, in no set order with the test kit's
   * end marker, and a notice published just before may still be on its way:
   * there, what came after a settling pause, each once, until `expected`
   * came (at most 5 s).
   */
  async function heard(run: () => Promise<unknown>, expected: number): Promise<string[]> {
    if (topology === 'one Redis') return noticesDuring(listener, prefix, run);
    const subscriber = listener.duplicate();
    const notices = new Set<string>();
    subscriber.on('message', (_channel: string, message: string) => notices.add(message));
    await subscriber.subscribe(`${prefix}:invalidate`);
    try {
      await sleep(200);
      notices.clear();
      await run();
      for (let waited = 0; notices.size < expected && waited < 5000; waited += 20) await sleep(20);
      return [...notices];
    } finally {
      subscriber.disconnect();
    }
  }

  beforeAll(async () => {
    client =
      topology === 'one Redis' ? new Redis(server.url) : new Cluster(cluster.startupNodes, { redisOptions: { maxRetriesPerRequest: 2 } });
    listener = topology === 'one Redis' ? new Redis(server.url) : new Redis(cluster.startupNodes[0]);
    await client.ping();
  });
  beforeEach(() => {
    prefix = `contract_${layout}_${++n}`;
    sessions = repository();
  });
  afterAll(() => {
    client?.disconnect();
    listener?.disconnect();
  });

  it('creates a session as the protocol says, indexed under its user, with the notice', async () => {
    const id = sid();
    expect(await heard(() => create(id, { username: JOE, groups: ['a', 'b'], theme: 'dark' }), 1)).toEqual([id]);
    expect(await stored(id)).toMatchObject({
      data: { username: JOE, groups: ['a', 'b'], theme: 'dark' },
      signature: sig(id),
      groups: ['a', 'b'],
    });
    expect(await indexed(JOE)).toEqual([id]);
  });

  it('reads a session: its JSON, time to live, no leftovers, no mark', async () => {
    const id = sid();
    await create(id, { username: JOE, groups: ['a'] });
    const [json, pttl, leftovers, mark] = await sessions.read(id);
    expect(JSON.parse(json!)).toEqual({ username: JOE, groups: ['a'] });
    expect(pttl).toBeGreaterThan(3_590_000);
    expect([leftovers, mark]).toEqual([0, null]);
    expect(await sessions.read(sid())).toEqual([null, -2, 0, null]);
  });

  it('reads a half-deleted or malformed session as none, with leftovers to delete', async () => {
    const id = sid();
    if (layout === 'compact') await client.set(`${prefix}:{${id}}`, 'not a compact value');
    else
      await writeSession(client, prefix, id, { username: JOE }, { signature: sig(id), layout }).then(() =>
        client.del(sessionKeys(prefix, id, layout).data),
      );
    const [json, , leftovers] = await sessions.read(id);
    expect(json).toBeNull();
    expect(leftovers).toBeGreaterThan(0);
    expect(await sessions.end(id)).toBe(layout === 'compact'); // a malformed value is a key; a missing data key is not
    expect(await sessionKeyCount(client, prefix, id, layout)).toBe(0);
  });

  // The store deletes what a read counted as leftovers; a session written whole in the meantime (a restore after a
  // Redis restart, a login's write) must not go with them: the check that it is still none is in the delete's script.
  it('drops a read’s leftovers only while the session is still none: a session written whole since the read stays', async () => {
    const id = sid();
    const leave = () =>
      layout === 'compact'
        ? client.set(`${prefix}:{${id}}`, 'not a compact value')
        : writeSession(client, prefix, id, { username: JOE }, { signature: sig(id), layout }).then(() =>
            client.del(sessionKeys(prefix, id, layout).data),
          );
    await leave();
    expect((await sessions.read(id))[2]).toBeGreaterThan(0);
    await writeSession(client, prefix, id, { username: JOE, groups: ['a'] }, { signature: sig(id), layout });
    expect(await heard(async () => expect(await sessions.dropLeftovers(id)).toBe(false), 0)).toEqual([]);
    expect(JSON.parse((await sessions.read(id))[0]!)).toEqual({ username: JOE, groups: ['a'] });
    await leave();
    expect(await heard(async () => expect(await sessions.dropLeftovers(id)).toBe(true), 1)).toEqual([id]);
    expect(await sessionKeyCount(client, prefix, id, layout)).toBe(0);
  });

  // v1's read takes two round trips when the data key is missing (the second counts the leftovers): a session
  // written whole between them (a restore after a Redis restart, a write) is read, never counted as leftovers, which
  // the store deletes with the session. Seen once in a fresh CI run: the restored session was destroyed.
  (layout === 'v1' ? it : it.skip)('reads a session written whole between its two round trips, and counts no leftovers', async () => {
    const id = sid();
    const writer = new Redis(server.url);
    const exists = (client as Redis).exists.bind(client);
    let written = false;
    // Between the first round trip's answer and the second's commands, another client writes the whole session.
    const spy = jest.spyOn(client as Redis, 'exists').mockImplementation((async (...keys: string[]) => {
      if (!written) {
        written = true;
        await writeSession(writer, prefix, id, { username: JOE, groups: ['a'] }, { signature: sig(id), layout });
      }
      return exists(...keys);
    }) as never);
    try {
      const [json, pttl, leftovers] = await sessions.read(id);
      expect(written).toBe(true);
      expect([JSON.parse(json!), pttl > 0, leftovers]).toEqual([{ username: JOE, groups: ['a'] }, true, 0]);
    } finally {
      spy.mockRestore();
      writer.disconnect();
    }
    expect(await sessionKeyCount(client, prefix, id, layout)).toBe(3);
  });

  it('updates while the session exists; a save after its end is dropped, never re-creating it', async () => {
    const id = sid();
    await create(id, { username: JOE, groups: ['a'] });
    expect(await sessions.save(id, { username: JOE, groups: ['a'], n: 2 }, ['a'], ['a'], sig(id), 3600, JOE)).toEqual({
      written: true,
      groups: ['a'],
    });
    expect((await stored(id)).data).toMatchObject({ n: 2 });
    expect(await sessions.save(id, { username: JOE, groups: ['b'] }, ['b'], ['a'], sig(id), 3600, JOE)).toEqual({
      written: true,
      groups: ['b'],
    });
    expect((await stored(id)).groups).toEqual(['b']);
    expect(await sessions.end(id)).toBe(true);
    expect(await sessions.save(id, { username: JOE, groups: ['b'], n: 3 }, ['b'], ['b'], sig(id), 3600, JOE)).toEqual({
      written: false,
      groups: ['b'],
    });
    expect(await sessionKeyCount(client, prefix, id, layout)).toBe(0);
  });

  it('keeps groups changed after the read: a stale save adopts them (section 8)', async () => {
    const id = sid();
    await create(id, { username: JOE, groups: ['a'] });
    expect(
      await sessions.changeGroups(JOE, (json) => ({ json: JSON.stringify({ ...JSON.parse(json), groups: ['z'] }), groups: ['z'] })),
    ).toBe(1);
    const outcome = await sessions.save(id, { username: JOE, groups: ['a'], n: 2 }, ['a'], ['a'], sig(id), 3600, JOE);
    expect(outcome).toEqual({ written: true, groups: ['z'] });
    expect(await stored(id)).toMatchObject({ data: { username: JOE, groups: ['z'], n: 2 }, groups: ['z'] });
  });

  it('refreshes every key and the index member, and never re-creates a key that is gone', async () => {
    const id = sid();
    await create(id, { username: JOE, groups: ['a'] });
    const now = Date.now();
    await sessions.refresh(id, JOE, now, 7_200_000);
    const ttl = (await stored(id)).ttl;
    expect(Object.values(ttl).every((t) => t > 7000)).toBe(true);
    expect(Number(await client.zscore(userIndexKey(prefix, JOE), id))).toBeGreaterThanOrEqual(now + 7_200_000 - 1000);
    const gone = sid();
    await sessions.refresh(gone, JOE, now, 7_200_000);
    expect(await sessionKeyCount(client, prefix, gone, layout)).toBe(0);
  });

  it('ends a session: its keys, the notice, and it is no longer a live session of its user', async () => {
    const id = sid();
    await create(id, { username: JOE, groups: ['a'] });
    expect(await heard(async () => expect(await sessions.end(id)).toBe(true), 1)).toEqual([id]);
    expect(await sessionKeyCount(client, prefix, id, layout)).toBe(0);
    expect(await sessions.liveSessions(JOE)).toEqual([]);
    expect(await sessions.end(id)).toBe(false);
  });

  it('lists, reads, revokes and ends a user’s sessions', async () => {
    const ids = [sid(Date.now() - 3000), sid(Date.now() - 2000), sid(Date.now() - 1000)];
    for (const id of ids) await create(id, { username: JOE, groups: ['a'] });
    await create(sid(), { username: 'ann', groups: ['a'] });
    const live = await sessions.liveSessions(JOE);
    expect(live.map((s) => s.sid).sort()).toEqual([...ids].sort());
    expect(live.every((s) => JSON.parse(s.json).username === JOE && s.pttl > 0)).toBe(true);
    expect((await sessions.readJson(ids[0]))?.sid).toBe(ids[0]);
    expect(await sessions.readJson(sid())).toBeNull();
    expect(await sessions.revokeUser(JOE, [ids[2]])).toBe(2);
    expect((await sessions.liveSessions(JOE)).map((s) => s.sid)).toEqual([ids[2]]);
    expect(await sessions.endUserSessions(JOE, [ids[2], sid()])).toBe(1);
    expect(await sessions.liveSessions(JOE)).toEqual([]);
    expect(await sessions.liveSessions('ann')).toHaveLength(1);
  });

  it('changes the groups of every live session of a user, with a notice each', async () => {
    const ids = [sid(), sid()];
    for (const id of ids) await create(id, { username: JOE, groups: ['a'] });
    const add = (json: string) => {
      const data = JSON.parse(json);
      const groups = [...data.groups, 'b'];
      return { json: JSON.stringify({ ...data, groups }), groups };
    };
    const notices = await heard(async () => expect(await sessions.changeGroups(JOE, add)).toBe(2), 2);
    expect([...notices].sort()).toEqual([...ids].sort());
    for (const id of ids) expect(await stored(id)).toMatchObject({ data: { groups: ['a', 'b'] }, groups: ['a', 'b'] });
  });

  it('ends the oldest sessions of a user beyond maxSessionsPerUser, at the create', async () => {
    const limited = repository({ max: 2 });
    const ids = [sid(Date.now() - 3000), sid(Date.now() - 2000), sid(Date.now() - 1000)];
    for (const id of ids) await create(id, { username: JOE }, limited);
    expect((await limited.liveSessions(JOE)).map((s) => s.sid).sort()).toEqual(ids.slice(1).sort());
    expect(await sessionKeyCount(client, prefix, ids[0], layout)).toBe(0);
  });

  it('moves a session whose user changed to the new user’s index; a user’s operations skip a session that names another', async () => {
    const id = sid(Date.now() - 2000);
    await create(id, { username: JOE, groups: ['a'] });
    await sessions.save(id, { username: 'ann', groups: ['a'] }, ['a'], ['a'], sig(id), 3600, 'ann', JOE);
    expect(await indexed(JOE)).toEqual([]);
    expect(await indexed('ann')).toEqual([id]);
    // A member left behind (a writer that does not move it): no operation on JOE acts on ann's session.
    await client.zadd(userIndexKey(prefix, JOE), Date.now() + 3_600_000, id);
    expect(await sessions.liveSessions(JOE)).toEqual([]);
    expect(await sessions.changeGroups(JOE, () => ({ json: '{"username":"joe@example.com","groups":["z"]}', groups: ['z'] }))).toBe(0);
    expect(await sessions.revokeUser(JOE, [])).toBe(0);
    expect(await sessions.endUserSessions(JOE, [id])).toBe(0);
    const limited = repository({ max: 1 });
    await create(sid(), { username: JOE }, limited);
    expect(await stored(id)).toMatchObject({ data: { username: 'ann', groups: ['a'] }, groups: ['a'] });
    expect((await sessions.liveSessions('ann')).map((s) => s.sid)).toEqual([id]);
  });

  it('moves the not-before mark forward only: an older session is read with it and cannot be saved', async () => {
    const old = sid(Date.now() - 60_000);
    await create(old, { username: JOE });
    const at = Date.now() - 1000;
    expect(await sessions.moveNotBefore(at)).toBe(at);
    expect(await sessions.moveNotBefore(at - 5000)).toBe(at);
    expect((await sessions.read(old))[3]).toBe(String(at));
    expect(await sessions.save(old, { username: JOE, n: 2 }, [], [], sig(old), 3600, JOE)).toMatchObject({ written: false });
    expect(await sessions.newGeneration('a')).toBe(1);
    expect(await sessions.newGeneration('a')).toBe(2);
    if (layout === 'v1') {
      await sessions.liftNotBefore();
      expect((await sessions.read(old))[3]).toBeNull();
    } else {
      await expect(sessions.liftNotBefore()).rejects.toThrow(new RegExp(`${layout} layout the not-before mark only moves forward`));
    }
  });

  it('names the keys as the protocol does, and finds unindexed sessions by SCAN where the layout can', async () => {
    const id = sid();
    if (layout === 'compact') expect(() => sessions.keys(id)).toThrow(/one key/);
    else expect(sessions.keys(id)).toEqual(sessionKeys(prefix, id, layout));
    expect(sessions.channel).toBe(`${prefix}:invalidate`);
    await writeSession(client, prefix, id, { username: JOE }, { signature: sig(id), layout });
    const found: string[] = [];
    const scan = sessions.scanSessionIds(async (sids) => void found.push(...sids));
    if (layout === 'v1') {
      await scan;
      expect(found).toEqual([id]);
    } else {
      await expect(scan).rejects.toThrow(TypeError);
    }
  });

  if (topology === 'one Redis') {
    it('warns of an eviction policy that can half-delete a session, where the layout can be half-deleted', async () => {
      const admin = new Redis(server.url);
      try {
        await admin.config('SET', 'maxmemory', '1gb');
        await admin.config('SET', 'maxmemory-policy', 'allkeys-lru');
        const warning = await sessions.evictionRisk();
        if (layout === 'compact') expect(warning).toBeUndefined();
        else expect(warning).toMatch(/maxmemory-policy allkeys-lru/);
      } finally {
        await admin.config('SET', 'maxmemory', '0');
        await admin.config('SET', 'maxmemory-policy', 'noeviction');
        admin.disconnect();
      }
    });
  }
});

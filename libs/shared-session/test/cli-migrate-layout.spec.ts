import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { INestApplication } from '@nestjs/common';
import Redis, { Cluster } from 'ioredis';
import request from 'supertest';
import {
  compactKey,
  encodeCompact,
  groupGenerationKey,
  invalidationChannel,
  newTimedSessionId,
  notBeforeKey,
  readSession,
  sessionKeyCount,
  sessionKeys,
  writeSession,
} from '../../../protocol/testkit';
import { RedisClusterStack } from '../../../stack/redis-cluster';
import { RedisServer } from '../../../stack/redis-server';
import { waitFor } from '../../../stack/wait';
import { FlaskRedisSessionStore } from '../src/flask-redis-session.store';
import { emptyCounts } from '../src/layout-migration';
import { REDIS_CLIENT_DEFAULTS } from '../src/redis-client';
import { SessionCookieSigner } from '../src/session-cookie-signer';
import { cli } from './cli-runner';
import { createTestApp } from './test-app';

/**
 * `migrate-layout` (PROTOCOL.md section 14, "Migrating"), as an operator runs
 * it: the built dist/cli.js (build first) in a child process, from a real
 * redis-server holding sessions that the library wrote in the v1 layout to
 * a real Redis Cluster of 3 primaries and 3 replicas, read there by the
 * library in the cluster layout.
 */
const PREFIX = 'mig';
const SECRET = 'a-secret-of-at-least-32-bytes!!!';
const USER = 'joe@example.com';

/** A login of USER in `groups`, written by `store` as the app writes it; its session id. */
async function loginOn(store: FlaskRedisSessionStore, groups: string[]): Promise<string> {
  const sid = newTimedSessionId(Date.now());
  await new Promise<void>((ok, fail) =>
    store.set(sid, { cookie: { originalMaxAge: 1000 }, username: USER, groups } as never, (err) => (err ? fail(err) : ok())),
  );
  return sid;
}

describe('migrate-layout: one Redis (v1 layout) to Redis Cluster (cluster layout) without logging anyone out', () => {
  let source: RedisServer;
  let cluster: RedisClusterStack;
  let admin: Redis;
  let target: Cluster;
  let storeClient: Redis;
  let store: FlaskRedisSessionStore;
  let app: INestApplication;
  let dir: string;
  let env: Record<string, string>;
  const signer = new SessionCookieSigner({ secret: SECRET });
  const http = () => request(app.getHttpServer());
  const cookie = (sid: string) => `session=${signer.sign(sid)}`;

  /** A login on the source, as the app writes it (v1 layout). */
  const login = (groups: string[]) => loginOn(store, groups);

  /** What the JSON summary counted. */
  async function migrate(...args: string[]): Promise<Record<string, unknown> & { counts: Record<string, number> }> {
    return migrateWith('state.json', ...args);
  }

  /** A run with the state file `stateFile` (in the test's folder). */
  async function migrateWith(stateFile: string, ...args: string[]): Promise<Record<string, unknown> & { counts: Record<string, number> }> {
    const out = await cli(['--json', 'migrate-layout', '--state', join(dir, stateFile), ...args], env);
    expect([out.status, out.stderr]).toEqual([0, '']);
    return JSON.parse(out.stdout);
  }

  beforeAll(async () => {
    source = await RedisServer.start();
    cluster = await RedisClusterStack.start();
    admin = new Redis(source.url);
    target = cluster.client();
    storeClient = new Redis(source.url, REDIS_CLIENT_DEFAULTS);
    store = new FlaskRedisSessionStore({
      client: storeClient,
      signer,
      keyPrefix: PREFIX,
      idleTimeoutSeconds: 3600,
      logger: { error: jest.fn(), warn: jest.fn(), log: jest.fn() },
    });
    await waitFor('client ready', async () => storeClient.status === 'ready');
    app = await createTestApp({ secret: SECRET, keyPrefix: PREFIX, keyLayout: 'cluster', redis: { cluster: cluster.startupNodes } });
    dir = mkdtempSync(join(tmpdir(), 'rss-migrate-'));
    env = {
      REDIS_URL: source.url,
      SESSION_KEY_PREFIX: PREFIX,
      REDIS_CLUSTER_NODES: cluster.startupNodes.map((n) => `${n.host}:${n.port}`).join(','),
    };
  }, 60_000);
  afterAll(async () => {
    await app?.close();
    storeClient?.disconnect();
    admin?.disconnect();
    target?.disconnect();
    await cluster?.dispose();
    await source?.dispose();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('copies, switches, carries over the window (new, changed, logged out), and never undoes a logout', async () => {
    const kept = await login(['one']);
    const changed = await login(['one']);
    const loggedOut = await login(['one']);
    const usedLate = await login(['one']);
    const bothSides = await login(['one']);
    const targetOnly = await login(['one']);
    const endedThenWritten = await login(['one']);
    // A v1 writer's session (an untimed id, Flask's way), with a ttl of its own.
    const flask = '3f1d7c9e-8a4b-4c2d-9e6f-0a1b2c3d4e5f';
    await writeSession(
      admin,
      PREFIX,
      flask,
      { username: 'sam@example.com', groups: ['two'] },
      { signature: signer.signature(flask), ttl: 900 },
    );
    // A session the cluster already holds under the id of one on the source: never overwritten.
    const clash = await login(['one']);
    await writeSession(
      target,
      PREFIX,
      clash,
      { username: 'other@example.com', groups: ['nine'] },
      { signature: 'y'.repeat(27), layout: 'cluster' },
    );
    const all = [kept, changed, loggedOut, usedLate, bothSides, targetOnly, endedThenWritten, flask];

    // A dry run says what it would do and writes nothing.
    const dry = await migrate('--dry-run');
    expect(dry.counts).toMatchObject({ copied: 8, skippedExisting: 1 });
    expect(await sessionKeyCount(target, PREFIX, kept, 'cluster')).toBe(0);
    expect(existsSync(join(dir, 'state.json'))).toBe(false);

    // Run 1: every session copied, with its remaining time to live.
    const first = await migrate();
    expect(first.counts).toEqual({ ...zero, copied: 8, skippedExisting: 1 });
    for (const sid of all) {
      const [was, now] = [await readSession(admin, PREFIX, sid), await readSession(target, PREFIX, sid, 'cluster')];
      expect({ ...now, ttl: undefined }).toEqual({ ...was, ttl: undefined });
      for (const key of ['data', 'signature', 'groups'] as const) {
        if (was.ttl[key] > 0) expect(Math.abs(now.ttl[key] - was.ttl[key])).toBeLessThanOrEqual(2);
      }
    }
    expect((await readSession(target, PREFIX, flask, 'cluster')).ttl.data).toBeGreaterThan(890);
    expect((await readSession(target, PREFIX, flask, 'cluster')).ttl.data).toBeLessThanOrEqual(900);
    expect((await readSession(target, PREFIX, clash, 'cluster')).data).toEqual({ username: 'other@example.com', groups: ['nine'] });

    // The same cookies work on the cluster: same id, same signature.
    await http().get('/groups/one/report').set('Cookie', cookie(kept)).expect(200);
    await http().get('/groups/two/report').set('Cookie', cookie(kept)).expect(403);
    await http().get('/groups/two/report').set('Cookie', cookie(flask)).expect(200);

    // The window: the source still takes writes from apps not yet switched...
    await writeSession(
      admin,
      PREFIX,
      changed,
      { username: USER, groups: ['two'], _idle: 3600 },
      { signature: signer.signature(changed), ttl: 3600 },
    );
    await store.end(loggedOut);
    const lateLogin = await login(['one']);
    await admin.pexpire(sessionKeys(PREFIX, usedLate).data, 7_200_000);
    await writeSession(admin, PREFIX, bothSides, { username: USER, groups: ['three'] }, { signature: signer.signature(bothSides) });
    // ...while switched apps write the cluster.
    await http()
      .post('/groups')
      .set('Cookie', cookie(bothSides))
      .send({ groups: ['four'] })
      .expect(204);
    await http()
      .post('/groups')
      .set('Cookie', cookie(targetOnly))
      .send({ groups: ['five'] })
      .expect(204);
    // Written on the cluster, then ended on the source (a logout in the window): the end wins, and the run names it.
    await http()
      .post('/groups')
      .set('Cookie', cookie(endedThenWritten))
      .send({ groups: ['six'] })
      .expect(204);
    await store.end(endedThenWritten);

    // Run 2 (--finish), with a subscriber on the cluster's revocation channel, as nginx is.
    const sub = cluster.client();
    const heard: string[] = [];
    sub.on('message', (_c: string, m: string) => heard.push(m));
    await sub.subscribe(invalidationChannel(PREFIX));
    try {
      // A dry run of it first: the same decisions, nothing written, no notice.
      const stateBefore = readFileSync(join(dir, 'state.json'), 'utf8');
      const rehearsal = await migrate('--finish', '--dry-run');
      expect(await sessionKeyCount(target, PREFIX, loggedOut, 'cluster')).toBe(3);
      expect(await sessionKeyCount(target, PREFIX, lateLogin, 'cluster')).toBe(0);
      expect(readFileSync(join(dir, 'state.json'), 'utf8')).toBe(stateBefore);
      const second = await migrate('--finish');
      expect(second.counts).toEqual(rehearsal.counts);
      expect(second.counts).toEqual({
        ...zero,
        copied: 1, // lateLogin
        updated: 1, // changed
        deleted: 2, // loggedOut, endedThenWritten
        extended: 1, // usedLate
        unchanged: 2, // kept, flask
        changedOnTarget: 2, // bothSides, targetOnly
        skippedExisting: 1, // clash
      });
      expect(second.changedOnBothSides).toEqual([bothSides]);
      expect(second.endedOnSourceOnly).toEqual([endedThenWritten]);
      await waitFor(
        'the notices of the logouts and of the change',
        async () => heard.includes(loggedOut) && heard.includes(endedThenWritten) && heard.includes(changed),
      );
    } finally {
      sub.disconnect();
    }
    // The logout holds on the cluster, the change carried over, the switched apps' writes kept.
    expect(await sessionKeyCount(target, PREFIX, loggedOut, 'cluster')).toBe(0);
    await http().get('/groups/one/report').set('Cookie', cookie(loggedOut)).expect(401);
    expect(await sessionKeyCount(target, PREFIX, endedThenWritten, 'cluster')).toBe(0);
    await http().get('/groups/six/report').set('Cookie', cookie(endedThenWritten)).expect(401);
    await http().get('/groups/two/report').set('Cookie', cookie(changed)).expect(200);
    await http().get('/groups/one/report').set('Cookie', cookie(changed)).expect(403);
    await http().get('/groups/one/report').set('Cookie', cookie(lateLogin)).expect(200);
    expect((await readSession(target, PREFIX, bothSides, 'cluster')).groups).toEqual(['four']);
    expect((await readSession(target, PREFIX, targetOnly, 'cluster')).groups).toEqual(['five']);
    expect((await readSession(target, PREFIX, usedLate, 'cluster')).ttl.data).toBeGreaterThan(7100);

    // A logout on the cluster after the switch: no later run brings the session back.
    await http().post('/logout').set('Cookie', cookie(kept)).expect(204);
    const third = await migrate('--finish');
    expect(third.counts).toMatchObject({ copied: 0, updated: 0, deleted: 0, goneOnTarget: 1 });
    expect(await sessionKeyCount(target, PREFIX, kept, 'cluster')).toBe(0);
    await http().get('/groups/one/report').set('Cookie', cookie(kept)).expect(401);

    // Idempotent: another run writes nothing, and still does not bring the logged-out session back.
    const fourth = await migrate('--finish');
    expect(fourth.counts).toMatchObject({ copied: 0, updated: 0, deleted: 0, extended: 0, goneOnTarget: 1 });
    expect(await sessionKeyCount(target, PREFIX, kept, 'cluster')).toBe(0);
    expect(JSON.parse(readFileSync(join(dir, 'state.json'), 'utf8')).sessions[kept]).toBe('-');
  }, 60_000);

  it('with a not-before mark on the source, copies only the sessions it lets live, and says the mark and the group generations are not carried over', async () => {
    await admin.flushall();
    const before = await login(['one']);
    const flask = '4f1d7c9e-8a4b-4c2d-9e6f-0a1b2c3d4e5f';
    await writeSession(admin, PREFIX, flask, { username: 'sam@example.com', groups: ['two'] }, { signature: signer.signature(flask) });
    // A mark after the first login's millisecond (a session issued at the mark lives): on a fast machine both fell in one.
    await admin.set(notBeforeKey(PREFIX), String(Date.now() + 2));
    await admin.set(groupGenerationKey(PREFIX, 'one'), '3');
    await new Promise((r) => setTimeout(r, 10));
    const after = await login(['one']);
    const out = await cli(['migrate-layout', '--state', join(dir, 'marked.json')], env);
    expect(out.status).toBe(0);
    expect(out.stdout).toMatch(/^copied 1, unchanged 0, .*, ended by the not-before mark 2\n/);
    expect(out.stdout).toContain("note: the source's not-before mark");
    expect(out.stdout).toContain('note: 1 group cache generation(s) on the source are not copied');
    expect(out.stdout).toContain(`state: ${join(dir, 'marked.json')} (1 session(s) copied)\n`);
    expect(await sessionKeyCount(target, PREFIX, after, 'cluster')).toBe(3);
    for (const sid of [before, flask]) expect(await sessionKeyCount(target, PREFIX, sid, 'cluster')).toBe(0);
  });

  it('copies a few thousand sessions in batches, each once', async () => {
    await admin.flushall();
    const sids = Array.from({ length: 3000 }, () => newTimedSessionId(Date.now()));
    for (let i = 0; i < sids.length; i += 500) {
      await Promise.all(
        sids
          .slice(i, i + 500)
          .map((sid) => writeSession(admin, PREFIX, sid, { username: USER, groups: ['one', 'two'] }, { signature: signer.signature(sid) })),
      );
    }
    const started = performance.now();
    const out = await migrateWith('many.json');
    const ms = performance.now() - started;
    expect(out.counts).toEqual({ ...zero, copied: 3000 });
    expect(out.stateSessions).toBe(3000);
    console.log(`migrate-layout: 3000 sessions copied in ${Math.round(ms)} ms (the CLI's start included)`);
    for (const sid of [sids[0], sids[1499], sids[2999]]) {
      expect((await readSession(target, PREFIX, sid, 'cluster')).groups).toEqual(['one', 'two']);
    }
    const again = await migrateWith('many.json', '--finish');
    expect(again.counts).toEqual({ ...zero, unchanged: 3000 });
  }, 60_000);

  it('--to-compact <nodes>: the compact layout on the cluster (PROTOCOL.md section 15), a logout carried over', async () => {
    await admin.flushall();
    const [kept, loggedOut] = [await login(['one']), await login(['two'])];
    const nodes = env.REDIS_CLUSTER_NODES;
    const run = async (...args: string[]) => {
      const out = await cli(['--json', 'migrate-layout', '--to-compact', nodes, '--state', join(dir, 'to-compact.json'), ...args], env);
      expect([out.status, out.stderr]).toEqual([0, '']);
      return (JSON.parse(out.stdout) as { counts: Record<string, number> }).counts;
    };
    expect(await run()).toEqual({ ...zero, copied: 2 });
    const compactApp = await createTestApp({
      secret: SECRET,
      keyPrefix: PREFIX,
      keyLayout: 'compact',
      redis: { cluster: cluster.startupNodes },
    });
    try {
      expect((await readSession(target, PREFIX, kept, 'compact')).groups).toEqual(['one']);
      await request(compactApp.getHttpServer()).get('/groups/one/report').set('Cookie', cookie(kept)).expect(200);
      await store.end(loggedOut);
      expect(await run('--finish')).toEqual({ ...zero, deleted: 1, unchanged: 1 });
      expect(await sessionKeyCount(target, PREFIX, loggedOut, 'compact')).toBe(0);
      await request(compactApp.getHttpServer()).get('/groups/two/report').set('Cookie', cookie(loggedOut)).expect(401);
    } finally {
      await compactApp.close();
    }
  }, 30_000);

  it('says what is wrong: exit 2 for bad usage, 1 when the cluster cannot be reached', async () => {
    const state = join(dir, 'usage.json');
    const run = (args: string[], extra: Record<string, string> = {}) =>
      cli(['migrate-layout', '--state', state, ...args], { ...env, ...extra });
    expect(await run(['--finish'])).toMatchObject({ status: 2, stderr: expect.stringContaining('--finish: no state file') });
    expect(await run([], { REDIS_CLUSTER_NODES: 'nowhere' })).toMatchObject({
      status: 2,
      stderr: expect.stringContaining('not host:port: nowhere'),
    });
    expect(await run([], { SESSION_KEY_PREFIX: '{app}' })).toMatchObject({ status: 2, stderr: expect.stringContaining('no { or }') });
    expect(await run([], { REDIS_CLUSTER_NODES: '127.0.0.1:1' })).toMatchObject({
      status: 1,
      stderr: 'nest-resty-shared-session: cannot reach the Redis Cluster at 127.0.0.1:1\n',
    });
    expect(existsSync(state)).toBe(false);
    expect((await run([])).status).toBe(0);
    expect(await run([])).toMatchObject({ status: 2, stderr: expect.stringContaining('exists: a later run takes --finish') });
    expect(await cli(['migrate-layout', '--state', state, '--finish', '--prefix', 'other'], env)).toMatchObject({
      status: 2,
      stderr: expect.stringContaining('is the state of prefix mig, not other'),
    });
  }, 30_000);
});

describe('migrate-layout --to-compact: the v1 layout to the compact layout on the same Redis (PROTOCOL.md section 15)', () => {
  let server: RedisServer;
  let admin: Redis;
  let storeClient: Redis;
  let store: FlaskRedisSessionStore;
  let app: INestApplication;
  let dir: string;
  let env: Record<string, string>;
  const signer = new SessionCookieSigner({ secret: SECRET });
  const http = () => request(app.getHttpServer());
  const cookie = (sid: string) => `session=${signer.sign(sid)}`;
  const migrate = async (...args: string[]) => {
    const out = await cli(['--json', 'migrate-layout', '--to-compact', '--state', join(dir, 'compact.json'), ...args], env);
    expect([out.status, out.stderr]).toEqual([0, '']);
    return JSON.parse(out.stdout) as { counts: Record<string, number> };
  };
  const login = (groups: string[]) => loginOn(store, groups);

  beforeAll(async () => {
    server = await RedisServer.start();
    admin = new Redis(server.url);
    storeClient = new Redis(server.url, REDIS_CLIENT_DEFAULTS);
    const logger = { error: jest.fn(), warn: jest.fn(), log: jest.fn() };
    store = new FlaskRedisSessionStore({ client: storeClient, signer, keyPrefix: PREFIX, idleTimeoutSeconds: 3600, logger });
    await waitFor('client ready', async () => storeClient.status === 'ready');
    app = await createTestApp({ secret: SECRET, keyPrefix: PREFIX, keyLayout: 'compact', redis: server.url });
    dir = mkdtempSync(join(tmpdir(), 'rss-migrate-compact-'));
    env = { REDIS_URL: server.url, SESSION_KEY_PREFIX: PREFIX };
  });
  afterAll(async () => {
    await app?.close();
    storeClient?.disconnect();
    admin?.disconnect();
    await server?.dispose();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('copies each session to its one key, keeps the cookies working, carries a logout and a change over, and is idempotent', async () => {
    const kept = await login(['one']);
    const changed = await login(['one']);
    const loggedOut = await login(['one']);
    const flask = '3f1d7c9e-8a4b-4c2d-9e6f-0a1b2c3d4e5f';
    await writeSession(
      admin,
      PREFIX,
      flask,
      { username: 'sam@example.com', groups: ['two'] },
      { signature: signer.signature(flask), ttl: 900 },
    );

    const first = await migrate();
    expect(first.counts).toEqual({ ...zero, copied: 4 });
    // Section 15: the value is the signature, then the source's data; the ttl the source data key's.
    for (const sid of [kept, flask]) {
      const was = await readSession(admin, PREFIX, sid);
      expect(await admin.get(compactKey(PREFIX, sid))).toBe(
        encodeCompact(was.signature!, (await admin.get(sessionKeys(PREFIX, sid).data))!),
      );
      const now = await readSession(admin, PREFIX, sid, 'compact');
      expect(now.groups).toEqual(was.groups);
      expect(Math.abs(now.ttl.data - was.ttl.data)).toBeLessThanOrEqual(1);
    }
    // The same cookies work on the compact layout.
    await http().get('/groups/one/report').set('Cookie', cookie(kept)).expect(200);
    await http().get('/groups/two/report').set('Cookie', cookie(flask)).expect(200);
    await http().get('/groups/two/report').set('Cookie', cookie(kept)).expect(403);

    // The window: a party not yet switched logs one out and changes another, on the v1 keys.
    await store.end(loggedOut);
    await writeSession(admin, PREFIX, changed, { username: USER, groups: ['two'], _idle: 3600 }, { signature: signer.signature(changed) });
    const second = await migrate('--finish');
    expect(second.counts).toEqual({ ...zero, deleted: 1, updated: 1, unchanged: 2 });
    expect(await sessionKeyCount(admin, PREFIX, loggedOut, 'compact')).toBe(0);
    await http().get('/groups/one/report').set('Cookie', cookie(loggedOut)).expect(401);
    await http().get('/groups/two/report').set('Cookie', cookie(changed)).expect(200);
    await http().get('/groups/one/report').set('Cookie', cookie(changed)).expect(403);

    // A switched app's logout is never undone; a write of its own is kept.
    await http().post('/logout').set('Cookie', cookie(kept)).expect(204);
    await http()
      .post('/groups')
      .set('Cookie', cookie(flask))
      .send({ groups: ['five'] })
      .expect(204);
    const third = await migrate('--finish');
    expect(third.counts).toEqual({ ...zero, goneOnTarget: 1, changedOnTarget: 1, unchanged: 1 });
    expect(await sessionKeyCount(admin, PREFIX, kept, 'compact')).toBe(0);
    expect((await readSession(admin, PREFIX, flask, 'compact')).groups).toEqual(['five']);

    // --events: each run is one migration_step event (PROTOCOL.md section 16), on stderr; stdout unchanged.
    const before = Date.now();
    const step = await cli(['--json', 'migrate-layout', '--to-compact', '--state', join(dir, 'compact.json'), '--finish', '--events'], env);
    expect(step.status).toBe(0);
    expect(JSON.parse(step.stdout).counts).toEqual(third.counts);
    const events = step.stderr
      .trim()
      .split('\n')
      .map((line) => JSON.parse(line));
    expect(events).toEqual([{ event: 'migration_step', op: 'migrate-layout', at: expect.any(Number), sessions: 0 }]);
    expect(events[0].at).toBeGreaterThanOrEqual(before);
    // A first run: its sessions are the copies it made.
    const fresh = await cli(['--json', 'migrate-layout', '--to-compact', '--state', join(dir, 'events.json'), '--events'], env);
    const { copied } = JSON.parse(fresh.stdout).counts;
    expect(copied).toBeGreaterThan(0);
    expect(JSON.parse(fresh.stderr)).toMatchObject({ event: 'migration_step', op: 'migrate-layout', sessions: copied });

    // The state is a compact migration's: --finish toward the cluster layout is refused.
    const wrong = await cli(['migrate-layout', '--to-cluster', '127.0.0.1:1', '--state', join(dir, 'compact.json'), '--finish'], env);
    expect(wrong).toMatchObject({ status: 2, stderr: expect.stringContaining('to the compact layout, not cluster') });
    expect(await cli(['migrate-layout', '--state', join(dir, 'none.json')], env)).toMatchObject({
      status: 2,
      stderr: expect.stringContaining('--to-cluster <nodes> or --to-compact [target]'),
    });
  });
});

const zero = emptyCounts();

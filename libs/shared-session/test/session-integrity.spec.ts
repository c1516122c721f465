import type { INestApplication } from '@nestjs/common';
import Redis from 'ioredis';
import request from 'supertest';
import { RedisServer } from '../../../stack/redis-server';
import {
  cookieValue,
  KeyLayout,
  newTimedSessionId,
  PROTOCOL_DEFAULTS,
  sessionKeyCount,
  sessionKeys,
  signature,
  userIndexKey,
  writeSession,
} from '../../../protocol/testkit';
import { SharedSessionService } from '../src';
import { forEachAdapter, login as loginAs } from './support';
import { createTestApp } from './test-app';

/**
 * Issue 23, findings 1, 4 and 5, in a Nest app on a real redis-server, on
 * every layout: a session whose user changed is no longer the old user's
 * (PROTOCOL.md section 13.1); ill-formed user ids are refused (13.1); a
 * session's JSON beyond section 15.1's bounds is malformed, refused and
 * deleted, never a hang.
 */
const SECRET = 'integrity-secret';
const SALT = 'integrity-salt';
const NAME = PROTOCOL_DEFAULTS.cookieName;

let server: RedisServer;
let admin: Redis;
beforeAll(async () => {
  server = await RedisServer.start();
  admin = new Redis(server.url);
});
afterAll(async () => {
  admin?.disconnect();
  await server?.dispose();
});

forEachAdapter((adapter) =>
  describe.each<KeyLayout>(['v1', 'cluster', 'compact'])('on the %s layout', (layout) => {
    const prefix = `integrity_${layout}`;
    let app: INestApplication;
    let service: SharedSessionService;

    beforeAll(async () => {
      app = await createTestApp(
        { secret: SECRET, salt: SALT, keyPrefix: prefix, keyLayout: layout, redis: server.url, ttlSeconds: 3600 },
        false,
        adapter,
      );
      service = app.get(SharedSessionService);
    });
    afterAll(() => app?.close());
    beforeEach(() => admin.flushall());

    /** The session cookie's value. */
    const login = async (username: string, groups: string[] = []) =>
      (await loginAs(app, { username, groups })).cookie.slice(NAME.length + 1);
    const cookie = (value: string) => `${NAME}=${value}`;
    const sidOf = (value: string) => value.slice(0, value.lastIndexOf('.'));

    it('finding 1: a session renamed from alice to bob leaves alice’s index; list, set-groups and revoke of alice leave it alone', async () => {
      const value = await login('alice', ['staff']);
      await request(app.getHttpServer()).post('/rename').set('Cookie', cookie(value)).send({ username: 'bob' }).expect(204);
      const sid = sidOf(decodeURIComponent(value));
      expect(await admin.zrange(userIndexKey(prefix, 'alice'), 0, -1)).toEqual([]);
      expect(await admin.zrange(userIndexKey(prefix, 'bob'), 0, -1)).toEqual([sid]);
      // A writer that does not move it (the 2017 package, a crash half-way) leaves alice's member: it must not count.
      await admin.zadd(userIndexKey(prefix, 'alice'), Date.now() + 3_600_000, sid);
      expect(await service.listSessions('alice')).toEqual([]);
      expect((await service.setUserGroups('alice', ['admins'])).sessions).toBe(0);
      expect((await service.revokeUser('alice')).sessions).toBe(0);
      const me = await request(app.getHttpServer()).get('/me').set('Cookie', cookie(value)).expect(200);
      expect(me.body).toMatchObject({ username: 'bob', groups: ['staff'] });
      expect((await service.listSessions('bob')).map((s) => s.sessionId)).toEqual([sid]);
      expect((await service.revokeUser('bob')).sessions).toBe(1);
      await request(app.getHttpServer()).get('/me').set('Cookie', cookie(value)).expect(401);
    });

    it('finding 4: a user id or group with a lone surrogate is refused with a TypeError naming it; a@ufffd keeps its session', async () => {
      const value = await login('a\ufffd');
      await expect(service.revokeUser('a\ud800')).rejects.toThrow(/revokeUser: userId must be a non-empty, well-formed string/);
      await expect(service.listSessions('a\udc00')).rejects.toThrow(TypeError);
      await expect(service.setUserGroups('alice', ['g\ud800'])).rejects.toThrow(
        /setUserGroups: groups\[0\] must be a non-empty, well-formed string/,
      );
      await request(app.getHttpServer()).post('/login').send({ username: 'a\ud800' }).expect(500);
      await request(app.getHttpServer())
        .post('/login')
        .send({ username: 'ann', groups: ['\udc00'] })
        .expect(500);
      await request(app.getHttpServer()).get('/me').set('Cookie', cookie(value)).expect(200);
      expect(await service.listSessions('a\ufffd')).toHaveLength(1);
    });

    it('finding 4: a session saved with a lone surrogate is refused on the compact layout (nginx could not read it), kept elsewhere', async () => {
      const value = await login('alice', ['staff']);
      const res = await request(app.getHttpServer()).post('/rename').set('Cookie', cookie(value)).send({ username: 'b\ud800' });
      const me = await request(app.getHttpServer()).get('/me').set('Cookie', cookie(value)).expect(200);
      if (layout === 'compact') {
        expect(me.body.username).toBe('alice'); // the save failed: nothing stored that nginx would refuse
      } else {
        expect(res.status).toBe(204);
        expect(me.body.username).toBe('b\ud800');
        expect(await admin.keys(userIndexKey(prefix, 'b*'))).toEqual([]); // an ill-formed user id is in no index
      }
    });

    /** A session written by another writer, its JSON as given; what the app reads of it (its username, or null: no session). */
    async function readBack(json: string): Promise<string | null> {
      const sid = newTimedSessionId(Date.now());
      const sig = signature(sid, SECRET, SALT);
      if (layout === 'compact') await admin.set(`${prefix}:{${sid}}`, sig + json, 'EX', 3600);
      else
        await writeSession(admin, prefix, sid, {}, { signature: sig, layout }).then(() =>
          admin.set(sessionKeys(prefix, sid, layout).data, json, 'EX', 3600),
        );
      const res = await request(app.getHttpServer())
        .get('/public')
        .set('Cookie', cookie(cookieValue(sid, SECRET, SALT)))
        .expect(200);
      if (res.body.username === null) expect(await sessionKeyCount(admin, prefix, sid, layout)).toBe(0); // malformed: deleted
      return res.body.username as string | null;
    }

    it('finding 5: a session nested 5000 deep is malformed: refused at once and deleted, never a hang', async () => {
      const started = Date.now();
      expect(await readBack(`{"username":"deep","d":${'['.repeat(4999)}${']'.repeat(4999)}}`)).toBeNull();
      expect(Date.now() - started).toBeLessThan(2000);
    });

    it('finding 5: depth 1000 reads, 1001 does not; 64 KiB of JSON reads, one byte more does not', async () => {
      const nested = (depth: number) => `{"username":"deep","d":${'['.repeat(depth - 1)}${']'.repeat(depth - 1)}}`;
      expect(await readBack(nested(1000))).toBe('deep');
      expect(await readBack(nested(1001))).toBeNull();
      const sized = (bytes: number) => {
        const head = '{"username":"big","pad":"';
        return `${head}${'x'.repeat(bytes - head.length - 2)}"}`;
      };
      expect(await readBack(sized(65_536))).toBe('big');
      expect(await readBack(sized(65_537))).toBeNull();
    });
  }),
);

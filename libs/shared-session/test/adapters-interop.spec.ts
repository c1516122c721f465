import type { INestApplication } from '@nestjs/common';
import Redis from 'ioredis';
import request from 'supertest';
import { RedisServer } from '../../../stack/redis-server';
import { cookieValue, PROTOCOL_DEFAULTS, readSession, sessionKeys, signature, vectors, writeSession } from '../../../protocol/testkit';
import { TEST_ADAPTERS, TestAdapter } from './support';
import { createTestApp } from './test-app';

/**
 * One session, two apps: the same module on Express and on Fastify, on one
 * Redis. A session either writes is read by the other, as the protocol says
 * (the oracle is the protocol test kit and its vectors, never the other
 * app), and both write the same bytes for the same login.
 */

const [VECTOR] = vectors.valid;
const { secret: SECRET, salt: SALT } = VECTOR;
const PREFIX = 'adapters_interop';
const NAME = PROTOCOL_DEFAULTS.cookieName;

const asCookie = (value: string) => `${NAME}=${value}`;
const cookieOf = (res: request.Response) =>
  ([] as string[])
    .concat(res.headers['set-cookie'] ?? [])
    .find((c) => c.startsWith(`${NAME}=`))!
    .slice(NAME.length + 1)
    .split(';')[0];
/** The session id of a cookie value the protocol's signer signed with SECRET; null otherwise. */
const sidOf = (value: string) => {
  const sid = value.slice(0, value.lastIndexOf('.'));
  return sid && value === cookieValue(sid, SECRET, SALT) ? sid : null;
};

describe('a session shared by the app on Express and the app on Fastify (same secret, salt, prefix)', () => {
  let server: RedisServer;
  let admin: Redis;
  const apps = {} as Record<TestAdapter, INestApplication>;
  const http = (adapter: TestAdapter) => request(apps[adapter].getHttpServer());

  async function login(adapter: TestAdapter, username: string, groups: string[]): Promise<string> {
    return cookieOf(await http(adapter).post('/login').send({ username, groups, extra: 'kept' }).expect(204));
  }

  beforeAll(async () => {
    server = await RedisServer.start();
    admin = new Redis(server.url);
    for (const adapter of TEST_ADAPTERS) {
      apps[adapter] = await createTestApp(
        { secret: SECRET, salt: SALT, keyPrefix: PREFIX, redis: server.url, ttlSeconds: 3600 },
        false,
        adapter,
      );
    }
  });
  afterAll(async () => {
    for (const app of Object.values(apps)) await app?.close();
    admin?.disconnect();
    await server?.dispose();
  });
  beforeEach(() => admin.flushall());

  const pairs: [TestAdapter, TestAdapter][] = [
    ['fastify', 'express'],
    ['express', 'fastify'],
  ];

  it.each(pairs)('logged in on %s: read, changed and logged out on %s', async (writer, reader) => {
    const cookie = await login(writer, 'joe@example.com', ['one']);
    const sid = sidOf(cookie)!;
    expect(sid).not.toBeNull();
    const stored = await readSession(admin, PREFIX, sid);
    expect(stored.signature).toBe(signature(sid, SECRET, SALT));
    expect((await http(reader).get('/me').set('Cookie', asCookie(cookie)).expect(200)).body).toEqual({
      username: 'joe@example.com',
      groups: ['one'],
      extra: 'kept',
    });
    await http(reader)
      .post('/groups')
      .set('Cookie', asCookie(cookie))
      .send({ groups: ['two'] })
      .expect(204);
    await http(writer).get('/groups/two/report').set('Cookie', asCookie(cookie)).expect(200);
    await http(writer).get('/groups/one/report').set('Cookie', asCookie(cookie)).expect(403);
    await http(reader).post('/logout').set('Cookie', asCookie(cookie)).expect(204);
    await http(writer).get('/me').set('Cookie', asCookie(cookie)).expect(401);
  });

  it('the same login writes the same bytes on both adapters: data, signature and groups keys', async () => {
    const written = [];
    for (const adapter of TEST_ADAPTERS) {
      const sid = sidOf(await login(adapter, 'ann', ['b', 'a']))!;
      const keys = sessionKeys(PREFIX, sid);
      written.push({
        data: await admin.get(keys.data),
        signature: await admin.get(keys.signature),
        groups: (await admin.smembers(keys.groups)).sort(),
        expected: signature(sid, SECRET, SALT),
      });
    }
    const [express, fastify] = written;
    expect(fastify.data).toBe(express.data);
    expect(JSON.parse(fastify.data!)).toEqual({ extra: 'kept', username: 'ann', groups: ['b', 'a'], _idle: 3600, _permanent: true });
    expect(fastify.groups).toEqual(express.groups);
    for (const w of written) expect(w.signature).toBe(w.expected);
  });

  it("a session written as the protocol says (its vector's cookie) is the same user on both adapters", async () => {
    await writeSession(
      admin,
      PREFIX,
      VECTOR.sid,
      { _permanent: true, username: 'flask-user', groups: ['g'] },
      { signature: VECTOR.signature, ttl: 600 },
    );
    for (const adapter of TEST_ADAPTERS) {
      const res = await http(adapter)
        .get('/me')
        .set('Cookie', `other=1; ${asCookie(VECTOR.cookie)}`)
        .expect(200);
      expect([adapter, res.body.username, res.body.groups]).toEqual([adapter, 'flask-user', ['g']]);
    }
  });
});

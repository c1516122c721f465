import type { INestApplication } from '@nestjs/common';
import Redis from 'ioredis';
import request from 'supertest';
import { RedisServer } from '../../../stack/redis-server';
import { waitFor } from '../../../stack/ports';
import { SessionCookieSigner } from '../src';
import { createTestApp } from './test-app';

const SECRET = 'test-secret';
const OLD_SECRET = 'test-secret-2025';
const SALT = 'app_session_salt';
const PREFIX = 'app_session_prefix';
const signer = new SessionCookieSigner({ secret: SECRET, salt: SALT });
const oldSigner = new SessionCookieSigner({ secret: OLD_SECRET, salt: SALT });

/** The value of our cookie in a response's Set-Cookie, and its attributes. */
function sessionCookie(res: request.Response): { value: string; attributes: string } | undefined {
  const header = ([] as string[]).concat(res.headers['set-cookie'] ?? []).find((c) => c.startsWith('session='));
  if (!header) return undefined;
  const semi = header.indexOf(';');
  return { value: header.slice('session='.length, semi < 0 ? undefined : semi), attributes: semi < 0 ? '' : header.slice(semi) };
}

describe('SharedSessionModule in a Nest app, on a real redis-server', () => {
  let server: RedisServer;
  let admin: Redis;
  let app: INestApplication;

  async function login(username: string, groups: string[], extra?: string): Promise<string> {
    const res = await request(app.getHttpServer()).post('/login').send({ username, groups, extra }).expect(204);
    return sessionCookie(res)!.value;
  }

  beforeAll(async () => {
    server = await RedisServer.start();
    admin = new Redis(server.url);
    app = await createTestApp({
      secret: SECRET,
      secretFallbacks: [OLD_SECRET],
      salt: SALT,
      keyPrefix: PREFIX,
      redis: server.url,
      ttlSeconds: 3600,
    });
  });
  afterAll(async () => {
    await app.close();
    admin.disconnect();
    await server.dispose();
  });
  beforeEach(() => admin.flushall());

  it('logs in: a Flask-format cookie with the default attributes, and the three keys in Redis', async () => {
    const res = await request(app.getHttpServer()).post('/login').send({ username: 'joe@example.com', groups: ['one', 'three'] }).expect(204);
    const cookie = sessionCookie(res)!;
    const sid = signer.unsign(cookie.value);
    expect(sid).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(cookie.attributes).toMatch(/; Path=\//);
    expect(cookie.attributes).toMatch(/; HttpOnly/);
    expect(cookie.attributes).toMatch(/; SameSite=Lax/);
    expect(cookie.attributes).toMatch(/; Expires=/);
    expect(JSON.parse((await admin.get(`${PREFIX}:data:${sid}`))!)).toEqual({ username: 'joe@example.com', groups: ['one', 'three'] });
    expect(await admin.get(`${PREFIX}:signature:${sid}`)).toBe(cookie.value.split('.')[1]);
    expect((await admin.smembers(`${PREFIX}:groups:${sid}`)).sort()).toEqual(['one', 'three']);
  });

  it('reads the session back from the cookie on the next request', async () => {
    const cookie = await login('joe@example.com', ['one'], 'kept');
    const res = await request(app.getHttpServer()).get('/me').set('Cookie', `session=${cookie}`).expect(200);
    expect(res.body).toEqual({ username: 'joe@example.com', groups: ['one'], extra: 'kept' });
  });

  it('reads a session that Flask wrote (same secret, salt, prefix)', async () => {
    const sid = 'Zm9vYmFyYmF6cXV4cXV1eHF1dXhxdXV4cXV1eHE'; // a Flask-Session 0.6 style id
    await admin.set(`${PREFIX}:data:${sid}`, JSON.stringify({ _permanent: true, username: 'flask-user', groups: ['g'] }), 'EX', 600);
    await admin.set(`${PREFIX}:signature:${sid}`, signer.signature(sid), 'EX', 600);
    await admin.sadd(`${PREFIX}:groups:${sid}`, 'g');
    const res = await request(app.getHttpServer()).get('/me').set('Cookie', `other=1; session=${signer.sign(sid)}`).expect(200);
    expect(res.body.username).toBe('flask-user');
  });

  it('an anonymous request writes nothing to Redis and sets no cookie', async () => {
    const res = await request(app.getHttpServer()).get('/public').expect(200);
    expect(res.body.username).toBeNull();
    expect(res.headers['set-cookie']).toBeUndefined();
    await request(app.getHttpServer()).get('/me').expect(401);
    expect(await admin.dbsize()).toBe(0);
  });

  it('login regenerates the session id (no fixation) and deletes the old keys', async () => {
    const first = await login('joe@example.com', ['one']);
    const firstSid = signer.unsign(first)!;
    const res = await request(app.getHttpServer()).post('/login').set('Cookie', `session=${first}`).send({ username: 'sam@example.com', groups: ['two'] }).expect(204);
    const second = sessionCookie(res)!.value;
    expect(signer.unsign(second)).not.toBe(firstSid);
    expect(await admin.exists(`${PREFIX}:data:${firstSid}`, `${PREFIX}:signature:${firstSid}`, `${PREFIX}:groups:${firstSid}`)).toBe(0);
    await request(app.getHttpServer()).get('/me').set('Cookie', `session=${first}`).expect(401);
  });

  it('a session id chosen by an attacker is never adopted', async () => {
    const planted = signer.sign('aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa');
    const res = await request(app.getHttpServer()).post('/login').set('Cookie', `session=${planted}`).send({ username: 'u', groups: [] }).expect(204);
    expect(signer.unsign(sessionCookie(res)!.value)).not.toBe('aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa');
  });

  it('logout deletes the three keys and clears the cookie with Max-Age=0', async () => {
    const cookie = await login('joe@example.com', ['one']);
    const sid = signer.unsign(cookie)!;
    const res = await request(app.getHttpServer()).post('/logout').set('Cookie', `session=${cookie}`).expect(204);
    const cleared = sessionCookie(res)!;
    expect(cleared.value).toBe('');
    expect(cleared.attributes).toMatch(/Max-Age=0/);
    expect(cleared.attributes).toMatch(/Path=\//);
    expect(await admin.exists(`${PREFIX}:data:${sid}`, `${PREFIX}:signature:${sid}`, `${PREFIX}:groups:${sid}`)).toBe(0);
    await request(app.getHttpServer()).get('/me').set('Cookie', `session=${cookie}`).expect(401);
  });

  it('@Groups by name: 401 without a session, 403 outside the groups, 200 in one of them', async () => {
    await request(app.getHttpServer()).get('/admin').expect(401);
    const outsider = await login('sam', ['two']);
    await request(app.getHttpServer()).get('/admin').set('Cookie', `session=${outsider}`).expect(403);
    const auditor = await login('ann', ['auditors']);
    await request(app.getHttpServer()).get('/admin').set('Cookie', `session=${auditor}`).expect(200, { ok: 'admin' });
  });

  it('@Groups by route parameter: only members of that group', async () => {
    const joe = await login('joe', ['one', 'three']);
    await request(app.getHttpServer()).get('/groups/one/report').set('Cookie', `session=${joe}`).expect(200, { report: 'one' });
    await request(app.getHttpServer()).get('/groups/three/report').set('Cookie', `session=${joe}`).expect(200);
    await request(app.getHttpServer()).get('/groups/two/report').set('Cookie', `session=${joe}`).expect(403);
    await request(app.getHttpServer()).get('/groups/ONE/report').set('Cookie', `session=${joe}`).expect(403);
    await request(app.getHttpServer()).get('/groups/two/report').expect(401);
  });

  it('@Groups on a class applies to its methods; a method decorator overrides it', async () => {
    const analyst = await login('a', ['analysts']);
    const manager = await login('m', ['managers']);
    await request(app.getHttpServer()).get('/reports/class').set('Cookie', `session=${analyst}`).expect(200);
    await request(app.getHttpServer()).get('/reports/class').set('Cookie', `session=${manager}`).expect(403);
    await request(app.getHttpServer()).get('/reports/method').set('Cookie', `session=${manager}`).expect(200);
    await request(app.getHttpServer()).get('/reports/method').set('Cookie', `session=${analyst}`).expect(403);
  });

  it('setGroups rewrites the groups set; the next request sees the change', async () => {
    const cookie = await login('joe', ['one']);
    const sid = signer.unsign(cookie)!;
    await request(app.getHttpServer()).post('/groups').set('Cookie', `session=${cookie}`).send({ groups: ['two'] }).expect(204);
    expect(await admin.smembers(`${PREFIX}:groups:${sid}`)).toEqual(['two']);
    await request(app.getHttpServer()).get('/groups/one/report').set('Cookie', `session=${cookie}`).expect(403);
    await request(app.getHttpServer()).get('/groups/two/report').set('Cookie', `session=${cookie}`).expect(200);
  });

  it('session data changed in a handler is saved at the end of the request (express-session behaviour)', async () => {
    const cookie = await login('joe', []);
    await request(app.getHttpServer()).post('/count').set('Cookie', `session=${cookie}`).expect(201, { count: 1 });
    await request(app.getHttpServer()).post('/count').set('Cookie', `session=${cookie}`).expect(201, { count: 2 });
    expect(JSON.parse((await admin.get(`${PREFIX}:data:${signer.unsign(cookie)}`))!).count).toBe(2);
  });

  it('a cookie signed with a fallback secret is accepted and re-signed, and the stored signature follows', async () => {
    const sid = '9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d';
    await admin.set(`${PREFIX}:data:${sid}`, JSON.stringify({ username: 'old', groups: ['g'] }), 'EX', 600);
    await admin.set(`${PREFIX}:signature:${sid}`, oldSigner.signature(sid), 'EX', 600);
    await admin.sadd(`${PREFIX}:groups:${sid}`, 'g');
    const res = await request(app.getHttpServer()).get('/me').set('Cookie', `session=${oldSigner.sign(sid)}`).expect(200);
    expect(res.body.username).toBe('old');
    expect(sessionCookie(res)!.value).toBe(signer.sign(sid));
    expect(sessionCookie(res)!.attributes).toMatch(/HttpOnly/);
    expect(await admin.get(`${PREFIX}:signature:${sid}`)).toBe(signer.signature(sid));
    expect(await admin.smembers(`${PREFIX}:groups:${sid}`)).toEqual(['g']);
    // With the current signature nothing more is rewritten.
    const again = await request(app.getHttpServer()).get('/me').set('Cookie', `session=${signer.sign(sid)}`).expect(200);
    expect(sessionCookie(again)).toBeUndefined();
  });

  it('malformed, forged or expired cookies are no session: 401 on guarded routes, never 500', async () => {
    const joe = await login('joe', ['one']);
    const sid = signer.unsign(joe)!;
    const bad = [
      '',
      'garbage',
      `${sid}.`,
      `${sid}.${'A'.repeat(27)}`,
      `s:${joe}`,
      `${joe}.${joe}`,
      'x'.repeat(5000),
      '%00%ff%fe',
      `"${joe}"`,
      new SessionCookieSigner({ secret: 'other', salt: SALT }).sign(sid),
      signer.sign('11111111-1111-4111-8111-111111111111'), // well signed, never stored (or expired)
    ];
    for (const value of bad) {
      await request(app.getHttpServer()).get('/me').set('Cookie', `session=${value}`).expect(401);
      await request(app.getHttpServer()).get('/public').set('Cookie', `session=${value}`).expect(200);
    }
    // The first cookie of the name decides, as at nginx.
    await request(app.getHttpServer()).get('/me').set('Cookie', `session=garbage; session=${joe}`).expect(401);
    await request(app.getHttpServer()).get('/me').set('Cookie', `session=${joe}; session=garbage`).expect(200);
    // Names compare case-insensitively, as nginx's $cookie_session does.
    await request(app.getHttpServer()).get('/me').set('Cookie', `SESSION=garbage; session=${joe}`).expect(401);
    await request(app.getHttpServer()).get('/me').set('Cookie', `Session=${joe}`).expect(200);
  });

  it('Redis down: 503 on guarded routes and login, public routes still answer; back to normal when Redis returns', async () => {
    const joe = await login('joe', ['one']);
    await server.stop();
    try {
      await waitFor('503 on a guarded route', async () => (await request(app.getHttpServer()).get('/me').set('Cookie', `session=${joe}`)).status === 503);
      await request(app.getHttpServer()).get('/groups/one/report').set('Cookie', `session=${joe}`).expect(503);
      await request(app.getHttpServer()).post('/login').send({ username: 'x', groups: [] }).expect(503);
      await request(app.getHttpServer()).post('/logout').set('Cookie', `session=${joe}`).expect(503);
      await request(app.getHttpServer()).get('/public').expect(200);
    } finally {
      await server.resume();
    }
    // The data is gone with the restarted (unpersisted) server: log in again.
    await waitFor('login works again', async () => (await request(app.getHttpServer()).post('/login').send({ username: 'joe', groups: ['one'] })).status === 204, 5000);
    const again = await login('joe', ['one']);
    await request(app.getHttpServer()).get('/groups/one/report').set('Cookie', `session=${again}`).expect(200);
  });
});

describe('SharedSessionModule with touch: false', () => {
  let server: RedisServer;
  let admin: Redis;
  let app: INestApplication;
  beforeAll(async () => {
    server = await RedisServer.start();
    admin = new Redis(server.url);
    app = await createTestApp({ secret: SECRET, salt: SALT, keyPrefix: PREFIX, redis: server.url, ttlSeconds: 3600, touch: false, touchAfterSeconds: 0 });
  });
  afterAll(async () => {
    await app.close();
    admin.disconnect();
    await server.dispose();
  });

  it('reads a session without refreshing its keys', async () => {
    const res = await request(app.getHttpServer()).post('/login').send({ username: 'joe', groups: ['one'] }).expect(204);
    const cookie = sessionCookie(res)!.value;
    const sid = signer.unsign(cookie)!;
    for (const kind of ['data', 'signature', 'groups']) await admin.expire(`${PREFIX}:${kind}:${sid}`, 100);
    await request(app.getHttpServer()).get('/me').set('Cookie', `session=${cookie}`).expect(200);
    for (const kind of ['data', 'signature', 'groups']) expect(await admin.ttl(`${PREFIX}:${kind}:${sid}`)).toBeLessThanOrEqual(100);
  });
});

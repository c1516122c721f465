import type { INestApplication, LoggerService } from '@nestjs/common';
import Redis from 'ioredis';
import request from 'supertest';
import { invalidationChannel, PROTOCOL_DEFAULTS, sessionKeyCount } from '../../../protocol/testkit';
import { RedisServer } from '../../../stack/redis-server';
import { waitFor } from '../../../stack/wait';
import { acknowledgingReader, forEachAdapter, login as loginAs } from './support';
import { createTestApp } from './test-app';

const PREFIX = 'wait_prefix';
const NAME = PROTOCOL_DEFAULTS.cookieName;
const TIMEOUT_MS = 400;
const USER = 'joe@example.com';

/** What the app logged at warn level. */
class WarningLog implements LoggerService {
  readonly warnings: string[] = [];
  log(): void {}
  error(): void {}
  warn(message: unknown): void {
    this.warnings.push(String(message));
  }
}

forEachAdapter((adapter) =>
  describe('logout and setGroups with revocation.wait: the answer leaves once every subscribed reader applied the change', () => {
    let server: RedisServer;
    let admin: Redis;
    let app: INestApplication;
    let log: WarningLog;
    let readers: { close(): void }[] = [];

    const subscribe = async (delayMs: number | null) => {
      const r = await acknowledgingReader(server.url, PREFIX, delayMs);
      readers.push(r);
      return r;
    };

    const login = (groups = ['one', 'two']) => loginAs(app, { username: USER, groups });

    /** Sends the request; when its answer arrived, and the answer. */
    async function timed(send: () => request.Test): Promise<{ at: number; res: request.Response }> {
      const res = await send();
      return { at: Date.now(), res };
    }

    beforeAll(async () => {
      server = await RedisServer.start();
      admin = new Redis(server.url);
      log = new WarningLog();
      app = await createTestApp(
        { secret: 'wait-secret', keyPrefix: PREFIX, redis: server.url, revocation: { wait: true, timeoutMs: TIMEOUT_MS } },
        log,
        adapter,
      );
    });
    afterEach(async () => {
      for (const r of readers) r.close();
      readers = [];
      await waitFor('readers gone', async () => Number((await admin.pubsub('NUMSUB', invalidationChannel(PREFIX)))[1]) === 0);
      log.warnings.length = 0;
    });
    afterAll(async () => {
      await app.close();
      admin.disconnect();
      await server.dispose();
    });

    it('logout answers after the slowest reader has acknowledged, having heard the session ended first', async () => {
      const { cookie, sid } = await login();
      const fast = await subscribe(50);
      const slow = await subscribe(250);
      const out = await timed(() => request(app.getHttpServer()).post('/logout').set('Cookie', cookie));
      expect(out.res.status).toBe(204);
      expect(await sessionKeyCount(admin, PREFIX, sid)).toBe(0);
      for (const r of [fast, slow]) {
        // The session's own notice, then the barrier: a reader that acknowledged has applied the logout.
        expect(r.heard.indexOf(sid)).toBeGreaterThanOrEqual(0);
        expect(r.heard.findIndex((n) => n.startsWith('!ack '))).toBeGreaterThan(r.heard.indexOf(sid));
        expect(r.acks).toHaveLength(1);
      }
      expect(out.at).toBeGreaterThanOrEqual(slow.acks[0]);
      expect(log.warnings).toEqual([]);
    });

    it('setGroups answers after every reader has acknowledged the change', async () => {
      const { cookie, sid } = await login();
      const r = await subscribe(200);
      const out = await timed(() =>
        request(app.getHttpServer())
          .post('/groups')
          .set('Cookie', cookie)
          .send({ groups: ['two'] }),
      );
      expect(out.res.status).toBe(204);
      expect(r.heard.indexOf(sid)).toBeGreaterThanOrEqual(0);
      expect(r.heard.findIndex((n) => n.startsWith('!ack '))).toBeGreaterThan(r.heard.indexOf(sid));
      expect(out.at).toBeGreaterThanOrEqual(r.acks[0]);
      expect(log.warnings).toEqual([]);
    });

    it('a reader that never acknowledges: the logout is made and answered after timeoutMs, with one warning that names no session', async () => {
      const { cookie, sid } = await login();
      await subscribe(0);
      await subscribe(null);
      const started = Date.now();
      const out = await timed(() => request(app.getHttpServer()).post('/logout').set('Cookie', cookie));
      expect(out.res.status).toBe(204);
      expect(out.at - started).toBeGreaterThanOrEqual(TIMEOUT_MS);
      expect(out.at - started).toBeLessThan(TIMEOUT_MS + 3_000);
      expect(await sessionKeyCount(admin, PREFIX, sid)).toBe(0);
      expect(log.warnings).toHaveLength(1);
      expect(log.warnings[0]).toMatch(
        /^logout: 1 of 2 subscribed readers \(nginx\) acknowledged it within revocation\.timeoutMs \(400 ms\)/,
      );
      for (const secret of [sid, cookie, USER]) expect(log.warnings[0]).not.toContain(secret);
    });

    it('with no reader subscribed there is nothing to wait for', async () => {
      const { cookie } = await login();
      await request(app.getHttpServer()).post('/logout').set('Cookie', cookie).expect(204);
      expect(log.warnings).toEqual([]);
    });

    it('without revocation.wait the answer does not wait for a silent reader', async () => {
      // A long timeout, that a wait would show.
      const timeoutMs = 3_000;
      const other = await createTestApp(
        { secret: 'wait-secret', keyPrefix: PREFIX, redis: server.url, revocation: { timeoutMs } },
        log,
        adapter,
      );
      try {
        const res = await request(other.getHttpServer())
          .post('/login')
          .send({ username: USER, groups: ['one'] })
          .expect(204);
        const cookie = ([] as string[])
          .concat(res.headers['set-cookie'] ?? [])
          .find((c) => c.startsWith(`${NAME}=`))!
          .split(';')[0];
        await subscribe(null);
        const started = Date.now();
        const out = await timed(() => request(other.getHttpServer()).post('/logout').set('Cookie', cookie));
        expect(out.res.status).toBe(204);
        expect(out.at - started).toBeLessThan(timeoutMs);
        expect(log.warnings).toEqual([]);
      } finally {
        await other.close();
      }
    });
  }),
);

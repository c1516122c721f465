import type { INestApplication, LoggerService } from '@nestjs/common';
import Redis from 'ioredis';
import request from 'supertest';
import { invalidationChannel } from '../../../protocol/testkit';
import { waitFor } from '../../../stack/wait';
import { sessionEventId, SharedSessionEvent, SharedSessionEventListener, SharedSessionModuleOptions, SharedSessionService } from '../src';
import { forEachAdapter, login as loginAs, useRedisServer } from './support';
import { createTestApp } from './test-app';

/**
 * PROTOCOL.md section 16 at the Nest door, on a real redis-server: every
 * login, logout, group change and control operation reaches the listener
 * as one event with the section's fields; session ids only as event ids,
 * user ids only when the operator opted in; nothing logged unless asked.
 */

const SECRET = 'events-secret-of-at-least-thirty-two-bytes';
const PREFIX = 'events_prefix';
const USER = 'joe@example.com';
const GROUP = 'payroll-secret-group';

class Recorder implements SharedSessionEventListener {
  readonly events: SharedSessionEvent[] = [];
  emit(event: SharedSessionEvent): void {
    this.events.push(event);
  }
  /** The events recorded while `run` ran. */
  async during(run: () => Promise<unknown>): Promise<SharedSessionEvent[]> {
    const from = this.events.length;
    await run();
    return this.events.slice(from);
  }
}

/** What the app logged, by context. */
class LineLog implements LoggerService {
  readonly lines: { context: string; message: string }[] = [];
  log(message: unknown, context?: string): void {
    this.lines.push({ context: String(context), message: String(message) });
  }
  error(): void {}
  warn(): void {}
}

forEachAdapter((adapter) =>
  describe('events (PROTOCOL.md section 16) on a real redis-server', () => {
    const redis = useRedisServer();

    async function start(events: SharedSessionModuleOptions['events'], logger: LoggerService | false = false) {
      const app = await createTestApp(
        { secret: SECRET, keyPrefix: PREFIX, redis: redis.server.url, ...(events ? { events } : {}) },
        logger,
        adapter,
      );
      redis.apps.push(app);
      return app;
    }

    const login = (app: INestApplication) => loginAs(app, { username: USER, groups: [GROUP] });

    /** No raw session id, no user, no group name anywhere in the events. */
    function expectNothingPersonal(events: SharedSessionEvent[], sids: string[]): void {
      const text = JSON.stringify(events);
      for (const secret of [...sids, USER, GROUP]) expect(text).not.toContain(secret);
    }

    it('each operation emits its event with the section’s fields, sessions named by their event id only', async () => {
      const recorder = new Recorder();
      const app = await start({ listener: recorder });
      const service = app.get(SharedSessionService);
      const http = () => request(app.getHttpServer());
      const before = Date.now();

      const a = await login(app);
      const b = await login(app);
      const c = await login(app);
      expect(recorder.events.map((e) => e.event)).toEqual(['login', 'login', 'login']);
      expect(recorder.events[0]).toEqual({ event: 'login', op: 'login', at: expect.any(Number), session: sessionEventId(SECRET, a.sid) });
      expect(recorder.events[0].at).toBeGreaterThanOrEqual(before);
      expect(recorder.events[0].session).toMatch(/^[0-9a-f]{32}$/);

      expect(
        await recorder.during(() =>
          http()
            .post('/groups')
            .set('Cookie', a.cookie)
            .send({ groups: [GROUP, 'two'] })
            .expect(204),
        ),
      ).toEqual([{ event: 'group_change', op: 'setGroups', at: expect.any(Number), session: sessionEventId(SECRET, a.sid), sessions: 1 }]);
      expect(await recorder.during(() => http().post(`/own/${b.sid}/revoke`).set('Cookie', a.cookie).expect(200))).toEqual([
        { event: 'revocation', op: 'revokeOwnSession', at: expect.any(Number), session: sessionEventId(SECRET, b.sid), sessions: 1 },
      ]);
      expect(await recorder.during(() => http().post('/own/others/revoke').set('Cookie', a.cookie).expect(200))).toEqual([
        { event: 'revocation', op: 'revokeOtherSessions', at: expect.any(Number), sessions: 1 },
      ]);
      expect(await recorder.during(() => http().post('/logout').set('Cookie', a.cookie).expect(204))).toEqual([
        { event: 'logout', op: 'logout', at: expect.any(Number), session: sessionEventId(SECRET, a.sid) },
      ]);

      const d = await login(app);
      const control: [string, () => Promise<unknown>, Partial<SharedSessionEvent>][] = [
        ['setUserGroups', () => service.setUserGroups(USER, [GROUP]), { event: 'group_change', sessions: 1 }],
        ['addUserToGroup', () => service.addUserToGroup(USER, 'extra'), { event: 'group_change', sessions: 1 }],
        ['removeUserFromGroup', () => service.removeUserFromGroup(USER, 'extra'), { event: 'group_change', sessions: 1 }],
        ['invalidateGroupCache', () => service.invalidateGroupCache(GROUP), { event: 'purge', sessions: 0 }],
        ['revokeIssuedBefore', () => service.revokeIssuedBefore(Date.now() - 60_000), { event: 'not_before', sessions: 0 }],
        ['revokeSession', () => service.revokeSession(d.sid), { event: 'revocation', sessions: 1, session: sessionEventId(SECRET, d.sid) }],
        ['revokeUser', () => service.revokeUser(USER), { event: 'revocation', sessions: 0 }],
      ];
      for (const [op, run, fields] of control) {
        expect(await recorder.during(run)).toEqual([{ op, at: expect.any(Number), ...fields }]);
      }
      expectNothingPersonal(recorder.events, [a.sid, b.sid, c.sid, d.sid]);
    });

    it('a wait that times out is in the operation’s event and is a wait_timeout event of its own', async () => {
      const recorder = new Recorder();
      const app = await start({ listener: recorder });
      const service = app.get(SharedSessionService);
      await login(app);
      // A subscribed reader that never acknowledges.
      const silent = new Redis(redis.server.url);
      try {
        await silent.subscribe(invalidationChannel(PREFIX));
        await waitFor('reader subscribed', async () => Number((await redis.admin.pubsub('NUMSUB', invalidationChannel(PREFIX)))[1]) === 1);
        const events = await recorder.during(() => service.revokeUser(USER, { wait: true, timeoutMs: 200 }));
        const wait = { acknowledged: 0, expected: 1, timedOut: true };
        expect(events).toEqual([
          { event: 'revocation', op: 'revokeUser', at: expect.any(Number), sessions: 1, ...wait },
          { event: 'wait_timeout', op: 'revokeUser', at: expect.any(Number), ...wait },
        ]);
      } finally {
        silent.disconnect();
      }
    });

    it('the user id only with includeUser', async () => {
      const recorder = new Recorder();
      const app = await start({ listener: recorder, includeUser: true });
      const { cookie, sid } = await login(app);
      await app.get(SharedSessionService).revokeUser(USER, { except: sid });
      await request(app.getHttpServer()).post('/logout').set('Cookie', cookie).expect(204);
      expect(recorder.events).toEqual([
        { event: 'login', op: 'login', at: expect.any(Number), session: sessionEventId(SECRET, sid), user: USER },
        { event: 'revocation', op: 'revokeUser', at: expect.any(Number), user: USER, sessions: 0 },
        { event: 'logout', op: 'logout', at: expect.any(Number), session: sessionEventId(SECRET, sid), user: USER },
      ]);
    });

    it('logs one JSON line per event with events.log, and none by default', async () => {
      const quiet = new LineLog();
      const quietApp = await start(undefined, quiet);
      await login(quietApp);
      await quietApp.get(SharedSessionService).invalidateGroupCache(GROUP);
      expect(quiet.lines.filter((l) => l.context === 'SharedSessionEvents')).toEqual([]);

      const loud = new LineLog();
      const loudApp = await start({ log: true }, loud);
      const { sid } = await login(loudApp);
      await loudApp.get(SharedSessionService).invalidateGroupCache(GROUP);
      const lines = loud.lines.filter((l) => l.context === 'SharedSessionEvents').map((l) => JSON.parse(l.message) as SharedSessionEvent);
      expect(lines).toEqual([
        { event: 'login', op: 'login', at: expect.any(Number), session: sessionEventId(SECRET, sid) },
        { event: 'purge', op: 'invalidateGroupCache', at: expect.any(Number), sessions: 0 },
      ]);
    });

    it('a listener that throws fails no operation', async () => {
      const app = await start({
        listener: {
          emit() {
            throw new Error('listener down');
          },
        },
      });
      const { cookie } = await login(app);
      await request(app.getHttpServer()).post('/logout').set('Cookie', cookie).expect(204);
    });
  }),
);

import { Body, Controller, Get, HttpCode, INestApplication, Module, Param, Post, Req, UseGuards } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import type { Request } from 'express';
import request from 'supertest';
import { RedisServer } from '../../../stack/redis-server';
import { waitFor } from '../../../stack/wait';
import { GroupGuard, SharedSessionModule, SharedSessionModuleOptions, SharedSessionService } from '../src';
import { forEachAdapter, TestAdapter } from './support';
import { startTestApp } from './test-app';

/**
 * A user's own sessions (issue 23, item 7): listOwnSessions,
 * revokeOwnSession and revokeOtherSessions as a "your sessions" page uses
 * them, on a real redis-server.
 */
@Controller()
class OwnSessionsController {
  constructor(private readonly sessions: SharedSessionService) {}

  @Post('login')
  @HttpCode(204)
  async login(@Req() req: Request, @Body() body: { username: string }) {
    await this.sessions.login(req, { username: body.username, groups: ['g'] });
  }

  @Get('me')
  @UseGuards(GroupGuard)
  me(@Req() req: Request) {
    return { username: req.session.username };
  }

  @Get('own')
  own(@Req() req: Request) {
    return this.sessions.listOwnSessions(req);
  }

  @Post('own/others/revoke')
  @HttpCode(200)
  others(@Req() req: Request) {
    return this.sessions.revokeOtherSessions(req);
  }

  @Post('own/:sid/revoke')
  @HttpCode(200)
  one(@Req() req: Request, @Param('sid') sid: string) {
    return this.sessions.revokeOwnSession(req, sid);
  }
}

async function startApp(options: SharedSessionModuleOptions, adapter: TestAdapter = 'express'): Promise<INestApplication> {
  @Module({ imports: [SharedSessionModule.forRoot(options)], controllers: [OwnSessionsController] })
  class AppModule {}
  const moduleRef = await Test.createTestingModule({ imports: [AppModule] }).compile();
  return startTestApp(moduleRef, adapter, { trustProxy: true });
}

interface Listed {
  sessionId: string;
  current: boolean;
  createdAt: string;
  lastSeenAt: string;
  ip?: string;
  userAgent?: string;
}

forEachAdapter((adapter) =>
  describe('a user’s own sessions, on a real redis-server', () => {
    let server: RedisServer;
    let app: INestApplication;
    const http = () => request(app.getHttpServer());

    /** Logs `username` in from `address` with `agent`; the Cookie header of the session. */
    async function login(username: string, address = '10.0.0.1', agent = 'test-agent'): Promise<string> {
      const res = await http().post('/login').set('X-Forwarded-For', address).set('User-Agent', agent).send({ username }).expect(204);
      return ([] as string[]).concat(res.headers['set-cookie'])[0].split(';')[0];
    }
    const list = async (cookie: string): Promise<Listed[]> => (await http().get('/own').set('Cookie', cookie).expect(200)).body;

    beforeAll(async () => {
      server = await RedisServer.start();
      app = await startApp(
        {
          secret: 'own-sessions-secret-own-sessions-secret',
          redis: server.url,
          loginMetadata: { ip: true, userAgent: true },
        },
        adapter,
      );
    });
    afterAll(async () => {
      await app?.close();
      await server?.dispose();
    });

    it('lists the user’s sessions with created, last seen, address and browser, and marks this one; never another user’s', async () => {
      const laptop = await login('alice', '192.0.2.10', 'Laptop Browser');
      const phone = await login('alice', '198.51.100.20', 'Phone Browser');
      await login('mallory', '203.0.113.5', 'Other');
      const fromLaptop = await list(laptop);
      expect(fromLaptop).toHaveLength(2);
      expect(fromLaptop.map((s) => [s.ip, s.userAgent, s.current])).toEqual([
        ['192.0.2.10', 'Laptop Browser', true],
        ['198.51.100.20', 'Phone Browser', false],
      ]);
      for (const s of fromLaptop) {
        expect(Date.now() - Date.parse(s.createdAt)).toBeLessThan(10_000);
        expect(Date.now() - Date.parse(s.lastSeenAt)).toBeLessThan(10_000);
      }
      expect((await list(phone)).map((s) => s.current)).toEqual([false, true]);
    });

    it('ends one of the user’s own sessions by id; the id of another user’s session ends nothing', async () => {
      const laptop = await login('bob');
      const phone = await login('bob');
      const eve = await login('eve');
      const [, phoneSession] = await list(laptop);
      const eveSession = (await list(eve))[0];
      expect((await http().post(`/own/${eveSession.sessionId}/revoke`).set('Cookie', laptop).expect(200)).body).toEqual({ sessions: 0 });
      await http().get('/me').set('Cookie', eve).expect(200);
      expect((await http().post(`/own/${phoneSession.sessionId}/revoke`).set('Cookie', laptop).expect(200)).body).toEqual({ sessions: 1 });
      await http().get('/me').set('Cookie', phone).expect(401);
      await http().get('/me').set('Cookie', laptop).expect(200);
      expect((await list(laptop)).map((s) => s.current)).toEqual([true]);
    });

    it('revokeOtherSessions ends every session of the user but this one', async () => {
      const keep = await login('carol');
      const others = [await login('carol'), await login('carol')];
      expect((await http().post('/own/others/revoke').set('Cookie', keep).expect(200)).body).toEqual({ sessions: 2 });
      for (const cookie of others) await http().get('/me').set('Cookie', cookie).expect(401);
      await http().get('/me').set('Cookie', keep).expect(200);
      expect(await list(keep)).toHaveLength(1);
    });

    it('without a logged-in session: 401; Redis down: 503', async () => {
      await http().get('/own').expect(401);
      await http().post('/own/others/revoke').expect(401);
      const dave = await login('dave');
      await server.stop();
      try {
        await waitFor('503', async () => (await http().get('/own').set('Cookie', dave)).status === 503);
        await http().post('/own/others/revoke').set('Cookie', dave).expect(503);
      } finally {
        await server.resume();
      }
      // The restarted Redis is empty: dave's session is gone, and says so once Redis answers again.
      await waitFor('Redis back', async () => (await http().get('/own').set('Cookie', dave)).status === 401, 5000);
    });
  }),
);

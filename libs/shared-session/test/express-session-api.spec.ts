import { Body, Controller, Get, HttpCode, INestApplication, Module, Post, Req, Res } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import type { Request, Response } from 'express';
import { Cookie, Session } from 'express-session';
import request from 'supertest';
import { RedisServer } from '../../../stack/redis-server';
import { PROTOCOL_DEFAULTS } from '../../../protocol/testkit';
import { SharedSessionModule, SharedSessionService } from '../src';
import { startTestApp } from './test-app';

/**
 * On Express, `req.session` is express-session's own, as the README
 * promises, though express-session's middleware no longer runs: a
 * `Session` with a `Cookie`, `req.sessionStore` set, and its methods
 * (save, reload, touch, regenerate, destroy) behaving as express-session's.
 */

const NAME = PROTOCOL_DEFAULTS.cookieName;
const SECRET = 'express-session-api-secret-express';

const done = (call: (callback: (err?: unknown) => void) => unknown) =>
  new Promise<void>((resolve, reject) => call((err) => (err ? reject(err as Error) : resolve())));

type NoteSession = Session & { note?: string; username?: string };

@Controller()
class ApiController {
  constructor(private readonly sessions: SharedSessionService) {}

  @Post('login')
  @HttpCode(204)
  async login(@Req() req: Request) {
    await this.sessions.login(req, { username: 'joe', groups: ['one'] });
  }

  @Get('shape')
  shape(@Req() req: Request) {
    const session = req.session as NoteSession;
    return {
      session: session instanceof Session,
      cookie: session.cookie instanceof Cookie,
      store: typeof req.sessionStore?.get === 'function',
      id: session.id === req.sessionID,
      username: session.username ?? null,
    };
  }

  @Post('note')
  @HttpCode(204)
  note(@Req() req: Request, @Body() body: { note: string }) {
    (req.session as NoteSession).note = body.note;
  }

  @Get('note')
  read(@Req() req: Request) {
    return { note: (req.session as NoteSession).note ?? null };
  }

  @Post('reload')
  async reload(@Req() req: Request) {
    (req.session as NoteSession).note = 'changed here, never saved';
    await done((cb) => req.session.reload(cb));
    return { note: (req.session as NoteSession).note ?? null };
  }

  @Post('save-then-change')
  async saveThenChange(@Req() req: Request) {
    (req.session as NoteSession).note = 'saved';
    await done((cb) => req.session.save(cb));
    (req.session as NoteSession).note = 'saved at the end';
    req.session.touch();
    return {};
  }

  @Post('regenerate')
  async regenerate(@Req() req: Request) {
    const before = req.sessionID;
    await done((cb) => req.session.regenerate(cb));
    return {
      changed: req.sessionID !== before,
      session: req.session instanceof Session,
      username: (req.session as NoteSession).username ?? null,
    };
  }

  /** The handler writes the response itself: headers given to writeHead, after a regenerate (a new cookie is due). */
  @Post('write-head')
  async writeHead(@Req() req: Request, @Res() res: Response) {
    await done((cb) => req.session.regenerate(cb));
    (req.session as NoteSession).note = 'written by hand';
    res.writeHead(200, { 'Content-Type': 'text/plain', 'Set-Cookie': 'other=1; Path=/' });
    res.end('ok');
  }

  /** A body written in parts: the headers leave with the first, the save waits for the end. */
  @Post('stream')
  stream(@Req() req: Request, @Res() res: Response) {
    (req.session as NoteSession).note = 'streamed';
    res.write('part, ');
    res.end('end');
  }

  @Post('destroy')
  async destroy(@Req() req: Request) {
    await done((cb) => req.session.destroy(cb));
    return { gone: req.session === undefined };
  }
}

describe('req.session on Express is express-session’s', () => {
  let server: RedisServer;
  let app: INestApplication;
  let cookie: string;

  const http = () => request(app.getHttpServer());
  const sessionCookie = (res: request.Response) =>
    ([] as string[]).concat(res.headers['set-cookie'] ?? []).find((c) => c.startsWith(`${NAME}=`));

  beforeAll(async () => {
    server = await RedisServer.start();
    @Module({ imports: [SharedSessionModule.forRoot({ secret: SECRET, redis: server.url })], controllers: [ApiController] })
    class AppModule {}
    app = await startTestApp(await Test.createTestingModule({ imports: [AppModule] }).compile(), 'express');
  });
  beforeEach(async () => {
    cookie = sessionCookie(await http().post('/login').expect(204))!.split(';')[0];
  });
  afterAll(async () => {
    await app?.close();
    await server?.dispose();
  });

  it('is a Session with a Cookie and the store, before and after a login', async () => {
    expect((await http().get('/shape').expect(200)).body).toEqual({ session: true, cookie: true, store: true, id: true, username: null });
    expect((await http().get('/shape').set('Cookie', cookie).expect(200)).body).toEqual({
      session: true,
      cookie: true,
      store: true,
      id: true,
      username: 'joe',
    });
  });

  it('saves a change when the response ends, and the next request reads it', async () => {
    await http().post('/note').set('Cookie', cookie).send({ note: 'kept' }).expect(204);
    expect((await http().get('/note').set('Cookie', cookie).expect(200)).body).toEqual({ note: 'kept' });
  });

  it('reload() reads the stored session in place of the changed one', async () => {
    await http().post('/note').set('Cookie', cookie).send({ note: 'stored' }).expect(204);
    expect((await http().post('/reload').set('Cookie', cookie).expect(201)).body).toEqual({ note: 'stored' });
    expect((await http().get('/note').set('Cookie', cookie).expect(200)).body).toEqual({ note: 'stored' });
  });

  it('a change after an explicit save() is saved too when the response ends (touch() is allowed)', async () => {
    await http().post('/save-then-change').set('Cookie', cookie).expect(201);
    expect((await http().get('/note').set('Cookie', cookie).expect(200)).body).toEqual({ note: 'saved at the end' });
  });

  it('regenerate() gives a new, empty Session and a new cookie; the old one names no session', async () => {
    const res = await http().post('/regenerate').set('Cookie', cookie).expect(201);
    expect(res.body).toEqual({ changed: true, session: true, username: null });
    // Changed (a new id), so saved and given its cookie at the end, as express-session does.
    const renewed = sessionCookie(res)?.split(';')[0];
    expect(renewed).toMatch(new RegExp(`^${NAME}=.+`));
    expect(renewed).not.toBe(cookie);
    expect((await http().get('/shape').set('Cookie', cookie).expect(200)).body.username).toBeNull();
  });

  it('a handler writing its own headers with writeHead keeps them, and gets our cookie beside them', async () => {
    const res = await http().post('/write-head').set('Cookie', cookie).expect(200);
    const lines = ([] as string[]).concat(res.headers['set-cookie'] ?? []);
    expect(lines).toContain('other=1; Path=/');
    const renewed = sessionCookie(res)?.split(';')[0];
    expect(renewed).toMatch(new RegExp(`^${NAME}=.+`));
    expect(renewed).not.toBe(cookie);
    expect((await http().get('/note').set('Cookie', renewed!).expect(200)).body).toEqual({ note: 'written by hand' });
  });

  it('a response written in parts is held at its end until the change is saved', async () => {
    expect((await http().post('/stream').set('Cookie', cookie).expect(201)).text).toBe('part, end');
    expect((await http().get('/note').set('Cookie', cookie).expect(200)).body).toEqual({ note: 'streamed' });
  });

  it('destroy() ends the session: the request has none, and the cookie names none after it', async () => {
    expect((await http().post('/destroy').set('Cookie', cookie).expect(201)).body).toEqual({ gone: true });
    expect((await http().get('/shape').set('Cookie', cookie).expect(200)).body.username).toBeNull();
  });
});

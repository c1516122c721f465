import { Body, Controller, Get, HttpCode, INestApplication, LoggerService, Module, Param, Post, Req, Res, UseGuards } from '@nestjs/common';
import { Test, TestingModule } from '@nestjs/testing';
import type { NestExpressApplication } from '@nestjs/platform-express';
import type { Request, Response } from 'express';
import { FastifyAdapter } from '@nestjs/platform-fastify';
import type { FastifyReply } from 'fastify';
import type { TestAdapter } from './support';
import {
  AllowUnavailableSession,
  GroupGuard,
  Groups,
  SharedSessionModule,
  SharedSessionModuleOptions,
  SharedSessionService,
  SkipCsrfCheck,
} from '../src';

/**
 * Holds `POST /slow-count` after it has read its session, until the test lets
 * it go: what another request (a logout, a group change) does in between is
 * what a request in flight must not undo.
 */
export class RequestGate {
  private arrive!: () => void;
  private leave!: () => void;
  /** Resolves when a request has reached the gate. */
  arrived!: Promise<void>;
  private open!: Promise<void>;

  constructor() {
    this.reset();
  }

  reset(): void {
    this.arrived = new Promise((resolve) => (this.arrive = resolve));
    this.open = new Promise((resolve) => (this.leave = resolve));
  }

  pass(): Promise<void> {
    this.arrive();
    return this.open;
  }

  release(): void {
    this.leave();
  }
}

export const slowRequestGate = new RequestGate();

/** A small app that uses the module as a user would: login, logout, guarded routes. */
@Controller()
class TestController {
  constructor(private readonly sessions: SharedSessionService) {}

  @Post('login')
  @HttpCode(204)
  async login(
    @Req() req: Request,
    @Body() body: { username: string; groups?: string[]; extra?: string; idleTimeoutSeconds?: number; absoluteTimeoutSeconds?: number },
  ) {
    const { idleTimeoutSeconds, absoluteTimeoutSeconds } = body;
    await this.sessions.login(
      req,
      { username: body.username, groups: body.groups ?? [], ...(body.extra ? { extra: body.extra } : {}) },
      { idleTimeoutSeconds, absoluteTimeoutSeconds },
    );
  }

  @Post('logout')
  @HttpCode(204)
  async logout(@Req() req: Request, @Res({ passthrough: true }) res: Response) {
    await this.sessions.logout(req, res);
  }

  @Post('groups')
  @HttpCode(204)
  @UseGuards(GroupGuard)
  async setGroups(@Req() req: Request, @Body() body: { groups: string[] }) {
    await this.sessions.setGroups(req, body.groups);
  }

  @Post('own/others/revoke')
  @HttpCode(200)
  revokeOthers(@Req() req: Request) {
    return this.sessions.revokeOtherSessions(req);
  }

  @Post('own/:sid/revoke')
  @HttpCode(200)
  revokeOwn(@Req() req: Request, @Param('sid') sid: string) {
    return this.sessions.revokeOwnSession(req, sid);
  }

  @Get('public')
  public(@Req() req: Request) {
    return { username: req.session?.username ?? null, sessionID: req.sessionID ?? null };
  }

  /** What the session is, also while Redis is down. */
  @Get('state')
  @AllowUnavailableSession()
  state(@Req() req: Request) {
    return { state: this.sessions.sessionState(req), username: req.session?.username ?? null };
  }

  /** Runs while Redis is down, and asks for the session all the same. */
  @Get('session')
  @AllowUnavailableSession()
  session(@Req() req: Request) {
    return { username: this.sessions.session(req).username ?? null };
  }

  /** Called by other sites on purpose. */
  @Post('webhook')
  @HttpCode(204)
  @SkipCsrfCheck()
  webhook() {}

  @Get('me')
  @UseGuards(GroupGuard)
  me(@Req() req: Request) {
    return { username: req.session.username, groups: req.session.groups, extra: (req.session as unknown as { extra?: string }).extra };
  }

  /** A response that nginx would keep (X-Accel-Expires): it must never carry a renewed cookie. */
  @Get('cacheable')
  @UseGuards(GroupGuard)
  cacheable(@Res({ passthrough: true }) res: Response) {
    setHeader(res, 'X-Accel-Expires', '60');
    setHeader(res, 'Cache-Control', 'private, no-store');
    return { ok: 'cacheable' };
  }

  @Get('admin')
  @UseGuards(GroupGuard)
  @Groups('admins', 'auditors')
  admin() {
    return { ok: 'admin' };
  }

  @Get('groups/:groupId/report')
  @UseGuards(GroupGuard)
  @Groups({ param: 'groupId' })
  report(@Param('groupId') groupId: string) {
    return { report: groupId };
  }

  /** A slow request that changes its session: it waits at `slowRequestGate` after reading the session. */
  @Post('slow-count')
  async slowCount(@Req() req: Request) {
    await slowRequestGate.pass();
    const s = req.session as unknown as { count?: number };
    s.count = (s.count ?? 0) + 1;
    return { count: s.count };
  }

  /** App code that changes whose session it is (PROTOCOL.md section 13.1: the session moves to the new user's index). */
  @Post('rename')
  @HttpCode(204)
  rename(@Req() req: Request, @Body() body: { username: string }) {
    req.session.username = body.username;
  }

  @Post('count')
  count(@Req() req: Request) {
    const s = req.session as unknown as { count?: number };
    s.count = (s.count ?? 0) + 1;
    return { count: s.count };
  }
}

@Controller('reports')
@UseGuards(GroupGuard)
@Groups('analysts')
class ClassGuardedController {
  @Get('class')
  byClass() {
    return { ok: 'class' };
  }

  @Get('method')
  @Groups('managers')
  byMethod() {
    return { ok: 'method' };
  }
}

/** A response header, on an Express `Response` or a Fastify `FastifyReply`. */
function setHeader(res: Response | FastifyReply, name: string, value: string): void {
  if ('setHeader' in res) res.setHeader(name, value);
  else res.header(name, value);
}

/** `logger`: where the app's log lines go (default: nowhere). `adapter`: the Nest HTTP platform (default Express). */
export async function createTestApp(
  options: SharedSessionModuleOptions,
  logger: LoggerService | false = false,
  adapter: TestAdapter = 'express',
): Promise<INestApplication> {
  @Module({ imports: [SharedSessionModule.forRoot(options)], controllers: [TestController, ClassGuardedController] })
  class AppModule {}
  const moduleRef = await Test.createTestingModule({ imports: [AppModule] }).compile();
  return startTestApp(moduleRef, adapter, { logger, shutdownHooks: true });
}

/**
 * A compiled testing module as an app on `adapter`, initialised and ready.
 * `trustProxy`: X-Forwarded-For and the like are trusted (`req.ip`), as
 * Express's `trust proxy` or Fastify's `trustProxy`.
 */
export async function startTestApp(
  moduleRef: TestingModule,
  adapter: TestAdapter,
  {
    logger = false,
    trustProxy = false,
    shutdownHooks = false,
  }: { logger?: LoggerService | false; trustProxy?: boolean; shutdownHooks?: boolean } = {},
): Promise<INestApplication> {
  let app: INestApplication;
  if (adapter === 'fastify') {
    app = moduleRef.createNestApplication(new FastifyAdapter({ trustProxy }), { logger });
  } else {
    const express = moduleRef.createNestApplication<NestExpressApplication>({ logger });
    if (trustProxy) express.set('trust proxy', true);
    app = express;
  }
  if (shutdownHooks) app.enableShutdownHooks();
  await app.init();
  // Fastify answers once its plugins have loaded.
  if (adapter === 'fastify') await app.getHttpAdapter().getInstance().ready();
  // The spec runs on the adapter it names, or fails.
  if (app.getHttpAdapter().getType() !== adapter) throw new Error(`the test app runs on ${app.getHttpAdapter().getType()}, not ${adapter}`);
  return app;
}

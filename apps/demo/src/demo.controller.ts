import {
  BadRequestException,
  Body,
  Controller,
  Get,
  Header,
  HttpCode,
  Inject,
  Param,
  Post,
  Query,
  Req,
  Res,
  UnauthorizedException,
  UseGuards,
} from '@nestjs/common';
import { randomUUID } from 'node:crypto';
import {
  AllowUnavailableSession,
  GroupGuard,
  Groups,
  LoginThrottle,
  LoginThrottledException,
  SharedSessionObject,
  SharedSessionService,
} from 'nest-resty-shared-session';
import { DEMO_CONFIG } from './demo.tokens';
import type { DemoConfig } from './demo.config';
import { DemoRequest as Request, DemoResponse as Response, HTML, Replies, sessionOf } from './http';
import { groupPage, homePage, loginPage, logoutPage, TWO_SESSIONS_SENT, unavailablePage } from './pages';
import { checkPassword, groupsOf } from './users';

/** A group resource as the origin makes it: every response has a fresh id, so a cached copy is recognisable. */
function resource(groupId: string, resourceId: string) {
  return { group_id: groupId, resource_id: resourceId, response_id: randomUUID(), origin_timestamp: Date.now() };
}

@Controller('app')
export class DemoController {
  constructor(
    private readonly sessions: SharedSessionService,
    private readonly throttle: LoginThrottle,
    @Inject(DEMO_CONFIG) private readonly config: DemoConfig,
    private readonly replies: Replies,
  ) {}

  // The pages below run while Redis is down (@AllowUnavailableSession), to
  // say "try again" to a visitor whose session cannot be read; a route
  // without it answers 503 then, as /app/api/v1/myself does.

  @Get()
  @Header('Cache-Control', 'no-store')
  @Header('Content-Type', HTML)
  @AllowUnavailableSession()
  home(@Req() req: Request, @Res({ passthrough: true }) res: Response): string {
    const session = sessionOf(req);
    return this.unavailablePage(req, res) ?? homePage(session?.username, session?.groups, this.sessions.sessionCookieConflict(req));
  }

  @Get('login')
  @Header('Cache-Control', 'no-store')
  @Header('Content-Type', HTML)
  @AllowUnavailableSession()
  loginForm(@Req() req: Request, @Res({ passthrough: true }) res: Response): string {
    return this.unavailablePage(req, res) ?? loginPage();
  }

  @Post('login')
  async login(
    @Req() req: Request,
    @Res() res: Response,
    @Body() body: { email?: unknown; password?: unknown; remember?: unknown },
  ): Promise<void> {
    const email = typeof body?.email === 'string' ? body.email.trim().toLowerCase() : '';
    // Before the password is looked at: a banned (user, address) or address gets a 429 and Retry-After.
    try {
      await this.throttle.check(req, email);
    } catch (err) {
      if (!(err instanceof LoginThrottledException)) throw err;
      this.replies.html(res, 429, loginPage(`Too many failed logins. Try again in ${err.retryAfterSeconds} seconds.`));
      return;
    }
    const user = checkPassword(body?.email, body?.password);
    if (!user) {
      await this.throttle.failed(req, email);
      this.replies.html(res, 403, loginPage('Wrong email or password.'));
      return;
    }
    await this.throttle.succeeded(req, user.email);
    // "Keep me signed in": this session gets the longer timeouts of its own.
    const rememberMe = body?.remember === '1' ? this.config.rememberMe : {};
    await this.sessions.login(req, { username: user.email, groups: user.groups }, rememberMe);
    this.replies.redirect(res, '/app');
  }

  /** A link never logs out (another site could embed it): it shows the form that POSTs. */
  @Get('logout')
  @Header('Cache-Control', 'no-store')
  @Header('Content-Type', HTML)
  @AllowUnavailableSession()
  logoutForm(@Req() req: Request, @Res({ passthrough: true }) res: Response): string {
    return this.unavailablePage(req, res) ?? logoutPage();
  }

  @Post('logout')
  async logout(@Req() req: Request, @Res() res: Response): Promise<void> {
    await this.sessions.logout(req, res);
    this.replies.redirect(res, '/app');
  }

  @Get('api/v1/myself')
  @Header('Cache-Control', 'no-store')
  myself(@Req() req: Request) {
    const email = sessionOf(req)?.username;
    if (!email) throw new UnauthorizedException(this.sessions.sessionCookieConflict(req) ? TWO_SESSIONS_SENT : 'not logged in');
    return { email };
  }

  /**
   * Narrows the session to some of the user's own groups (a "switch
   * workspace" feature): shows a group change reaching nginx at once.
   */
  @Post('api/v1/myself/groups')
  @HttpCode(200)
  @Header('Cache-Control', 'no-store')
  @UseGuards(GroupGuard)
  async setMyGroups(@Req() req: Request, @Body() body: { groups?: unknown }) {
    const session = this.sessions.session(req);
    const allowed = groupsOf(session.username!);
    const wanted = body?.groups;
    if (!Array.isArray(wanted) || wanted.some((g) => typeof g !== 'string' || !allowed.includes(g))) {
      throw new BadRequestException(`groups must be a list drawn from your groups: ${allowed.join(', ') || '(none)'}`);
    }
    await this.sessions.setGroups(req, [...new Set(wanted as string[])]);
    return { email: session.username, groups: session.groups };
  }

  /**
   * Counts the session's visits, after an optional pause (`delay_ms`, at most
   * 5 s): a slow request that changes its session, to show (and test) that a
   * logout or a group change made while it runs is not undone when it saves.
   */
  @Post('api/v1/myself/visits')
  @HttpCode(200)
  @Header('Cache-Control', 'no-store')
  @UseGuards(GroupGuard)
  async visit(@Req() req: Request, @Query('delay_ms') delayMs?: string) {
    const delay = Math.min(Math.max(Number(delayMs) || 0, 0), 5000);
    if (delay > 0) await new Promise((resolve) => setTimeout(resolve, delay));
    const session = this.sessions.session(req) as SharedSessionObject & { visits?: number };
    session.visits = (session.visits ?? 0) + 1;
    return { email: session.username, visits: session.visits };
  }

  /** For nginx's auth_request (the comparison in the benchmark): 204 for a member, else 401/403/503. */
  @Get('auth/group/:groupId')
  @HttpCode(204)
  @Header('Cache-Control', 'no-store')
  @UseGuards(GroupGuard)
  @Groups({ param: 'groupId' })
  authorizeGroup(): void {}

  // Group resources. nginx checks membership before it serves them from its
  // cache; the app checks again (defence in depth) when a request reaches it.

  @Get('api/v1/group/:groupId/cacheable/:resourceId')
  @UseGuards(GroupGuard)
  @Groups({ param: 'groupId' })
  cacheableJson(@Param('groupId') groupId: string, @Param('resourceId') resourceId: string, @Res({ passthrough: true }) res: Response) {
    this.groupResource(res, this.config.cacheSeconds);
    return resource(groupId, resourceId);
  }

  @Get('api/v1/group/:groupId/uncacheable/:resourceId')
  @UseGuards(GroupGuard)
  @Groups({ param: 'groupId' })
  uncacheableJson(@Param('groupId') groupId: string, @Param('resourceId') resourceId: string, @Res({ passthrough: true }) res: Response) {
    this.groupResource(res, 0);
    return resource(groupId, resourceId);
  }

  @Get('group/:groupId/cacheable/:resourceId')
  @UseGuards(GroupGuard)
  @Groups({ param: 'groupId' })
  cacheablePage(
    @Param('groupId') groupId: string,
    @Param('resourceId') resourceId: string,
    @Res({ passthrough: true }) res: Response,
  ): string {
    this.groupResource(res, this.config.cacheSeconds);
    this.replies.setHeader(res, 'Content-Type', HTML);
    const r = resource(groupId, resourceId);
    return groupPage('cacheable', groupId, resourceId, r.response_id, r.origin_timestamp);
  }

  @Get('group/:groupId/uncacheable/:pageName')
  @UseGuards(GroupGuard)
  @Groups({ param: 'groupId' })
  uncacheablePage(
    @Req() req: Request,
    @Param('groupId') groupId: string,
    @Param('pageName') pageName: string,
    @Res({ passthrough: true }) res: Response,
  ): string {
    this.groupResource(res, 0);
    this.replies.setHeader(res, 'Content-Type', HTML);
    const r = resource(groupId, pageName);
    return groupPage('uncacheable', groupId, pageName, r.response_id, r.origin_timestamp, this.sessions.session(req).username);
  }

  /** 503 and the "try again" page when the request's session cannot be read; undefined otherwise. */
  private unavailablePage(req: Request, res: Response): string | undefined {
    if (this.sessions.sessionState(req) !== 'unavailable') return undefined;
    this.replies.status(res, 503);
    this.replies.setHeader(res, 'Retry-After', '5');
    return unavailablePage();
  }

  /**
   * A group resource: nginx keeps it for the group for `nginxSeconds`
   * (X-Accel-Expires, which nginx reads and never passes on); browsers and
   * shared caches never keep it (no-store): a copy in the browser would
   * outlive a logout, and a request that misses nginx's group location
   * (`/APP/...`, a trailing slash, `;params`) reaches the client with this
   * header as the app wrote it.
   */
  private groupResource(res: Response, nginxSeconds: number): void {
    this.replies.setHeader(res, 'X-Accel-Expires', String(nginxSeconds));
    this.replies.setHeader(res, 'Cache-Control', 'private, no-store');
  }
}

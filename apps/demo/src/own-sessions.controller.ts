import { Controller, Get, Header, Param, Post, Req, Res, UseGuards } from '@nestjs/common';
import { GroupGuard, SharedSessionService } from 'nest-resty-shared-session';
import { DemoRequest as Request, DemoResponse as Response, HTML, queryText, Replies } from './http';
import { ownSessionsPage } from './pages';

/**
 * "Your sessions" (/app/sessions): the logged-in user's own sessions, where
 * and when each logged in, and buttons to sign out one of them or all the
 * others. Each answers once nginx has applied it (the module's
 * `revocation.wait` is on in the demo): the ended sessions are refused at
 * once, cached pages included.
 */
@Controller('app/sessions')
@UseGuards(GroupGuard)
export class OwnSessionsController {
  constructor(
    private readonly sessions: SharedSessionService,
    private readonly replies: Replies,
  ) {}

  @Get()
  @Header('Cache-Control', 'no-store')
  @Header('Content-Type', HTML)
  async page(@Req() req: Request): Promise<string> {
    return ownSessionsPage(await this.sessions.listOwnSessions(req), queryText(req, 'done'));
  }

  @Post('others/revoke')
  async revokeOthers(@Req() req: Request, @Res() res: Response): Promise<void> {
    const result = await this.sessions.revokeOtherSessions(req);
    this.done(res, `signed out ${result.sessions} other session(s)`);
  }

  @Post(':sessionId/revoke')
  async revokeOne(@Req() req: Request, @Param('sessionId') sessionId: string, @Res() res: Response): Promise<void> {
    const result = await this.sessions.revokeOwnSession(req, sessionId);
    this.done(res, result.sessions ? 'signed out 1 session' : 'no such session of yours');
  }

  private done(res: Response, what: string): void {
    this.replies.redirect(res, `/app/sessions?done=${encodeURIComponent(what)}`);
  }
}

import { BadRequestException, Controller, Get, Header, Param, Post, Req, Res, UseGuards } from '@nestjs/common';
import { GroupGuard, Groups, LoginThrottle, RevocationConfirmation, SharedSessionService } from 'nest-resty-shared-session';
import { DemoRequest as Request, DemoResponse as Response, HTML, queryText, Replies } from './http';
import { adminPage, AdminUserView } from './pages';
import { StatusPanel } from './status-panel';
import { FIXTURE_USERS } from './users';

/** Every group a fixture user may hold: the ones whose cache the admin may purge. */
const GROUPS = [...new Set(FIXTURE_USERS.flatMap((u) => u.groups))].sort();

/**
 * The administrator's page: every user and their live sessions, and what an
 * operator does from outside the request (PROTOCOL.md section 13): remove a
 * user from a group in every session, log a user out everywhere, purge a
 * group's cache at nginx. Members of `admins` only; the forms POST, so the
 * module's cross-site request guard covers them. Each change waits until
 * nginx has acknowledged it (`wait: true`): when the page comes back, nginx
 * already refuses what was revoked; when some nginx did not acknowledge in
 * time, the page says so as a warning (the change is made, but not yet
 * everywhere), never as a success. On the cluster layout the same calls
 * work in the form of PROTOCOL.md sections 14.1 to 14.3 (a user's sessions
 * are changed one session at a time).
 */
@Controller('app/admin')
@UseGuards(GroupGuard)
@Groups('admins')
export class AdminController {
  constructor(
    private readonly sessions: SharedSessionService,
    private readonly throttle: LoginThrottle,
    private readonly status: StatusPanel,
    private readonly replies: Replies,
  ) {}

  @Get()
  @Header('Cache-Control', 'no-store')
  @Header('Content-Type', HTML)
  async page(@Req() req: Request): Promise<string> {
    const users: AdminUserView[] = [];
    for (const user of FIXTURE_USERS) {
      users.push({ email: user.email, groups: user.groups, sessions: await this.sessions.listSessions(user.email) });
    }
    const bans = await this.throttle.bans();
    const figures = await this.status.figures();
    return adminPage(users, GROUPS, req.sessionID!, queryText(req, 'done'), bans, queryText(req, 'warning'), figures);
  }

  /** Login throttling: lifts the bans of a user (at every address) or of a client address. */
  @Post('bans/:subject/lift')
  async liftBan(@Param('subject') subject: string, @Res() res: Response): Promise<void> {
    const lifted = await this.throttle.liftBans(subject);
    this.done(res, `lifted ${lifted.length} login ban(s) of ${subject}`);
  }

  @Post('users/:email/groups/:group/remove')
  async removeFromGroup(@Param('email') email: string, @Param('group') group: string, @Res() res: Response): Promise<void> {
    const result = await this.sessions.removeUserFromGroup(this.user(email), group, { wait: true });
    this.done(res, `removed ${email} from ${group} in ${result.sessions} session(s)`, result.confirmation);
  }

  @Post('users/:email/logout-everywhere')
  async logoutEverywhere(@Req() req: Request, @Param('email') email: string, @Res() res: Response): Promise<void> {
    // The administrator's own session survives logging themselves out elsewhere.
    const result = await this.sessions.revokeUser(this.user(email), { except: req.sessionID, wait: true });
    this.done(res, `logged ${email} out of ${result.sessions} session(s)`, result.confirmation);
  }

  @Post('groups/:group/purge-cache')
  async purgeCache(@Param('group') group: string, @Res() res: Response): Promise<void> {
    if (!GROUPS.includes(group)) throw new BadRequestException(`unknown group: ${group}`);
    const result = await this.sessions.invalidateGroupCache(group, { wait: true });
    this.done(res, `group ${group}: cache generation ${result.generation}`, result.confirmation);
  }

  /** The not-before mark: every session issued before now ends, this one too (log in again). */
  @Post('not-before')
  async notBefore(@Res() res: Response): Promise<void> {
    await this.sessions.revokeIssuedBefore(new Date(), { wait: true });
    this.replies.redirect(res, '/app/login');
  }

  private user(email: string): string {
    if (!FIXTURE_USERS.some((u) => u.email === email)) throw new BadRequestException(`unknown user: ${email}`);
    return email;
  }

  /** Back to the page, saying what was done; a wait that timed out is a warning (some nginx may still allow what was revoked). */
  private done(res: Response, what: string, confirmation?: RevocationConfirmation): void {
    if (!confirmation?.timedOut) return this.replies.redirect(res, `/app/admin?done=${encodeURIComponent(what)}`);
    const { acknowledged, expected } = confirmation;
    const heard =
      expected > 0 ? `only ${acknowledged} of ${expected} subscribed nginx acknowledged it` : 'the acknowledgement channel failed';
    const warning = `${what}, but NOT confirmed: ${heard} before the timeout; until the others apply it they may still allow what it revoked`;
    this.replies.redirect(res, `/app/admin?warning=${encodeURIComponent(warning)}`);
  }
}

import {
  CanActivate,
  ExecutionContext,
  ForbiddenException,
  HttpException,
  HttpStatus,
  Inject,
  Injectable,
  Optional,
  UnauthorizedException,
} from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import type { GroupRequirement } from './groups.decorator';
import { loggedInUsername, noSessionReason, requireSession, SharedSessionRequest as Request } from './session-request';
import { NO_METRICS, SessionMetrics } from './shared-session.metrics';
import { GROUPS_METADATA } from './shared-session.constants';

/**
 * 401 without a logged-in session (no `username`), 403 when the session is
 * in none of the groups that `@Groups()` names, 503 when Redis is down.
 * Without `@Groups()` a logged-in session is enough. The protected methods
 * are the places to change where groups come from or what is thrown.
 */
@Injectable()
export class GroupGuard implements CanActivate {
  /** Counts each decision (a property, so that a subclass's own constructor need not pass it). */
  @Optional()
  @Inject(SessionMetrics)
  private readonly metrics: SessionMetrics = NO_METRICS;

  constructor(protected readonly reflector: Reflector) {}

  canActivate(context: ExecutionContext): boolean {
    const req = context.switchToHttp().getRequest<Request>();
    let username: string | undefined;
    try {
      username = this.getUsername(req);
    } catch (err) {
      if (err instanceof HttpException && err.getStatus() === HttpStatus.SERVICE_UNAVAILABLE)
        this.metrics.decision('unavailable', 'unavailable');
      throw err;
    }
    if (!username) {
      this.metrics.decision('refused', noSessionReason(req));
      throw this.unauthorized();
    }
    const required = this.reflector.getAllAndOverride<GroupRequirement[] | undefined>(GROUPS_METADATA, [
      context.getHandler(),
      context.getClass(),
    ]);
    if (required && required.length > 0) {
      const wanted = this.resolveGroups(required, req);
      const held = this.getGroups(req);
      if (!wanted.some((group) => held.includes(group))) {
        this.metrics.decision('refused', 'not_member');
        throw this.forbidden();
      }
    }
    this.metrics.decision('allowed', 'none');
    return true;
  }

  /** The logged-in user's name, or undefined for an anonymous session. */
  protected getUsername(req: Request): string | undefined {
    return loggedInUsername(requireSession(req));
  }

  /** The groups the session grants access to. */
  protected getGroups(req: Request): string[] {
    const groups = requireSession(req).groups;
    return Array.isArray(groups) ? groups.filter((g): g is string => typeof g === 'string') : [];
  }

  /** The group ids `@Groups()` asks for on this request; a missing route parameter asks for none. */
  protected resolveGroups(required: GroupRequirement[], req: Request): string[] {
    const wanted: string[] = [];
    for (const r of required) {
      if (typeof r === 'string') {
        wanted.push(r);
        continue;
      }
      const value = (req.params as Record<string, string | undefined>)?.[r.param];
      if (typeof value === 'string' && value.length > 0) wanted.push(value);
    }
    return wanted;
  }

  protected unauthorized(): HttpException {
    return new UnauthorizedException('Log in to see this resource.');
  }

  protected forbidden(): HttpException {
    return new ForbiddenException('Your session is not a member of this group.');
  }
}

import { CanActivate, ExecutionContext, Injectable } from '@nestjs/common';
import { SessionMetrics } from './shared-session.metrics';
import { Reflector } from '@nestjs/core';
import type { Request } from 'express';
import { serviceUnavailable, sessionState } from './session-request';
import { ALLOW_UNAVAILABLE_SESSION_METADATA } from './shared-session.constants';

/**
 * 503 for a request whose validly signed session cookie could not be read
 * because Redis is down, on every route but those marked
 * `@AllowUnavailableSession()`: a handler that reads `req.session` would
 * otherwise take a logged-in user for an anonymous one ("log in" instead of
 * "try again"). Requests without a session cookie are not concerned.
 * Registered for every route by SharedSessionModule.
 */
@Injectable()
export class SessionAvailabilityGuard implements CanActivate {
  constructor(
    private readonly reflector: Reflector,
    private readonly metrics: SessionMetrics,
  ) {}

  canActivate(context: ExecutionContext): boolean {
    if (context.getType() !== 'http') return true;
    const req = context.switchToHttp().getRequest<Request>();
    if (sessionState(req) !== 'unavailable') return true;
    const allowed = this.reflector.getAllAndOverride<boolean | undefined>(ALLOW_UNAVAILABLE_SESSION_METADATA, [
      context.getHandler(),
      context.getClass(),
    ]);
    if (allowed) return true;
    // Only its 503s are decisions: what it lets through is decided by GroupGuard, or needs no session.
    this.metrics.decision('unavailable', 'unavailable');
    throw serviceUnavailable();
  }
}

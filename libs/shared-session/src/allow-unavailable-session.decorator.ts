import { SetMetadata } from '@nestjs/common';
import { ALLOW_UNAVAILABLE_SESSION_METADATA } from './shared-session.constants';

/**
 * Lets a route run while the request's session cannot be read (Redis is
 * down), instead of the 503 it gets otherwise: the route then sees no
 * `req.session`, and `SharedSessionService.sessionState(req)` says
 * `'unavailable'`, so it can degrade to anonymous or say "try again" itself.
 */
export const AllowUnavailableSession = (): MethodDecorator & ClassDecorator => SetMetadata(ALLOW_UNAVAILABLE_SESSION_METADATA, true);

import { InternalServerErrorException, ServiceUnavailableException } from '@nestjs/common';
import type { Request } from 'express';
import type { Session, SessionData } from 'express-session';

/** Set by SharedSessionMiddleware on every request it has seen. */
const SEEN = Symbol('resty-shared-session:seen');
/** Set when the session could not be read because Redis failed. */
const UNAVAILABLE = Symbol('resty-shared-session:unavailable');

/** The session id the request's cookie carried with a valid signature. */
const CARRIED = Symbol('resty-shared-session:carried');

/** Set when the request sent session cookies of different values (cookie tossing, PROTOCOL.md section 10). */
const CONFLICT = Symbol('resty-shared-session:conflict');

/** The timeouts of the session that login() is about to create (the middleware's genid reads them). */
const TIMEOUTS = Symbol('resty-shared-session:timeouts');

type Marked = Request & {
  [SEEN]?: true;
  [UNAVAILABLE]?: true;
  [CARRIED]?: string;
  [CONFLICT]?: true;
  [TIMEOUTS]?: { absoluteTimeoutSeconds: number | null };
};

/** login() sets them before it regenerates the session: the new id's deadline comes from them (PROTOCOL.md section 12). */
export function setNewSessionTimeouts(req: Request, timeouts: { absoluteTimeoutSeconds: number | null }): void {
  (req as Marked)[TIMEOUTS] = timeouts;
}

export function newSessionTimeouts(req: Request): { absoluteTimeoutSeconds: number | null } | undefined {
  return (req as Marked)[TIMEOUTS];
}

export function markSessionRequest(req: Request, available: boolean): void {
  (req as Marked)[SEEN] = true;
  if (!available) (req as Marked)[UNAVAILABLE] = true;
}

export function markCarriedSessionId(req: Request, sid: string): void {
  (req as Marked)[CARRIED] = sid;
}

/**
 * The id the request's cookie carried with a valid signature, whether or not
 * a session was found under it (PROTOCOL.md section 9: logout and login end it
 * whatever state its keys are in).
 */
export function carriedSessionId(req: Request): string | undefined {
  return (req as Marked)[CARRIED];
}

export function markSessionCookieConflict(req: Request): void {
  (req as Marked)[CONFLICT] = true;
}

/**
 * PROTOCOL.md section 16.3: why a request has no logged-in session.
 * `two_sessions` when it sent two different session cookies; `session_ended`
 * when its cookie named a session that is no more (expired, destroyed, past
 * its deadline: express-session then made a new one); else `no_session`.
 */
export function noSessionReason(req: Request): 'no_session' | 'two_sessions' | 'session_ended' {
  const marked = req as Marked;
  if (marked[CONFLICT]) return 'two_sessions';
  const carried = marked[CARRIED];
  return carried !== undefined && req.sessionID !== carried ? 'session_ended' : 'no_session';
}

/**
 * What the request's session is: 'active' for a logged-in session (one with
 * a `username`), 'unavailable' when the request carried a validly signed
 * cookie but Redis could not be asked about it, 'anonymous' otherwise (no
 * cookie, a cookie that is no session, a session without a user). A request
 * without a session cookie is anonymous even while Redis is down.
 */
export type SessionState = 'anonymous' | 'active' | 'unavailable';

export function sessionState(req: Request): SessionState {
  const marked = req as Marked;
  if (marked[UNAVAILABLE]) return marked[CARRIED] === undefined ? 'anonymous' : 'unavailable';
  return loggedInUsername(req.session) === undefined ? 'anonymous' : 'active';
}

/** The session's user, when it has one (a non-empty `username`). */
export function loggedInUsername(session: Partial<SessionData> | undefined): string | undefined {
  const username = session?.username;
  return typeof username === 'string' && username.length > 0 ? username : undefined;
}

export function serviceUnavailable(): ServiceUnavailableException {
  return new ServiceUnavailableException('The session store is unavailable; try again shortly.');
}

/**
 * The request's session, or the HTTP error that explains why there is none:
 * 503 when Redis failed, 500 when the module's middleware never ran (a setup
 * mistake, not something a client can fix).
 */
export function requireSession(req: Request): Session & Partial<SessionData> {
  const marked = req as Marked;
  if (marked[UNAVAILABLE]) throw serviceUnavailable();
  if (!marked[SEEN] || !req.session) {
    throw new InternalServerErrorException(
      'No session on this request: import SharedSessionModule.forRoot() in the root module (its middleware sets req.session)',
    );
  }
  return req.session;
}

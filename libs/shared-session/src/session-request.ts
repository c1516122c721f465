import { InternalServerErrorException, ServiceUnavailableException } from '@nestjs/common';
import type { IncomingHttpHeaders } from 'node:http';

/**
 * The session on a request, on either adapter: express-session's `Session`
 * on Express, a FastifySharedSession on Fastify. Its fields are the
 * session's data; its methods take Node-style callbacks.
 */
export interface SharedSessionObject {
  readonly id: string;
  /** Reserved (PROTOCOL.md): the logged-in user. */
  username?: string;
  /** Reserved (PROTOCOL.md): the group ids that grant access. */
  groups?: string[];
  regenerate(callback: (err?: unknown) => void): unknown;
  destroy(callback: (err?: unknown) => void): unknown;
  save(callback?: (err?: unknown) => void): unknown;
  reload(callback: (err?: unknown) => void): unknown;
  touch(): unknown;
}

/** What the library reads of a request: an Express `Request` and a Fastify `FastifyRequest` both are one. */
export interface SharedSessionRequest {
  headers: IncomingHttpHeaders;
  method: string;
  ip?: string;
  hostname?: string;
  params?: unknown;
  /** A SharedSessionObject once the module has run; `object` so that another plugin's typing of the name (@fastify/session's) still fits. */
  session?: SharedSessionObject | object | null;
  sessionID?: string;
}

/** What the library writes on a response (Set-Cookie): an Express `Response`, or a Fastify `FastifyReply`. */
export type SharedSessionResponse =
  | { getHeader(name: string): unknown; setHeader(name: string, value: string | readonly string[]): unknown }
  | { getHeader(name: string): unknown; header(name: string, value: unknown): unknown };

/** The type of a request's session: express-session's on an Express `Request`, SharedSessionObject otherwise. */
export type SessionOf<R> = R extends { session?: infer S }
  ? NonNullable<S> extends SharedSessionObject
    ? NonNullable<S>
    : SharedSessionObject
  : SharedSessionObject;

type Request = SharedSessionRequest;

/**
 * What the library marks on a request, kept beside it rather than on it: a
 * property added to Express's request (a large object whose shape changes
 * per request) costs V8 far more than a WeakMap entry.
 */
interface Marks {
  /** Set by the HTTP seam (the Express middleware, the Fastify hooks) on every request it has seen. */
  seen?: true;
  /** Set when the session could not be read because Redis failed. */
  unavailable?: true;
  /** The session id the request's cookie carried with a valid signature. */
  carried?: string;
  /** Set when the request sent session cookies of different values (cookie tossing, PROTOCOL.md section 10). */
  conflict?: true;
  /** The timeouts of the session that login() is about to create (the middleware's genid reads them). */
  timeouts?: { absoluteTimeoutSeconds: number | null };
}

const MARKS = new WeakMap<object, Marks>();
const NONE: Readonly<Marks> = Object.freeze({});

function marksOf(req: Request): Readonly<Marks> {
  return MARKS.get(req) ?? NONE;
}

function mark(req: Request): Marks {
  let marks = MARKS.get(req);
  if (marks === undefined) MARKS.set(req, (marks = {}));
  return marks;
}

/** login() sets them before it regenerates the session: the new id's deadline comes from them (PROTOCOL.md section 12). */
export function setNewSessionTimeouts(req: Request, timeouts: { absoluteTimeoutSeconds: number | null }): void {
  mark(req).timeouts = timeouts;
}

export function newSessionTimeouts(req: Request): { absoluteTimeoutSeconds: number | null } | undefined {
  return marksOf(req).timeouts;
}

export function markSessionRequest(req: Request, available: boolean): void {
  const marks = mark(req);
  marks.seen = true;
  if (!available) marks.unavailable = true;
}

export function markCarriedSessionId(req: Request, sid: string): void {
  mark(req).carried = sid;
}

/**
 * The id the request's cookie carried with a valid signature, whether or not
 * a session was found under it (PROTOCOL.md section 9: logout and login end it
 * whatever state its keys are in).
 */
export function carriedSessionId(req: Request): string | undefined {
  return marksOf(req).carried;
}

export function markSessionCookieConflict(req: Request): void {
  mark(req).conflict = true;
}

/**
 * PROTOCOL.md section 16.3: why a request has no logged-in session.
 * `two_sessions` when it sent two different session cookies; `session_ended`
 * when its cookie named a session that is no more (expired, destroyed, past
 * its deadline: express-session then made a new one); else `no_session`.
 */
export function noSessionReason(req: Request): 'no_session' | 'two_sessions' | 'session_ended' {
  const marks = marksOf(req);
  if (marks.conflict) return 'two_sessions';
  const carried = marks.carried;
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
  const marks = marksOf(req);
  if (marks.unavailable) return marks.carried === undefined ? 'anonymous' : 'unavailable';
  return loggedInUsername(req.session) === undefined ? 'anonymous' : 'active';
}

/** The session's user, when it has one (a non-empty `username`). */
export function loggedInUsername(session: unknown): string | undefined {
  const username = (session as { username?: unknown } | null | undefined)?.username;
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
export function requireSession<R extends Request>(req: R): SessionOf<R> {
  const marks = marksOf(req);
  if (marks.unavailable) throw serviceUnavailable();
  if (!marks.seen || !req.session) {
    throw new InternalServerErrorException(
      'No session on this request: import SharedSessionModule.forRoot() in the root module (its middleware sets req.session)',
    );
  }
  return req.session as SessionOf<R>;
}

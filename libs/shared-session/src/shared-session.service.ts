import { Inject, Injectable, Logger, OnApplicationShutdown, UnauthorizedException } from '@nestjs/common';
import type { Request, Response } from 'express';
import type { Session, SessionData } from 'express-session';
import { FlaskRedisSessionStore } from './flask-redis-session.store';
import { setCookieLines } from './session-cookie-bridge';
import { clearingSessionCookies } from './session-cookie-clearing';
import { readSessionCookie, readSessionCookieValues } from './session-cookie-header';
import { SessionCookieSigner } from './session-cookie-signer';
import { IDLE_KEY } from './session-lifetime';
import { isWellFormed } from './session-json';
import {
  carriedSessionId,
  requireSession,
  serviceUnavailable,
  markSessionRequest,
  SessionState,
  sessionState,
  setNewSessionTimeouts,
} from './session-request';
import { SHARED_SESSION_CONFIG } from './shared-session.constants';
import { checkTimeouts, SharedSessionConfig } from './shared-session.options';
import { ControlOptions, ControlResult, LOGIN_METADATA_FIELD, SessionControl, UserSession } from './session-control';
import { userIdOf } from './session-control.keys';
import type { RevocationConfirmation } from './revocation-acknowledgements';
import { SessionEvents } from './shared-session.events';
import { ControlOperation, metricsClock, NO_METRICS, secondsSince, SessionMetrics } from './shared-session.metrics';

declare module 'express-session' {
  interface SessionData {
    /** Reserved (PROTOCOL.md): the logged-in user. */
    username?: string;
    /** Reserved (PROTOCOL.md): the group ids that grant access, mirrored into Redis for nginx. */
    groups?: string[];
  }
}

export interface SessionLogin {
  username: string;
  groups?: string[];
  /** Anything else to keep in the session (JSON). */
  [key: string]: unknown;
}

/** One of the request's user's own sessions, as `listOwnSessions` gives it. */
export interface OwnSession extends UserSession {
  /** True for the session of the request that asked. */
  current: boolean;
}

/**
 * One session's own timeouts, for "keep me signed in" (PROTOCOL.md section
 * 12); each defaults to the module's option of the same name.
 */
export interface SessionLoginOptions {
  /** The session ends after this many seconds unused (at the app or at nginx). */
  idleTimeoutSeconds?: number;
  /** The session ends this many seconds after login, whatever happens. At least its idle timeout. */
  absoluteTimeoutSeconds?: number;
}

/**
 * Login, logout and group changes, each written to Redis before it returns;
 * and control from outside the request (PROTOCOL.md section 13): a user's
 * sessions listed, changed or ended together, a not-before mark, a group's
 * cache purged at nginx.
 */
@Injectable()
export class SharedSessionService implements OnApplicationShutdown {
  private readonly logger = new Logger('SharedSession');

  constructor(
    @Inject(SHARED_SESSION_CONFIG) private readonly config: SharedSessionConfig,
    private readonly store: FlaskRedisSessionStore,
    private readonly control: SessionControl,
    private readonly signer: SessionCookieSigner,
    private readonly events: SessionEvents,
    private readonly metrics: SessionMetrics = NO_METRICS,
  ) {}

  /**
   * Starts a logged-in session under a new session id (the old one is
   * deleted: no session fixation) and saves it. 503 when Redis is down.
   * `options` gives this session timeouts of its own ("keep me signed in");
   * a bad one throws a SharedSessionOptionsError naming it.
   */
  async login(req: Request, login: SessionLogin, options: SessionLoginOptions = {}): Promise<void> {
    const { username, groups = [], ...data } = login;
    if (typeof username !== 'string' || username.length === 0 || !isWellFormed(username)) {
      throw new TypeError('login: username must be a non-empty, well-formed string (no lone surrogate)');
    }
    checkGroups(groups);
    const timeouts = checkTimeouts(options ?? {}, {
      idle: this.config.idleTimeoutSeconds,
      absolute: this.config.absoluteTimeoutSeconds,
    });
    const session = requireSession(req);
    await this.endCarriedSession(req);
    // Two sessions sent (cookie tossing): end both and clear every copy, or the browser stays locked out after this login.
    const tossed = this.sessionCookieConflict(req) ? await this.endTossedSessions(req) : false;
    // The new id's deadline is this login's absolute timeout (the middleware's genid reads it).
    setNewSessionTimeouts(req, timeouts);
    await settle(req, (done) => session.regenerate(done));
    Object.assign(req.session, data, { username, groups: [...groups], [IDLE_KEY]: timeouts.idleTimeoutSeconds }, this.loginMetadata(req));
    await settle(req, (done) => req.session.save(done));
    if (tossed) this.clearCookies(req, req.res, true);
    this.metrics.login();
    this.events.report('login', 'login', { sessionId: req.sessionID, user: this.userOf(req) });
  }

  /**
   * Deletes the session's keys, and those of every other session that a
   * validly signed cookie of the name in the request names (two sessions
   * sent: cookie tossing), and clears the cookie for the host, the
   * configured Domain and each parent domain of the request's host, at the
   * configured Path and at `/`. 503 when Redis is down. With the module's
   * `revocation.wait`, returns once every subscribed nginx has applied the
   * logout (or after `revocation.timeoutMs`).
   */
  async logout(req: Request, res: Response): Promise<void> {
    const session = requireSession(req);
    const ended = { sessionId: req.sessionID, user: this.userOf(req) };
    await this.endCarriedSession(req);
    await this.endTossedSessions(req);
    await settle(req, (done) => session.destroy(done));
    const confirmation = await this.awaitReaders('logout');
    this.clearCookies(req, res);
    this.metrics.logout();
    this.events.report('logout', 'logout', { ...ended, confirmation });
  }

  /**
   * True when the request carried cookies of the session's name with
   * different values (two sessions sent, as cookie tossing does): both doors
   * refuse such a header (PROTOCOL.md section 10), so the request has no
   * session. Logging out, or clearing the site's cookies, ends it.
   */
  sessionCookieConflict(req: Request): boolean {
    const reading = readSessionCookie(req.headers.cookie, this.config.cookieName);
    return reading.found === 'refused' && reading.conflict === true;
  }

  /** Ends every session that a validly signed cookie of the name in the request names, but the request's own. True when the header held more than one value. */
  private async endTossedSessions(req: Request): Promise<boolean> {
    const values = readSessionCookieValues(req.headers.cookie, this.config.cookieName);
    // The request's own session and the id its cookie carried are ended by the caller.
    const handled = new Set([req.sessionID, carriedSessionId(req)]);
    for (const value of values) {
      const sid = this.signer.verify(value)?.sid;
      if (sid && !handled.has(sid)) await settle(req, (done) => this.store.destroy(sid, done));
    }
    return values.length > 1;
  }

  /**
   * The Set-Cookie lines that clear our cookie wherever the browser may hold
   * one (session-cookie-clearing.ts), after those already set. After a login
   * (`keepOwn`), the new cookie's own place is left to express-session's
   * line, which is written after these.
   */
  private clearCookies(req: Request, res: Response | undefined, keepOwn = false): void {
    if (!res) return;
    const cleared = clearingSessionCookies(this.config.cookieName, this.config.cookie, req.hostname, keepOwn);
    res.setHeader('Set-Cookie', [...setCookieLines(res.getHeader('Set-Cookie')), ...cleared]);
  }

  /**
   * Replaces the session's groups; nginx sees the change as soon as the
   * notice arrives. With the module's `revocation.wait`, returns once every
   * subscribed nginx has applied it (or after `revocation.timeoutMs`).
   */
  async setGroups(req: Request, groups: string[]): Promise<void> {
    checkGroups(groups);
    const session = requireSession(req);
    session.groups = [...groups];
    await settle(req, (done) => session.save(done));
    const confirmation = await this.awaitReaders('group change');
    this.events.report('group_change', 'setGroups', { sessionId: req.sessionID, user: this.userOf(req), sessions: 1, confirmation });
  }

  /** The user id the request's session names (for events), if any. */
  private userOf(req: Request): string | undefined {
    return req.session ? userIdOf(req.session as unknown as Record<string, unknown>, this.config.userIdField) : undefined;
  }

  /**
   * With the module's `revocation.wait`: the barrier of PROTOCOL.md section
   * 13.4 after the change's own notices, and the wait for every subscribed
   * reader. The change is made either way: past the timeout (or with Redis
   * gone since) the answer leaves with a warning, which names neither the
   * session nor the user.
   */
  private async awaitReaders(change: 'logout' | 'group change'): Promise<RevocationConfirmation | undefined> {
    if (!this.config.revocation.wait) return undefined;
    const confirmation = await this.control.confirmRevocation();
    if (!confirmation?.timedOut) return confirmation;
    const { acknowledged, expected } = confirmation;
    const heard =
      expected > 0 ? `${acknowledged} of ${expected} subscribed readers (nginx) acknowledged it` : 'the acknowledgement channel failed';
    this.logger.warn(
      `${change}: ${heard} within revocation.timeoutMs (${this.config.revocation.timeoutMs} ms); answered anyway, ` +
        'so a reader may pass the next requests of the session until it applies the notice',
    );
    return confirmation;
  }

  /**
   * The session id the cookie carried, when the request's session is another
   * one (its keys were missing or unreadable, so express-session made a new
   * id): every key of it deleted and the id published, so that nginx, which
   * judges by the signature and groups keys alone, refuses it too.
   */
  private async endCarriedSession(req: Request): Promise<void> {
    const carried = carriedSessionId(req);
    if (carried && carried !== req.sessionID) await settle(req, (done) => this.store.destroy(carried, done));
  }

  /** Section 13.1: what `loginMetadata` asks to record, under the session's reserved `_login` key. */
  private loginMetadata(req: Request): Record<string, unknown> {
    const { ip, userAgent } = this.config.loginMetadata;
    if (!ip && !userAgent) return {};
    const agent = req.get('user-agent');
    return {
      [LOGIN_METADATA_FIELD]: {
        ...(ip && req.ip ? { ip: req.ip } : {}),
        ...(userAgent && agent ? { userAgent: agent.slice(0, 256) } : {}),
      },
    };
  }

  // Control from outside the request (PROTOCOL.md section 13). Each change is
  // one atomic script that also publishes what nginx must forget; a bad
  // argument is a TypeError naming it; Redis down is a 503 and changes nothing.
  // With `{ wait: true }` (or the module's `revocation.wait`) the call returns
  // once every subscribed nginx acknowledged, or after `timeoutMs`:
  // `confirmation` says which.

  /** The user's live sessions, oldest first; [] for an unknown user. */
  listSessions(userId: string): Promise<UserSession[]> {
    return this.timedControl('listSessions', () => this.control.listSessions(userId));
  }

  /** Ends one session. `sessions`: 1 when it existed. */
  revokeSession(sessionId: string, options?: ControlOptions): Promise<ControlResult> {
    return this.timedControl('revokeSession', () => this.control.revokeSession(sessionId, options));
  }

  /** Ends every live session of the user ("log out everywhere"), but `except` (a session id or several). */
  revokeUser(userId: string, options?: ControlOptions & { except?: string | string[] }): Promise<ControlResult> {
    return this.timedControl('revokeUser', () => this.control.revokeUser(userId, options));
  }

  /** Every session issued before `date` has ended, at nginx too (the not-before mark; never in the future). */
  revokeIssuedBefore(date: Date | number, options?: ControlOptions): Promise<ControlResult & { notBefore: Date }> {
    return this.timedControl('revokeIssuedBefore', () => this.control.revokeIssuedBefore(date, options));
  }

  /** Replaces the groups of every live session of the user, all or none. */
  setUserGroups(userId: string, groups: string[], options?: ControlOptions): Promise<ControlResult> {
    return this.timedControl('setUserGroups', () => this.control.setUserGroups(userId, groups, options));
  }

  /** Adds the group to every live session of the user, all or none. */
  addUserToGroup(userId: string, group: string, options?: ControlOptions): Promise<ControlResult> {
    return this.timedControl('addUserToGroup', () => this.control.addUserToGroup(userId, group, options));
  }

  /** Removes the group from every live session of the user, all or none. */
  removeUserFromGroup(userId: string, group: string, options?: ControlOptions): Promise<ControlResult> {
    return this.timedControl('removeUserFromGroup', () => this.control.removeUserFromGroup(userId, group, options));
  }

  /** A new cache generation for the group: nginx stops serving what it cached for it (PROTOCOL.md section 13.3). */
  invalidateGroupCache(group: string, options?: ControlOptions): Promise<ControlResult & { generation: number }> {
    return this.timedControl('invalidateGroupCache', () => this.control.invalidateGroupCache(group, options));
  }

  // The request's user's own sessions ("your sessions"): the control methods
  // above, limited to the user the request's session names (userIdField).
  // 401 without a logged-in session; 503 when Redis is down.

  /** The request's user's live sessions, oldest first; `current` marks the request's own. */
  async listOwnSessions(req: Request): Promise<OwnSession[]> {
    const user = this.ownUser(req);
    const sessions = await this.listSessions(user);
    return sessions.map((s) => ({ ...s, current: s.sessionId === req.sessionID }));
  }

  /**
   * Ends one of the request's user's sessions: a session id that is not one
   * of theirs (another user's, or none) ends nothing (`sessions: 0`), and
   * says no more.
   */
  async revokeOwnSession(req: Request, sessionId: string, options?: ControlOptions): Promise<ControlResult> {
    const user = this.ownUser(req);
    const own = (await this.listSessions(user)).some((s) => s.sessionId === sessionId);
    return own
      ? this.timedControl('revokeOwnSession', () => this.control.revokeSession(sessionId, options, 'revokeOwnSession'))
      : { sessions: 0 };
  }

  /** Ends every live session of the request's user but the request's own ("sign out everywhere else"). */
  revokeOtherSessions(req: Request, options?: ControlOptions): Promise<ControlResult> {
    const user = this.ownUser(req);
    return this.timedControl('revokeOtherSessions', () =>
      this.control.revokeUser(user, { ...options, except: req.sessionID }, 'revokeOtherSessions'),
    );
  }

  /** The user the request's session names, or a 401. */
  /** A control method: 503 when Redis fails (a bad argument stays a TypeError), counted and timed by its name. */
  private async timedControl<T>(op: ControlOperation, call: () => Promise<T>): Promise<T> {
    if (!this.metrics.enabled) return unavailableOnFailure(call);
    const start = metricsClock(this.metrics);
    let failure: unknown;
    try {
      return await unavailableOnFailure(() =>
        call().catch((err: unknown) => {
          failure = err ?? new Error('failed');
          throw err;
        }),
      );
    } finally {
      this.metrics.controlOperation(op, secondsSince(start), failure);
    }
  }

  private ownUser(req: Request): string {
    const user = userIdOf(requireSession(req) as unknown as Record<string, unknown>, this.config.userIdField);
    if (user === undefined) throw new UnauthorizedException('not logged in');
    return user;
  }

  async onApplicationShutdown(): Promise<void> {
    await this.control.close();
  }

  /** The current session (503 when Redis is down). */
  session(req: Request): Session & Partial<SessionData> {
    return requireSession(req);
  }

  /**
   * 'active' (logged in), 'anonymous', or 'unavailable': the request carried
   * a validly signed session cookie that Redis could not be asked about. For
   * a page that says "try again" rather than "log in" (with
   * `@AllowUnavailableSession()`); never throws.
   */
  sessionState(req: Request): SessionState {
    return sessionState(req);
  }
}

/** A control call: bad arguments stay TypeErrors; anything Redis did becomes a 503. */
async function unavailableOnFailure<T>(call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (err) {
    if (err instanceof TypeError) throw err;
    throw serviceUnavailable();
  }
}

function checkGroups(groups: unknown): asserts groups is string[] {
  if (!Array.isArray(groups) || groups.some((g) => typeof g !== 'string' || g.length === 0 || !isWellFormed(g))) {
    throw new TypeError('groups must be an array of non-empty, well-formed strings (no lone surrogate)');
  }
}

/**
 * Runs an express-session callback method; a store failure becomes a 503 and
 * drops req.session, so that express-session neither saves it again when the
 * response ends nor sends its cookie with the 503 (a failed login leaves no
 * session behind).
 */
function settle(req: Request, run: (done: (err?: unknown) => void) => void): Promise<void> {
  return new Promise((resolve, reject) => {
    run((err) => {
      if (!err) return resolve();
      markSessionRequest(req, false);
      delete (req as { session?: unknown }).session;
      reject(serviceUnavailable());
    });
  });
}

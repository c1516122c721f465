import { Inject, Injectable, Logger, NestMiddleware } from '@nestjs/common';
import { randomBytes } from 'node:crypto';
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import expressSession from 'express-session';
import onHeaders from 'on-headers';
import { FlaskRedisSessionStore } from './flask-redis-session.store';
import {
  ExpressSessionCookieHeader,
  ExpressSessionCookieValues,
  serializeSessionCookie,
  setCookieLines,
  toExpressSessionCookieHeader,
  toSharedSessionSetCookie,
} from './session-cookie-bridge';
import { SessionCookieSigner } from './session-cookie-signer';
import { newSessionId } from './session-id';
import { cookieExpiry, hasDeadline, storableByProxy } from './session-lifetime';
import {
  carriedSessionId,
  markCarriedSessionId,
  markSessionCookieConflict,
  markSessionRequest,
  newSessionTimeouts,
  sessionState,
} from './session-request';
import { SHARED_SESSION_CONFIG } from './shared-session.constants';
import type { SharedSessionConfig } from './shared-session.options';

/**
 * express-session with the Flask cookie format, through the translations of
 * session-cookie-bridge.ts: the incoming `<sid>.<sig>` cookie is handed to
 * express-session in its own format (signed with a per-process key nobody
 * else sees), and the Set-Cookie it writes is turned back into
 * `<sid>.<sig>`. Everything else (req.session, regenerate, destroy, save,
 * reload, touch) is express-session's own behaviour.
 */
@Injectable()
export class SharedSessionMiddleware implements NestMiddleware {
  private readonly logger = new Logger('SharedSession');
  private readonly handler: RequestHandler;
  private readonly internalSecret = randomBytes(32).toString('base64url');
  private readonly expressSessionValues = new ExpressSessionCookieValues(this.internalSecret);
  private readonly name: string;
  private readonly cookie: SharedSessionConfig['cookie'];
  private readonly absoluteTimeoutSeconds: number | null;

  constructor(
    @Inject(SHARED_SESSION_CONFIG) config: SharedSessionConfig,
    private readonly signer: SessionCookieSigner,
    private readonly store: FlaskRedisSessionStore,
  ) {
    this.name = config.cookieName;
    this.cookie = config.cookie;
    this.absoluteTimeoutSeconds = config.absoluteTimeoutSeconds;
    const { persistent, ...attributes } = config.cookie;
    this.handler = expressSession({
      name: config.cookieName,
      secret: this.internalSecret,
      store,
      genid: (req: Request) => this.newSessionId(req), // timed (PROTOCOL.md section 11)
      resave: false,
      saveUninitialized: false, // an anonymous request writes nothing
      rolling: false,
      proxy: config.proxy,
      // Only whether it is persistent matters: rewriteSetCookie gives every cookie of ours its expiry (section 12).
      cookie: { ...attributes, maxAge: persistent ? config.idleTimeoutSeconds * 1000 : undefined },
    });
  }

  /** A timed id whose deadline is the absolute timeout after now: login's own, else the module's; none without one. */
  private newSessionId(req: Request): string {
    const absolute = newSessionTimeouts(req)?.absoluteTimeoutSeconds ?? this.absoluteTimeoutSeconds;
    const issuedAt = Date.now();
    return newSessionId(absolute === null ? null : issuedAt + absolute * 1000, issuedAt);
  }

  use(req: Request, res: Response, next: NextFunction): void {
    const original = req.headers.cookie;
    const { header, verified, conflict } = this.translateRequestCookie(original);
    if (conflict) {
      markSessionCookieConflict(req);
      // Never the values: one could be the victim's session.
      this.logger.warn(
        `a request sent two different ${this.name} cookies (one may have been set by a sibling domain: cookie tossing); ` +
          'treated as no session until the user logs out or clears the site cookies',
      );
    }
    const resignSid = verified?.signedWithFallback ? verified.sid : undefined;
    if (verified) markCarriedSessionId(req, verified.sid);

    // Whether the store will extend this session when the request ends (its
    // touch), judged when the session is loaded: the touch itself starts just
    // before the headers are written.
    let renew = false;
    // Registered before express-session's own listener, so it runs after it.
    onHeaders(res, () => this.rewriteSetCookie(req, res, resignSid, renew));

    if (!this.store.available) {
      markSessionRequest(req, false);
      next();
      return;
    }
    if (header === undefined) delete req.headers.cookie;
    else req.headers.cookie = header;

    let continued = false;
    this.handler(req, res, (err?: unknown) => {
      if (continued) {
        // express-session reports a failed save or touch after the response has started.
        if (err) this.logger.warn(`session ${req.sessionID?.slice(0, 8)}… not saved: ${(err as Error).message}`);
        return;
      }
      continued = true;
      if (original === undefined) delete req.headers.cookie;
      else req.headers.cookie = original;
      markSessionRequest(req, !err);
      if (!err && req.session && req.sessionID === verified?.sid) renew = this.renewalDue(req, req.sessionID);
      if (err || !resignSid || req.sessionID !== resignSid || !req.session) {
        next();
        return;
      }
      // Signed with a fallback secret: store the current signature so nginx agrees with the new cookie.
      req.session.save((saveErr) => {
        if (saveErr) markSessionRequest(req, false);
        next();
      });
    });
  }

  /** The request's Cookie header for express-session (see toExpressSessionCookieHeader). */
  private translateRequestCookie(header: string | undefined): ExpressSessionCookieHeader {
    return toExpressSessionCookieHeader(header, this.name, this.signer, this.expressSessionValues);
  }

  /**
   * Our cookie in place of express-session's; or, when express-session wrote
   * none for a session that came signed with a fallback secret, our cookie
   * re-signed with the current one. Every cookie of ours gets its expiry from
   * PROTOCOL.md section 12 (session-lifetime.ts): the session's deadline, or
   * for a session without one a renewed 400 days, renewed when the store is
   * about to extend the session. Never a renewal on a response that nginx may
   * cache (section 6): the cookie of an unchanged session id is left out of
   * those. A cookie that named a session that has ended (idle, deadline) is
   * cleared.
   */
  private rewriteSetCookie(req: Request, res: Response, resignSid: string | undefined, renew: boolean): void {
    const lines = setCookieLines(res.getHeader('Set-Cookie'));
    const sid = req.sessionID;
    const carried = carriedSessionId(req);
    const storable = storableByProxy({ accelExpires: res.getHeader('X-Accel-Expires'), cacheControl: res.getHeader('Cache-Control') });
    const ours = (value: string) =>
      serializeSessionCookie(this.name, value, this.cookie, { expires: cookieExpiry(sid, this.cookie.persistent) });
    let rewritten = toSharedSessionSetCookie(lines, this.name, sid, this.signer);
    if (rewritten) {
      // express-session wrote it (a new or modified session): with our expiry, unless it only renews a cookie on a storable response.
      const renewalOnly = sid === carried;
      const value = this.signer.sign(sid);
      // Only express-session's own line: a login's clearing lines (session-cookie-clearing.ts) stay as they are.
      const isOwn = (line: string) => line === `${this.name}=${value}` || line.startsWith(`${this.name}=${value};`);
      rewritten = rewritten.flatMap((line) => (isOwn(line) ? (renewalOnly && storable ? [] : [ours(value)]) : [line]));
    } else if (req.session && sid === carried && (sid === resignSid || renew) && (!storable || sid === resignSid)) {
      rewritten = [...lines, ours(this.signer.sign(sid))];
    } else if (
      carried &&
      carried !== sid &&
      !storable &&
      sessionState(req) !== 'unavailable' &&
      !lines.some((l) => l.startsWith(`${this.name}=`))
    ) {
      // The cookie named a session that has ended (idle, deadline, deleted): the browser need not keep it.
      rewritten = [...lines, serializeSessionCookie(this.name, '', this.cookie, { maxAge: 0, expires: new Date(0) })];
    }
    if (rewritten) res.setHeader('Set-Cookie', rewritten);
  }

  /** A persistent cookie without a deadline is renewed when the store is about to extend its session (its touch). */
  private renewalDue(req: Request, sid: string): boolean {
    return this.cookie.persistent && !hasDeadline(sid) && this.store.touch !== undefined && this.store.refreshDue(sid, req.session!);
  }
}

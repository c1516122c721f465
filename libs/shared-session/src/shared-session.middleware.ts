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
import { markCarriedSessionId, markSessionRequest } from './session-request';
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

  constructor(
    @Inject(SHARED_SESSION_CONFIG) config: SharedSessionConfig,
    private readonly signer: SessionCookieSigner,
    private readonly store: FlaskRedisSessionStore,
  ) {
    this.name = config.cookieName;
    this.cookie = config.cookie;
    const { persistent, ...attributes } = config.cookie;
    this.handler = expressSession({
      name: config.cookieName,
      secret: this.internalSecret,
      store,
      genid: () => newSessionId(), // timed (PROTOCOL.md section 11)
      resave: false,
      saveUninitialized: false, // an anonymous request writes nothing
      rolling: false,
      proxy: config.proxy,
      cookie: { ...attributes, maxAge: persistent ? config.ttlSeconds * 1000 : undefined },
    });
  }

  use(req: Request, res: Response, next: NextFunction): void {
    const original = req.headers.cookie;
    const { header, verified } = this.translateRequestCookie(original);
    const resignSid = verified?.signedWithFallback ? verified.sid : undefined;
    if (verified) markCarriedSessionId(req, verified.sid);

    // Registered before express-session's own listener, so it runs after it.
    onHeaders(res, () => this.rewriteSetCookie(req, res, resignSid));

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
   * re-signed with the current one.
   */
  private rewriteSetCookie(req: Request, res: Response, resignSid: string | undefined): void {
    const lines = setCookieLines(res.getHeader('Set-Cookie'));
    let rewritten = toSharedSessionSetCookie(lines, this.name, req.sessionID, this.signer);
    if (!rewritten && resignSid && req.session && req.sessionID === resignSid) {
      const expires = req.session.cookie.expires ?? undefined;
      rewritten = [...lines, serializeSessionCookie(this.name, this.signer.sign(resignSid), this.cookie, { expires })];
    }
    if (rewritten) res.setHeader('Set-Cookie', rewritten);
  }
}

import { Inject, Injectable, Logger, NestMiddleware } from '@nestjs/common';
import { randomBytes, randomUUID } from 'node:crypto';
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import expressSession from 'express-session';
import onHeaders from 'on-headers';
import { sign as expressSign } from 'cookie-signature';
import { FlaskRedisSessionStore } from './flask-redis-session.store';
import { SessionCookieSigner } from './session-cookie-signer';
import { markSessionRequest } from './session-request';
import { SHARED_SESSION_CONFIG } from './shared-session.constants';
import type { SharedSessionConfig } from './shared-session.options';

/**
 * express-session with the Flask cookie format. express-session has no hook
 * for another signer, so this translates at the edges: the incoming
 * `<sid>.<sig>` cookie is verified here and handed to express-session in its
 * own format (signed with a per-process key nobody else sees), and the
 * Set-Cookie it writes is turned back into `<sid>.<sig>` with every attribute
 * kept. Everything else (req.session, regenerate, destroy, save, reload,
 * touch) is express-session's own behaviour.
 */
@Injectable()
export class SharedSessionMiddleware implements NestMiddleware {
  private readonly logger = new Logger('SharedSession');
  private readonly handler: RequestHandler;
  private readonly internalSecret = randomBytes(32).toString('base64url');
  private readonly name: string;

  constructor(
    @Inject(SHARED_SESSION_CONFIG) config: SharedSessionConfig,
    private readonly signer: SessionCookieSigner,
    private readonly store: FlaskRedisSessionStore,
  ) {
    this.name = config.cookieName;
    const { persistent, ...attributes } = config.cookie;
    this.handler = expressSession({
      name: config.cookieName,
      secret: this.internalSecret,
      store,
      genid: () => randomUUID(),
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

  /**
   * The Cookie header as express-session must see it: every cookie of our
   * name removed, and the first one (the one nginx reads) put back in
   * express-session's format when its signature is valid.
   */
  private translateRequestCookie(header: string | undefined) {
    if (!header) return { header, verified: null };
    const kept: string[] = [];
    let first: string | undefined;
    // nginx's $cookie_<name> matches names case-insensitively; so does this, so both judge the same cookie.
    const ours = this.name.toLowerCase();
    for (const part of header.split(';')) {
      const eq = part.indexOf('=');
      const name = (eq < 0 ? part : part.slice(0, eq)).trim();
      if (name.toLowerCase() !== ours) {
        kept.push(part);
        continue;
      }
      // The value is taken as it is, whitespace and all, as nginx takes it: both judge the same bytes.
      if (first === undefined) first = eq < 0 ? '' : part.slice(eq + 1);
    }
    if (first === undefined) return { header, verified: null };
    const verified = this.signer.verify(first);
    if (verified) {
      const signed = `s:${expressSign(verified.sid, this.internalSecret)}`;
      kept.push(` ${this.name}=${encodeURIComponent(signed)}`);
    }
    const rebuilt = kept.join(';').trim();
    return { header: rebuilt.length > 0 ? rebuilt : undefined, verified };
  }

  private rewriteSetCookie(req: Request, res: Response, resignSid: string | undefined): void {
    const current = res.getHeader('Set-Cookie');
    const headers = current === undefined ? [] : Array.isArray(current) ? current : [String(current)];
    const ours = `${this.name}=s%3A`;
    let wroteOurs = false;
    const rewritten = headers.map((h) => {
      if (!h.startsWith(ours)) return h;
      wroteOurs = true;
      const semi = h.indexOf(';');
      return `${this.name}=${this.signer.sign(req.sessionID)}${semi < 0 ? '' : h.slice(semi)}`;
    });
    if (!wroteOurs && resignSid && req.session && req.sessionID === resignSid) {
      // express-session's Cookie#serialize: the same attributes it would have written.
      const cookie = req.session.cookie as typeof req.session.cookie & { serialize(name: string, value: string): string };
      rewritten.push(cookie.serialize(this.name, this.signer.sign(resignSid)));
      wroteOurs = true;
    }
    if (wroteOurs) res.setHeader('Set-Cookie', rewritten);
  }
}

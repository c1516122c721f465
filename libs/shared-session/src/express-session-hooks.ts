import { Logger } from '@nestjs/common';
import type { NextFunction, Request, Response } from 'express';
import { Cookie, Session } from 'express-session';
import type { SessionData, Store } from 'express-session';
import onHeaders from 'on-headers';
import type { HttpSeamParts } from './http-seam';
import { serializeSessionCookie, setCookieLines } from './session-cookie-writer';
import { requestSessionCookie } from './request-session-cookie';
import { newSessionId } from './session-id';
import { cookieExpiry, hasDeadline, storableByProxy } from './session-lifetime';
import { carriedSessionId, markSessionRequest, newSessionTimeouts, sessionState } from './session-request';

/** The store as express-session's `Session` methods see it (`req.sessionStore`), with the `generate` set here. */
type ExpressSessionStore = Store & { generate(req: Request): void };

/** What the hooks decided for a request, and what its session looked like when it was read or made. */
interface RequestState {
  req: Request;
  /** The session id the cookie carried, verified (express-session's `cookieId`). */
  cookieId?: string;
  /** The session id and data (JSON without `cookie`) as the request found them: another id or other data is a change. */
  originalId?: string;
  originalJson?: string;
  /** The JSON last saved through the session's own `save` (express-session's `savedHash`). */
  savedJson?: string;
  /** Whether the session changed, judged when the response ended (before its save); undefined until then. */
  modified?: boolean;
  /** Signed with a fallback secret: the cookie is written again with the current one. */
  resign: boolean;
  /** The store is about to extend the session: its cookie is renewed too (no deadline). */
  renew: boolean;
  /** The request reached the store: the response's end waits for the save or the touch. */
  holdsEnd: boolean;
  /** The cookie was judged (the headers are being written); the response ended: each once. */
  headed: boolean;
  ended: boolean;
}

/**
 * The session's data as JSON, without its `cookie` (express-session's hash
 * leaves it out the same way): a copy without it, as a replacer function
 * would cost twice as much (it is called for every value).
 */
function sessionJson(session: Session): string {
  const { cookie: _cookie, ...data } = session as Session & Record<string, unknown>;
  return JSON.stringify(data);
}

/**
 * Express without express-session's middleware: the library's own, as the
 * Fastify seam's hooks. It finds the session cookie by PROTOCOL.md section
 * 10's reading (never a cookie parser), verifies it once, reads the session
 * through the store and sets `req.session` and `req.sessionID`; when the
 * response ends it saves the session if it changed (else extends it), and
 * when the headers are written it writes our cookie: on a new or changed
 * session, on a renewal, re-signed after a fallback secret, cleared when it
 * named a session that has ended, never renewed on a response nginx may keep
 * (section 6).
 *
 * `req.session` is express-session's own: a `Session` made by the store
 * (`createSession`) or by `store.generate`, with a `Cookie` and
 * `req.sessionStore` set, as express-session's middleware makes them. So
 * regenerate, destroy, save, reload, touch and `req.session.cookie` behave as
 * with that middleware, and so do the rules of when a session is saved,
 * extended or given a cookie (`resave: false`, `saveUninitialized: false`,
 * `rolling: false`). What is left out is what the Flask cookie made a cost:
 * express-session's cookie parsing and unsigning (its own format, which a
 * bridge had to translate ours into and back), and its SHA-1 of the
 * session's JSON (the JSON itself is compared).
 */
export class ExpressSessionHooks {
  private readonly logger = new Logger('SharedSession');
  private readonly cookieOptions: Record<string, unknown>;
  /** The state of each response the middleware saw, for the hooked `writeHead` and `end`. */
  private readonly states = new WeakMap<object, RequestState>();
  /** The application's response prototype, once hooked (install): its responses need no hooks of their own. */
  private hookedPrototype?: object;
  /** The application's request prototype, once it holds `sessionStore` (install): its requests need none of their own. */
  private storePrototype?: object;

  constructor(private readonly parts: HttpSeamParts) {
    const { config, store } = parts;
    const { persistent, ...attributes } = config.cookie;
    // Only whether it is persistent matters: every cookie of ours gets its expiry from session-lifetime.ts (section 12).
    this.cookieOptions = { ...attributes, maxAge: persistent ? config.idleTimeoutSeconds * 1000 : undefined };
    // As express-session's middleware sets it: regenerate() (the store's) makes the new session through it.
    (store as unknown as ExpressSessionStore).generate = (req: Request) => {
      req.sessionID = this.newSessionId(req);
      const session = new (Session as unknown as new (req: Request) => Session)(req);
      session.cookie = new (Cookie as unknown as new (options: Record<string, unknown>) => Cookie)(this.cookieOptions);
      req.session = session as Request['session'];
    };
  }

  /** A timed id whose deadline is the absolute timeout after now: login's own, else the module's; none without one. */
  private newSessionId(req: Request): string {
    const absolute = newSessionTimeouts(req)?.absoluteTimeoutSeconds ?? this.parts.config.absoluteTimeoutSeconds;
    const issuedAt = Date.now();
    return newSessionId(absolute === null ? null : issuedAt + absolute * 1000, issuedAt);
  }

  /**
   * Hooks the application's response prototype (Express's `app.response`)
   * and gives its request prototype (`app.request`) the store, once, when
   * the middleware is installed: a property added to each request or
   * response (as on-headers, a wrapped `end` and `req.sessionStore` are)
   * costs V8 far more than a WeakMap lookup.
   */
  hookApplication(app: { request?: object; response?: object } | undefined): void {
    if (app?.response && this.hookedPrototype === undefined) {
      this.hook(app.response);
      this.hookedPrototype = app.response;
    }
    if (app?.request && this.storePrototype === undefined) {
      (app.request as Request).sessionStore = this.parts.store as never;
      this.storePrototype = app.request;
    }
  }

  /**
   * `writeHead` and `end` of `target` (the response prototype, or a response
   * it does not reach), each looking up the response's state: a response
   * the middleware did not see goes through untouched. Our cookie is written
   * when the headers are (as on-headers, which takes the headers given to
   * `writeHead` first); the end waits for the save or the touch.
   */
  private hook(target: object): void {
    const { states } = this;
    const writeCookie = (res: Response, state: RequestState) => this.writeCookie(state.req, res, state);
    const endSession = (res: Response, state: RequestState, finish: () => Response) => this.endSession(state, res, finish);
    const { writeHead, end } = target as Response;
    (target as Response).writeHead = function (this: Response, ...args: unknown[]) {
      const state = states.get(this);
      if (state === undefined || state.headed) return writeHead.apply(this, args as Parameters<Response['writeHead']>);
      const listener = () => {
        state.headed = true;
        writeCookie(this, state);
      };
      // Headers given to writeHead itself: on-headers sets them first, then calls this writeHead again.
      if (args[typeof args[1] === 'string' ? 2 : 1]) {
        onHeaders(this, listener);
        return this.writeHead(...(args as Parameters<Response['writeHead']>));
      }
      listener();
      return writeHead.apply(this, args as Parameters<Response['writeHead']>);
    } as Response['writeHead'];
    (target as Response).end = function (this: Response, ...args: unknown[]) {
      const state = states.get(this);
      if (state === undefined || !state.holdsEnd) return end.apply(this, args as Parameters<Response['end']>);
      if (state.ended) return this;
      state.ended = true;
      return endSession(this, state, () => end.apply(this, args as Parameters<Response['end']>));
    } as Response['end'];
  }

  use(req: Request, res: Response, next: NextFunction): void {
    if (req.session) {
      // Another session middleware (or this one, mounted twice) already ran: as express-session, leave it.
      next();
      return;
    }
    const { config, signer, store } = this.parts;
    const verified = requestSessionCookie(req, config.cookieName, signer, this.logger);
    const state: RequestState = { req, cookieId: verified?.sid, resign: false, renew: false, holdsEnd: false, headed: false, ended: false };
    this.states.set(res, state);
    if (!this.hookedPrototype || !Object.prototype.isPrototypeOf.call(this.hookedPrototype, res)) this.hook(res);

    if (!store.available) {
      markSessionRequest(req, false);
      next();
      return;
    }
    if (!this.onCookiePath(req)) {
      markSessionRequest(req, true);
      next();
      return;
    }
    if (!this.storePrototype || !Object.prototype.isPrototypeOf.call(this.storePrototype, req)) req.sessionStore = store as never;
    state.holdsEnd = true;
    if (!verified) {
      this.generate(req, state);
      markSessionRequest(req, true);
      next();
      return;
    }
    req.sessionID = verified.sid;
    store.get(verified.sid, (err, data) => {
      if (err) {
        markSessionRequest(req, false);
        next();
        return;
      }
      if (data) this.inflate(req, state, data);
      else this.generate(req, state);
      markSessionRequest(req, true);
      const session = req.session;
      if (!data || !session) {
        next();
        return;
      }
      state.renew =
        config.cookie.persistent && !hasDeadline(session.id) && store.touch !== undefined && store.refreshDue(session.id, session);
      if (!verified.signedWithFallback) {
        next();
        return;
      }
      // Signed with a fallback secret: store the current signature so nginx agrees with the new cookie.
      state.resign = true;
      session.save((saveErr) => {
        if (saveErr) markSessionRequest(req, false);
        next();
      });
    });
  }

  /** express-session skips a request outside its cookie's path. */
  private onCookiePath(req: Request): boolean {
    const path = this.parts.config.cookie.path;
    if (!path || path === '/') return true;
    const url = req.originalUrl || req.url;
    const query = url.indexOf('?');
    return (query < 0 ? url : url.slice(0, query)).startsWith(path);
  }

  /** A new session, not saved unless it changes (express-session's `generate`). */
  private generate(req: Request, state: RequestState): void {
    (this.parts.store as unknown as ExpressSessionStore).generate(req);
    state.originalId = req.sessionID;
    state.originalJson = sessionJson(req.session!);
    this.wrapMethods(req, req.session!, state);
  }

  /** The session read from the store (express-session's `inflate`, `resave: false`). */
  private inflate(req: Request, state: RequestState, data: SessionData): void {
    this.parts.store.createSession(req, data);
    state.originalId = req.sessionID;
    state.originalJson = sessionJson(req.session!);
    state.savedJson = state.originalJson;
    this.wrapMethods(req, req.session!, state);
  }

  /** As express-session: `save` remembers what it saved, and `reload` wraps the session it reads in place of this one. */
  private wrapMethods(req: Request, session: Session, state: RequestState): void {
    const save = session.save;
    const reload = session.reload;
    Object.defineProperty(session, 'save', {
      configurable: true,
      enumerable: false,
      writable: true,
      value: function (this: Session, callback?: (err?: unknown) => void) {
        state.savedJson = sessionJson(this);
        return save.call(this, callback);
      },
    });
    Object.defineProperty(session, 'reload', {
      configurable: true,
      enumerable: false,
      writable: true,
      value: (callback: (err?: unknown) => void) =>
        reload.call(session, (err?: unknown) => {
          if (!err && req.session && req.session !== session) this.wrapMethods(req, req.session, state);
          callback(err);
        }),
    });
  }

  private modified(session: Session, state: RequestState, json = sessionJson(session)): boolean {
    return state.originalId !== session.id || state.originalJson !== json;
  }

  /**
   * The save or the touch when the response ends, the response held back
   * until it is done (read-your-writes: the next request finds it), as
   * express-session does; with its rules (`resave: false`,
   * `saveUninitialized: false`).
   */
  private endSession(state: RequestState, res: Response, finish: () => Response): Response {
    const { req } = state;
    const store = this.parts.store;
    const session = req.session;
    const sid = req.sessionID;
    if (!session || typeof sid !== 'string') return finish();
    const json = sessionJson(session);
    const modified = state.originalId !== session.id || state.originalJson !== json;
    state.modified = modified;
    const saved = state.originalId === session.id && state.savedJson === json;
    const shouldSave = state.savedJson === undefined && state.cookieId !== sid ? modified : !saved;
    if (shouldSave) {
      session.save((err) => {
        if (err) hooksLogger.warn(`session ${sid.slice(0, 8)}… not saved: ${(err as Error).message}`);
        finish();
      });
      return res;
    }
    if (store.touch && state.cookieId === sid) {
      store.touch(sid, session as never, () => finish());
      return res;
    }
    return finish();
  }

  /**
   * Our cookie, when the headers are written: on a new or changed session
   * (not when it only renews a cookie on a response nginx may keep, nor a
   * Secure one on a connection that is not: the browser would drop it); on a
   * renewal or after a fallback secret; cleared when the cookie named a
   * session that has ended (idle, deadline, deleted).
   */
  private writeCookie(req: Request, res: Response, state: RequestState): void {
    const { config, signer } = this.parts;
    const session = req.session;
    const sid = req.sessionID;
    const carried = carriedSessionId(req);
    // Read only when a cookie may be written: most responses (the session read, unchanged, carried) need none.
    const storable = () =>
      storableByProxy({ accelExpires: res.getHeader('X-Accel-Expires'), cacheControl: res.getHeader('Cache-Control') });
    let line: string | undefined;
    if (session && typeof sid === 'string') {
      const ours = () =>
        serializeSessionCookie(config.cookieName, signer.sign(sid), config.cookie, {
          expires: cookieExpiry(sid, config.cookie.persistent),
        });
      const modified = state.modified ?? this.modified(session, state);
      // express-session's rule (`rolling: false`): a new id that changed, or a persistent cookie whose session changed.
      const setByRule = modified && (state.cookieId !== sid || session.cookie?.expires != null);
      if (setByRule && !(session.cookie?.secure && !this.secure(req))) {
        if (!(sid === carried && storable())) line = ours();
      } else if (sid === carried && (state.resign || state.renew) && (state.resign || !storable())) {
        line = ours();
      }
    }
    if (!line && (carried === undefined || carried === sid)) return;
    const lines = setCookieLines(res.getHeader('Set-Cookie') as string | string[] | undefined);
    if (!line && !storable() && sessionState(req) !== 'unavailable' && !lines.some((l) => l.startsWith(`${config.cookieName}=`))) {
      // The cookie named a session that has ended (idle, deadline, deleted): the browser need not keep it.
      line = serializeSessionCookie(config.cookieName, '', config.cookie, { maxAge: 0, expires: new Date(0) });
    }
    if (line) res.setHeader('Set-Cookie', [...lines, line]);
  }

  /**
   * Whether the connection is HTTPS as express-session judges it: TLS to the
   * app; else, with `proxy: true`, the first X-Forwarded-Proto; with `proxy`
   * unset, Express's `req.secure` (its `trust proxy`).
   */
  private secure(req: Request): boolean {
    if ((req.socket as { encrypted?: boolean }).encrypted) return true;
    const proxy = this.parts.config.proxy;
    if (proxy === false) return false;
    if (proxy !== true) return req.secure;
    const forwarded = req.headers['x-forwarded-proto'];
    return typeof forwarded === 'string' && forwarded.split(',')[0].trim().toLowerCase() === 'https';
  }
}

const hooksLogger = new Logger('SharedSession');

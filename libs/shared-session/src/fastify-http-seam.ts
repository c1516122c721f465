import { Logger } from '@nestjs/common';
import type { HttpServer } from '@nestjs/common';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { FastifySessionContext, FastifySharedSession, sessionJson, unsavedChanges } from './fastify-session';
import type { HttpSeam, HttpSeamParts } from './http-seam';
import { serializeSessionCookie, setCookieLines } from './session-cookie-writer';
import { requestSessionCookie } from './request-session-cookie';
import { newSessionId } from './session-id';
import { cookieExpiry, hasDeadline, storableByProxy } from './session-lifetime';
import {
  carriedSessionId,
  markSessionRequest,
  newSessionTimeouts,
  SharedSessionRequest,
  SharedSessionResponse,
  sessionState,
} from './session-request';

/** The reply of a request, and what the hooks decided when the request came in. */
const REPLY = Symbol('resty-shared-session:reply');

interface HookState {
  /** The session read from the store, when the cookie named one that exists. */
  loaded?: FastifySharedSession;
  /** The session id and data as the request found them: a new id or other data is a change (express-session's rule). */
  originalId?: string;
  originalJson?: string;
  /** Signed with a fallback secret: the cookie is written again with the current one. */
  resign: boolean;
  /** The store is about to extend the session: its cookie is renewed too (no deadline). */
  renew: boolean;
}

/** A FastifyRequest as the hooks see it (its own `session` type: @fastify/session's typings may claim the name). */
type SessionRequest = Omit<FastifyRequest, 'session' | 'sessionID'> & {
  session?: FastifySharedSession;
  sessionID?: string;
  [REPLY]?: FastifyReply;
  [STATE]?: HookState;
};
const STATE = Symbol('resty-shared-session:hooks');

/**
 * Fastify: the library's own hooks, no session plugin. `onRequest` finds the
 * session cookie by PROTOCOL.md section 10's reading (never a cookie
 * parser), verifies it, reads the session through the store and sets
 * `req.session` (a FastifySharedSession) and `req.sessionID`; `onSend`
 * saves the session if it changed (else extends it), and writes our cookie
 * as the Express side does: on a new or changed session, on a renewal,
 * re-signed after a fallback secret, cleared when it named a session that
 * has ended, never renewed on a response nginx may keep (section 6).
 */
export class FastifyHttpSeam implements HttpSeam {
  private readonly logger = new Logger('SharedSession');

  constructor(private readonly parts: HttpSeamParts) {}

  install(_consumer: unknown, httpAdapter: HttpServer): void {
    const fastify = httpAdapter.getInstance() as FastifyInstance;
    // Both set on every request (null until then): one object shape for V8.
    fastify.decorateRequest('session', null as never);
    fastify.decorateRequest('sessionID', null as never);
    fastify.addHook('onRequest', (req, reply) => this.onRequest(req as unknown as SessionRequest, reply));
    fastify.addHook('onSend', async (req, reply, payload) => {
      await this.onSend(req as unknown as SessionRequest, reply);
      return payload;
    });
  }

  responseOf(req: SharedSessionRequest): SharedSessionResponse | undefined {
    return (req as SessionRequest)[REPLY];
  }

  setHeader(res: SharedSessionResponse, name: string, value: string): void {
    (res as FastifyReply).header(name, value);
  }

  appendSetCookie(res: SharedSessionResponse, lines: readonly string[]): void {
    // Fastify adds Set-Cookie values to those already set.
    if (lines.length > 0) (res as FastifyReply).header('set-cookie', [...lines]);
  }

  private async onRequest(req: SessionRequest, reply: FastifyReply): Promise<void> {
    const { config, signer, store } = this.parts;
    req[REPLY] = reply;
    const verified = requestSessionCookie(req, config.cookieName, signer, this.logger);
    const state: HookState = { resign: false, renew: false };
    req[STATE] = state;
    if (!store.available) {
      markSessionRequest(req, false);
      return;
    }
    const context = this.context(req);
    if (verified) {
      let data: Record<string, unknown> | null;
      try {
        data = await new Promise((resolve, reject) => context.load(verified.sid, (err, d) => (err ? reject(err) : resolve(d ?? null))));
      } catch {
        markSessionRequest(req, false);
        return;
      }
      if (data) state.loaded = context.replace(verified.sid, data);
    }
    const found = state.loaded ?? context.renew();
    state.originalId = found.id;
    state.originalJson = sessionJson(found);
    markSessionRequest(req, true);
    const session = state.loaded;
    if (!session) return;
    state.renew =
      config.cookie.persistent && !hasDeadline(session.id) && store.touch !== undefined && store.refreshDue(session.id, session);
    if (!verified!.signedWithFallback) return;
    // Signed with a fallback secret: store the current signature so nginx agrees with the new cookie.
    state.resign = true;
    await new Promise<void>((resolve) =>
      session.save((err) => {
        if (err) markSessionRequest(req, false);
        resolve();
      }),
    );
  }

  /** The store, and the request's session put in place, for FastifySharedSession. */
  private context(req: SessionRequest): FastifySessionContext {
    const { store } = this.parts;
    const context: FastifySessionContext = {
      load: (sid, callback) =>
        store.get(sid, (err, data) => {
          if (err || !data) return callback(err, null);
          const { cookie: _cookie, ...fields } = data as unknown as Record<string, unknown>;
          callback(undefined, fields);
        }),
      write: (session, callback) => store.set(session.id, session as never, callback),
      end: (sid, callback) => store.destroy(sid, callback),
      renew: () => this.put(req, new FastifySharedSession(context, this.newSessionId(req), undefined, 'empty')),
      replace: (sid, data) => {
        const session = new FastifySharedSession(context, sid, data, 'loaded');
        store.trackLoaded(session, data);
        return this.put(req, session);
      },
      drop: () => {
        req.session = undefined;
      },
    };
    return context;
  }

  private put(req: SessionRequest, session: FastifySharedSession): FastifySharedSession {
    req.session = session;
    req.sessionID = session.id;
    return session;
  }

  /**
   * True when the cookie is `Secure` and the connection is not HTTPS, as
   * express-session judges it: TLS to the app, else the first
   * X-Forwarded-Proto when the proxy is trusted (the `proxy` option, else
   * Fastify's `trustProxy`, through `req.protocol`).
   */
  private insecureForCookie(req: SessionRequest): boolean {
    const { cookie, proxy } = this.parts.config;
    if (!cookie.secure || (req.raw.socket as { encrypted?: boolean }).encrypted) return false;
    if (proxy === undefined) return req.protocol !== 'https';
    const forwarded = req.headers['x-forwarded-proto'];
    return !proxy || typeof forwarded !== 'string' || forwarded.split(',')[0].trim().toLowerCase() !== 'https';
  }

  /** A timed id whose deadline is the absolute timeout after now: login's own, else the module's; none without one. */
  private newSessionId(req: SessionRequest): string {
    const absolute = newSessionTimeouts(req)?.absoluteTimeoutSeconds ?? this.parts.config.absoluteTimeoutSeconds;
    const issuedAt = Date.now();
    return newSessionId(absolute === null ? null : issuedAt + absolute * 1000, issuedAt);
  }

  private async onSend(req: SessionRequest, reply: FastifyReply): Promise<void> {
    const state = req[STATE];
    if (!state) return;
    const { config, signer, store } = this.parts;
    const session = req.session ?? undefined;
    const sid = req.sessionID ?? undefined;
    const carried = carriedSessionId(req);
    const json = session && sessionJson(session);
    // Decided before the save: express-session's rule (a new id, or other data than the request found).
    const changed = session !== undefined && (sid !== state.originalId || json !== state.originalJson);
    if (session && unsavedChanges(session, json)) {
      await new Promise<void>((resolve) =>
        session.save((err) => {
          if (err) this.logger.warn(`session ${session.id.slice(0, 8)}… not saved: ${(err as Error).message}`);
          resolve();
        }),
      );
    } else if (session && session === state.loaded && store.touch) {
      await new Promise<void>((resolve) => store.touch!(session.id, session as never, () => resolve()));
    }
    const lines = setCookieLines(reply.getHeader('set-cookie') as string | string[] | undefined);
    const storable = storableByProxy({ accelExpires: reply.getHeader('x-accel-expires'), cacheControl: reply.getHeader('cache-control') });
    const expires = sid === undefined ? undefined : cookieExpiry(sid, config.cookie.persistent);
    const ours = () => serializeSessionCookie(config.cookieName, signer.sign(sid!), config.cookie, { expires });
    let line: string | undefined;
    if (session && changed && (sid !== carried || expires !== undefined)) {
      // A new or changed session: our cookie, unless it only renews a cookie on a response nginx may keep,
      // or is Secure on a connection that is not (as express-session: the browser would drop it).
      if (!(sid === carried && storable) && !this.insecureForCookie(req)) line = ours();
    } else if (session && sid === carried && (state.resign || state.renew) && (!storable || state.resign)) {
      line = ours();
    } else if (carried && carried !== sid && !storable && sessionState(req) !== 'unavailable') {
      if (!lines.some((l) => l.startsWith(`${config.cookieName}=`))) {
        // The cookie named a session that has ended (idle, deadline, deleted): the browser need not keep it.
        line = serializeSessionCookie(config.cookieName, '', config.cookie, { maxAge: 0, expires: new Date(0) });
      }
    }
    if (line) reply.header('set-cookie', line);
  }
}

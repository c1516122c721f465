import type { HttpServer, MiddlewareConsumer } from '@nestjs/common';
import type { FlaskRedisSessionStore } from './flask-redis-session.store';
import type { SessionCookieSigner } from './session-cookie-signer';
import type { SharedSessionRequest, SharedSessionResponse } from './session-request';
import type { SharedSessionConfig } from './shared-session.options';

/**
 * Where the library meets an HTTP platform: one implementation per Nest
 * adapter (express-http-seam.ts, fastify-http-seam.ts), chosen once by
 * SharedSessionHttp. Everything above it (the service, the guards, the
 * protocol, the store) never asks which platform it runs on.
 */
export interface HttpSeam {
  /** Puts a session on every request of the application (`req.session`, `req.sessionID`): a middleware, or hooks. */
  install(consumer: MiddlewareConsumer, httpAdapter: HttpServer): void;
  /** The response a request will be answered with, when the seam knows it (login adds its clearing lines there). */
  responseOf(req: SharedSessionRequest): SharedSessionResponse | undefined;
  /** Sets a response header (one value). */
  setHeader(res: SharedSessionResponse, name: string, value: string): void;
  /** Adds Set-Cookie lines after those the response already holds. */
  appendSetCookie(res: SharedSessionResponse, lines: readonly string[]): void;
}

/** What a seam is made of: the module's config, signer and store. */
export interface HttpSeamParts {
  config: SharedSessionConfig;
  signer: SessionCookieSigner;
  store: FlaskRedisSessionStore;
}

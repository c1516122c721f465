import { HttpException, HttpStatus, Inject, Injectable, Optional } from '@nestjs/common';
import { LOGIN_THROTTLE_STORAGE, LoginBan, LoginThrottleStorage } from './login-throttle.storage';
import type { LoginThrottleConfig } from './login-throttle.options';
import { serviceUnavailable, SharedSessionRequest } from './session-request';
import { SharedSessionHttp } from './shared-session-http';
import { SHARED_SESSION_CONFIG } from './shared-session.constants';
import type { SharedSessionConfig } from './shared-session.options';

/** An Express `Request` or a Fastify `FastifyRequest`. */
type Request = SharedSessionRequest & { socket?: { remoteAddress?: string } };

/** 429: the request's (user, address) or its address is banned for now; `Retry-After` says for how long. */
export class LoginThrottledException extends HttpException {
  constructor(readonly retryAfterSeconds: number) {
    super(
      { statusCode: HttpStatus.TOO_MANY_REQUESTS, message: `Too many failed logins; try again in ${retryAfterSeconds} s.` },
      HttpStatus.TOO_MANY_REQUESTS,
    );
  }
}

/**
 * Login throttling (the module's `loginThrottle` option; off by default):
 * the application reports each failed and successful login, the library
 * counts them in Redis and refuses logins of a banned subject with a 429.
 *
 * A subject is a user at a client address, or an address alone (past a
 * higher limit: many users tried from one address), never a user alone: a
 * stranger elsewhere who fails the victim's password bans only themselves,
 * and the victim logs in from their own address. The client address is
 * `req.ip`, so it follows Express's `trust proxy` (Fastify's `trustProxy`).
 *
 *     await throttle.check(req, email);     // before the password is verified: 429 when banned
 *     if (!ok) await throttle.failed(req, email); else await throttle.succeeded(req, email);
 *
 * With the option off every call does nothing. Redis down: 503.
 */
@Injectable()
export class LoginThrottle {
  private readonly limits: LoginThrottleConfig | null;

  constructor(
    @Inject(SHARED_SESSION_CONFIG) config: SharedSessionConfig,
    @Inject(LOGIN_THROTTLE_STORAGE) private readonly storage: LoginThrottleStorage,
    @Optional() private readonly http?: SharedSessionHttp,
  ) {
    this.limits = config.loginThrottle;
  }

  /** True when the module's `loginThrottle` option is on. */
  get enabled(): boolean {
    return this.limits !== null;
  }

  /** Throws a LoginThrottledException (429, `Retry-After` set on the response) while the user at this address, or the address, is banned. */
  async check(req: Request, user: string): Promise<void> {
    if (!this.limits) return;
    const address = this.clientAddress(req);
    const [pair, alone] = await this.unavailableOnFailure(() =>
      Promise.all([this.storage.banned(address, user), this.storage.banned(address)]),
    );
    const ms = Math.max(pair, alone);
    if (ms > 0) throw this.throttled(req, Math.ceil(ms / 1000));
  }

  /** Counts a failed login of `user` from the request's address; answers the seconds of the ban it started (0: none). */
  async failed(req: Request, user: string): Promise<number> {
    const limits = this.limits;
    if (!limits) return 0;
    const address = this.clientAddress(req);
    const windowMs = limits.windowSeconds * 1000;
    const banMs = limits.banSeconds * 1000;
    const [pair, alone] = await this.unavailableOnFailure(() =>
      Promise.all([
        this.storage.failed(address, user, { max: limits.maxFailures, windowMs, banMs }),
        this.storage.failed(address, undefined, { max: limits.maxFailuresPerAddress, windowMs, banMs }),
      ]),
    );
    return Math.ceil(Math.max(pair, alone) / 1000);
  }

  /** A successful login: the user's failures at this address are forgotten (the address's count stays). */
  async succeeded(req: Request, user: string): Promise<void> {
    if (!this.limits) return;
    const address = this.clientAddress(req);
    await this.unavailableOnFailure(() => this.storage.succeeded(address, user));
  }

  /** The bans that run, the one ending last first. */
  bans(): Promise<LoginBan[]> {
    return this.unavailableOnFailure(() => this.storage.bans());
  }

  /** Lifts every ban of `subject`, a user id or a client address; answers the bans lifted. */
  liftBans(subject: string): Promise<LoginBan[]> {
    if (typeof subject !== 'string' || subject.length === 0) throw new TypeError('liftBans: subject must be a user id or an address');
    return this.unavailableOnFailure(() => this.storage.liftBans(subject));
  }

  /** The client address: `req.ip`, which follows `trust proxy` (Fastify: `trustProxy`). Override to take it from elsewhere. */
  protected clientAddress(req: Request): string {
    return req.ip ?? req.socket?.remoteAddress ?? 'unknown';
  }

  /** What a banned login gets: `Retry-After` on the response, and the exception to throw. Override to answer otherwise. */
  protected throttled(req: Request, retryAfterSeconds: number): HttpException {
    const res = this.http?.seam.responseOf(req);
    if (res) this.http!.seam.setHeader(res, 'Retry-After', String(retryAfterSeconds));
    return new LoginThrottledException(retryAfterSeconds);
  }

  private async unavailableOnFailure<T>(call: () => Promise<T>): Promise<T> {
    try {
      return await call();
    } catch {
      throw serviceUnavailable();
    }
  }
}

import { CanActivate, ExecutionContext, ForbiddenException, HttpException, Inject, Injectable } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import type { Request } from 'express';
import { SHARED_SESSION_CONFIG, SKIP_CSRF_CHECK_METADATA } from './shared-session.constants';
import type { SharedSessionConfig } from './shared-session.options';
import { serializedOrigin } from './serialized-origin';
import { NO_METRICS, SessionMetrics } from './shared-session.metrics';

export { serializedOrigin };

/** Methods a browser may send cross-site without consequence: they must not change state. */
const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

/** `Sec-Fetch-Site` values a browser sends for a request its own site (or the user, typing a URL) started. */
const OWN_SITE = new Set(['same-origin', 'none']);

/** `Sec-Fetch-Site` values named in a refusal; anything else a client writes is not echoed. */
const FOREIGN_SITE = new Set(['cross-site', 'same-site']);

function header(req: Request, name: string): string | undefined {
  const value = req.headers[name];
  return typeof value === 'string' ? value : undefined;
}

function firstForwarded(req: Request, name: string): string | undefined {
  return header(req, name)?.split(',')[0].trim() || undefined;
}

/**
 * Refuses requests that another site made a browser send: an unsafe method
 * (anything but GET, HEAD, OPTIONS) whose `Sec-Fetch-Site` says another site
 * started it or, from a browser that does not send `Sec-Fetch-Site`, whose
 * `Origin` is neither this site's nor a trusted one. A request with neither
 * header is not a browser's cross-site request (browsers send `Origin` on
 * every cross-origin unsafe request) and is let through: curl, another server.
 *
 * Registered for every route by SharedSessionModule; `@SkipCsrfCheck()`
 * exempts a route, `csrf: { enabled: false }` all of them. It judges where a
 * request comes from, not whether it has a session, so a login form is
 * covered as well (login CSRF).
 */
@Injectable()
export class CrossSiteRequestGuard implements CanActivate {
  private readonly trustedOrigins: ReadonlySet<string>;

  constructor(
    protected readonly reflector: Reflector,
    @Inject(SHARED_SESSION_CONFIG) protected readonly config: SharedSessionConfig,
    private readonly metrics: SessionMetrics = NO_METRICS,
  ) {
    this.trustedOrigins = new Set(config.csrf.trustedOrigins);
  }

  canActivate(context: ExecutionContext): boolean {
    if (!this.config.csrf.enabled || context.getType() !== 'http') return true;
    // Safe methods first: most requests are GETs, and they need no metadata lookup.
    if (SAFE_METHODS.has(context.switchToHttp().getRequest<Request>().method)) return true;
    const skip = this.reflector.getAllAndOverride<boolean | undefined>(SKIP_CSRF_CHECK_METADATA, [
      context.getHandler(),
      context.getClass(),
    ]);
    if (skip) return true;
    const req = context.switchToHttp().getRequest<Request>();
    const refusal = this.refusal(req);
    if (refusal) {
      this.metrics.crossSiteRefusal();
      throw this.forbidden(req, refusal);
    }
    return true;
  }

  /** Why the request is refused, or undefined when it may go on. */
  protected refusal(req: Request): string | undefined {
    if (SAFE_METHODS.has(req.method)) return undefined;
    const originHeader = header(req, 'origin');
    const origin = originHeader === undefined ? undefined : serializedOrigin(originHeader);
    if (origin !== undefined && this.trustedOrigins.has(origin)) return undefined;
    const site = header(req, 'sec-fetch-site');
    if (site !== undefined) {
      if (OWN_SITE.has(site)) return undefined;
      return `Sec-Fetch-Site: ${FOREIGN_SITE.has(site) ? site : 'not this site'}`;
    }
    if (originHeader === undefined) return undefined;
    if (origin !== undefined && origin === this.ownOrigin(req)) return undefined;
    return 'Origin: not this site';
  }

  /**
   * This site's origin as the browser saw it: the request's scheme and Host,
   * or X-Forwarded-Proto and X-Forwarded-Host when the proxy is trusted (the
   * `proxy` option, else Express's `trust proxy`).
   */
  protected ownOrigin(req: Request): string | undefined {
    const proxy = this.config.proxy;
    const direct = (req.socket as { encrypted?: boolean }).encrypted ? 'https' : 'http';
    const scheme = proxy === undefined ? req.protocol : (proxy && firstForwarded(req, 'x-forwarded-proto')) || direct;
    const host = proxy === undefined ? req.host : (proxy && firstForwarded(req, 'x-forwarded-host')) || header(req, 'host');
    return host ? serializedOrigin(`${scheme}://${host}`) : undefined;
  }

  protected forbidden(req: Request, refusal: string): HttpException {
    return new ForbiddenException(`Cross-site request refused: a ${req.method} that another site sent (${refusal}).`);
  }
}

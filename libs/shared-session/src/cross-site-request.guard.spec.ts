import { ExecutionContext, ForbiddenException } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import type { Request } from 'express';
import { CrossSiteRequestGuard, serializedOrigin } from './cross-site-request.guard';
import { resolveSharedSessionOptions, SharedSessionModuleOptions } from './shared-session.options';
import { SkipCsrfCheck } from './skip-csrf-check.decorator';

class Target {
  open() {}

  @SkipCsrfCheck()
  webhook() {}
}
@SkipCsrfCheck()
class SkippedController {
  any() {}
}

const OWN = 'http://app.example:8080';

interface Sent {
  method?: string;
  headers?: Record<string, string>;
  /** Express's view of the request (its `trust proxy` applied). */
  protocol?: string;
  host?: string;
  encrypted?: boolean;
}

function requestOf({ method = 'POST', headers = {}, protocol = 'http', host = 'app.example:8080', encrypted = false }: Sent): Request {
  const lower = Object.fromEntries(Object.entries(headers).map(([k, v]) => [k.toLowerCase(), v]));
  return { method, headers: { host: 'app.example:8080', ...lower }, protocol, host, socket: { encrypted } } as unknown as Request;
}

function context(req: Request, handler: () => void = Target.prototype.open, cls: object = Target): ExecutionContext {
  return {
    getType: () => 'http',
    getHandler: () => handler,
    getClass: () => cls,
    switchToHttp: () => ({ getRequest: () => req }),
  } as unknown as ExecutionContext;
}

function guardWith(options: Partial<SharedSessionModuleOptions> = {}): CrossSiteRequestGuard {
  return new CrossSiteRequestGuard(new Reflector(), resolveSharedSessionOptions({ secret: 's', ...options }));
}

describe('CrossSiteRequestGuard', () => {
  const guard = guardWith();
  const allows = (sent: Sent, g = guard) => g.canActivate(context(requestOf(sent)));
  const refusal = (sent: Sent, g = guard): string => {
    try {
      g.canActivate(context(requestOf(sent)));
    } catch (error) {
      expect(error).toBeInstanceOf(ForbiddenException);
      return (error as ForbiddenException).message;
    }
    throw new Error('allowed');
  };

  it.each(['GET', 'HEAD', 'OPTIONS'])('lets %s through from anywhere: a safe method changes nothing', (method) => {
    expect(allows({ method, headers: { 'Sec-Fetch-Site': 'cross-site', Origin: 'https://evil.example' } })).toBe(true);
  });

  describe.each(['POST', 'PUT', 'PATCH', 'DELETE', 'PROPFIND'])('an unsafe %s', (method) => {
    it.each(['same-origin', 'none'])('with Sec-Fetch-Site: %s is allowed (this site, or the user typing the address)', (site) => {
      expect(allows({ method, headers: { 'Sec-Fetch-Site': site } })).toBe(true);
    });

    it.each(['cross-site', 'same-site'])('with Sec-Fetch-Site: %s is refused, whatever its Origin says', (site) => {
      expect(refusal({ method, headers: { 'Sec-Fetch-Site': site, Origin: OWN } })).toBe(
        `Cross-site request refused: a ${method} that another site sent (Sec-Fetch-Site: ${site}).`,
      );
    });

    it('with an unknown Sec-Fetch-Site is refused, without echoing it', () => {
      expect(refusal({ method, headers: { 'Sec-Fetch-Site': '<script>' } })).toMatch(/\(Sec-Fetch-Site: not this site\)\.$/);
    });

    it('without Sec-Fetch-Site (an older browser): allowed when Origin is this site, refused otherwise', () => {
      expect(allows({ method, headers: { Origin: OWN } })).toBe(true);
      expect(allows({ method, headers: { Origin: 'http://APP.example:8080' } })).toBe(true);
      for (const origin of [
        'https://evil.example',
        'http://app.example:8081',
        'https://app.example:8080',
        'http://sub.app.example:8080',
        'null',
        'not a url',
      ]) {
        expect(refusal({ method, headers: { Origin: origin } })).toMatch(/\(Origin: not this site\)\.$/);
      }
    });

    it('with neither header (curl, another server: not a browser sent by another site) is allowed', () => {
      expect(allows({ method })).toBe(true);
    });
  });

  it('compares with the origin Express sees: X-Forwarded-* count only when Express trusts the proxy', () => {
    // Express did not trust the proxy: protocol and host are the socket's and the Host header's.
    const forwarded = { 'X-Forwarded-Proto': 'https', 'X-Forwarded-Host': 'public.example' };
    expect(refusal({ headers: { Origin: 'https://public.example', ...forwarded } })).toMatch(/Origin/);
    // Express trusts it: req.protocol and req.host come from X-Forwarded-*.
    expect(allows({ headers: { Origin: 'https://public.example', ...forwarded }, protocol: 'https', host: 'public.example' })).toBe(true);
  });

  it('with the proxy option, trusts X-Forwarded-* (true) or never (false), whatever Express says', () => {
    const sent = {
      headers: { Origin: 'https://public.example', 'X-Forwarded-Proto': 'https, http', 'X-Forwarded-Host': 'public.example, inner' },
      protocol: 'http',
      host: 'app.example:8080',
    };
    expect(allows(sent, guardWith({ proxy: true }))).toBe(true);
    expect(refusal({ ...sent, protocol: 'https', host: 'public.example' }, guardWith({ proxy: false }))).toMatch(/Origin/);
    expect(allows({ headers: { Origin: 'https://app.example:8080' }, encrypted: true }, guardWith({ proxy: false }))).toBe(true);
    expect(allows({ headers: { Origin: OWN } }, guardWith({ proxy: true }))).toBe(true);
  });

  it('allows a trusted origin, even where Sec-Fetch-Site says another site sent it', () => {
    const trusting = guardWith({ csrf: { trustedOrigins: ['https://admin.example'] } });
    expect(allows({ headers: { Origin: 'https://admin.example', 'Sec-Fetch-Site': 'same-site' } }, trusting)).toBe(true);
    expect(allows({ headers: { Origin: 'https://admin.example' } }, trusting)).toBe(true);
    expect(refusal({ headers: { Origin: 'https://evil.example', 'Sec-Fetch-Site': 'cross-site' } }, trusting)).toMatch(/cross-site/);
  });

  it('@SkipCsrfCheck() on a method or a class exempts it; csrf.enabled false turns the check off', () => {
    const crossSite = requestOf({ headers: { 'Sec-Fetch-Site': 'cross-site', Origin: 'https://evil.example' } });
    expect(guard.canActivate(context(crossSite, Target.prototype.webhook))).toBe(true);
    expect(guard.canActivate(context(crossSite, SkippedController.prototype.any, SkippedController))).toBe(true);
    expect(() => guard.canActivate(context(crossSite))).toThrow(ForbiddenException);
    expect(guardWith({ csrf: { enabled: false } }).canActivate(context(crossSite))).toBe(true);
  });
});

describe('serializedOrigin', () => {
  it('writes an origin as browsers do, and refuses what is not an http(s) origin', () => {
    expect(serializedOrigin('HTTPS://Example.COM:443')).toBe('https://example.com');
    expect(serializedOrigin('http://127.0.0.1:8089')).toBe('http://127.0.0.1:8089');
    for (const value of ['null', '', 'example.com', 'file:///etc/passwd', 'data:text/html,x', 'javascript:alert(1)']) {
      expect(serializedOrigin(value)).toBeUndefined();
    }
  });
});

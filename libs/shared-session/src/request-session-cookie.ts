import type { LoggerService } from '@nestjs/common';
import { readSessionCookie } from './session-cookie-header';
import type { SessionCookieSigner, VerifiedSessionCookie } from './session-cookie-signer';
import { markCarriedSessionId, markSessionCookieConflict, SharedSessionRequest } from './session-request';

/**
 * The session a request's Cookie header carries, on either adapter: our
 * cookie found by PROTOCOL.md section 10's reading (never a framework's
 * cookie parser), then its signature checked (sections 1 and 2). null: no
 * session (none sent, two different ones sent, malformed or forged). The
 * request is marked with what was found: two different cookies (the
 * refusal reason `two_sessions`), or the verified session id it carried.
 */
export function requestSessionCookie(
  req: Pick<SharedSessionRequest, 'headers'>,
  cookieName: string,
  signer: SessionCookieSigner,
  logger: Pick<LoggerService, 'warn'>,
): VerifiedSessionCookie | null {
  const reading = readSessionCookie(req.headers.cookie, cookieName);
  if (reading.found === 'refused' && reading.conflict) {
    markSessionCookieConflict(req as SharedSessionRequest);
    // Never the values: one could be the victim's session.
    logger.warn(
      `a request sent two different ${cookieName} cookies (one may have been set by a sibling domain: cookie tossing); ` +
        'treated as no session until the user logs out or clears the site cookies',
    );
  }
  const verified = reading.found === 'value' ? signer.verify(reading.value) : null;
  if (verified) markCarriedSessionId(req as SharedSessionRequest, verified.sid);
  return verified;
}

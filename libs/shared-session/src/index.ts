export { SharedSessionModule } from './shared-session.module';
export { SharedSessionOptionsError } from './shared-session.options';
export type {
  SharedSessionModuleOptions,
  SharedSessionCookieOptions,
  SharedSessionCsrfOptions,
  SharedSessionConfig,
  SharedSessionLoginMetadataOptions,
  SharedSessionRevocationOptions,
} from './shared-session.options';
export { GROUPS_METADATA, SHARED_SESSION_CONFIG, SHARED_SESSION_REDIS } from './shared-session.constants';
export { InjectSharedSessionRedis } from './inject-shared-session-redis.decorator';
export { Groups } from './groups.decorator';
export type { GroupRequirement } from './groups.decorator';
export { GroupGuard } from './group.guard';
export { SkipCsrfCheck } from './skip-csrf-check.decorator';
export { AllowUnavailableSession } from './allow-unavailable-session.decorator';
export { SharedSessionService } from './shared-session.service';
export type { OwnSession, SessionLogin, SessionLoginOptions } from './shared-session.service';
export type { SessionState, SharedSessionObject, SharedSessionRequest, SharedSessionResponse } from './session-request';
export type { HttpAdapterName } from './http-adapter-name';
export type { FastifySharedSession } from './fastify-session';
export { SessionCookieSigner } from './session-cookie-signer';
export type { SessionCookieSignerOptions, VerifiedSessionCookie } from './session-cookie-signer';
export { FlaskRedisSessionStore } from './flask-redis-session.store';
export type { FlaskRedisSessionStoreOptions, SessionKeys } from './flask-redis-session.store';
export type { UserSession, ControlOptions, ControlResult } from './session-control';
export type { RevocationConfirmation } from './revocation-acknowledgements';
export { LoginThrottle, LoginThrottledException } from './login-throttle';
export { LOGIN_THROTTLE_STORAGE, RedisLoginThrottleStorage } from './login-throttle.storage';
export type { LoginBan, LoginThrottleStorage, ThrottleLimit } from './login-throttle.storage';
export type { LoginThrottleOptions } from './login-throttle.options';
export { SHARED_SESSION_EVENTS, sessionEventId } from './shared-session.events';
export type {
  SharedSessionEvent,
  SharedSessionEventListener,
  SharedSessionEventName,
  SharedSessionEventsOptions,
  SharedSessionRefusalReason,
} from './shared-session.events';

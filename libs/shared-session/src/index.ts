export { SharedSessionModule } from './shared-session.module';
export { SHARED_SESSION_OPTIONS } from './shared-session.module-definition';
export { SharedSessionOptionsError, resolveSharedSessionOptions } from './shared-session.options';
export type { SharedSessionModuleOptions, SharedSessionCookieOptions, SharedSessionConfig } from './shared-session.options';
export {
  DEFAULT_COOKIE_NAME,
  DEFAULT_KEY_PREFIX,
  DEFAULT_SALT,
  DEFAULT_TTL_SECONDS,
  GROUPS_METADATA,
  SHARED_SESSION_CONFIG,
  SHARED_SESSION_REDIS,
} from './shared-session.constants';
export { SessionCookieSigner } from './session-cookie-signer';
export type { SessionCookieSignerOptions, VerifiedSessionCookie } from './session-cookie-signer';
export { FlaskRedisSessionStore } from './flask-redis-session.store';
export type { FlaskRedisSessionStoreOptions, SessionKeys } from './flask-redis-session.store';
export { SharedSessionMiddleware } from './shared-session.middleware';
export { SharedSessionService } from './shared-session.service';
export type { SessionLogin } from './shared-session.service';
export { Groups } from './groups.decorator';
export type { GroupRequirement } from './groups.decorator';
export { GroupGuard } from './group.guard';
export { REDIS_CLIENT_DEFAULTS } from './redis-client';

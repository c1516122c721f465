export { SharedSessionModule } from './shared-session.module';
export { SHARED_SESSION_OPTIONS, OPTIONS_TYPE, ASYNC_OPTIONS_TYPE } from './shared-session.module-definition';
export {
  SharedSessionModuleOptions,
  SharedSessionCookieOptions,
  SharedSessionConfig,
  SharedSessionOptionsError,
  resolveSharedSessionOptions,
} from './shared-session.options';
export {
  DEFAULT_COOKIE_NAME,
  DEFAULT_KEY_PREFIX,
  DEFAULT_SALT,
  DEFAULT_TTL_SECONDS,
  GROUPS_METADATA,
  SHARED_SESSION_CONFIG,
  SHARED_SESSION_REDIS,
} from './shared-session.constants';
export { SessionCookieSigner, SessionCookieSignerOptions, VerifiedSessionCookie } from './session-cookie-signer';
export { FlaskRedisSessionStore, FlaskRedisSessionStoreOptions, SessionKeys } from './flask-redis-session.store';
export { SharedSessionMiddleware } from './shared-session.middleware';
export { SharedSessionService, SessionLogin } from './shared-session.service';
export { Groups, GroupRequirement } from './groups.decorator';
export { GroupGuard } from './group.guard';
export { REDIS_CLIENT_DEFAULTS } from './redis-client';

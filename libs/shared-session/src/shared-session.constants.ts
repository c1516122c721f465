/** Defaults of PROTOCOL.md v1 (those of flask-resty-shared-session). */
export const DEFAULT_SALT = 'flask-resty-session';
export const DEFAULT_KEY_PREFIX = 'resty_shared_session';
export const DEFAULT_COOKIE_NAME = 'session';
/** Flask's PERMANENT_SESSION_LIFETIME: 31 days. */
export const DEFAULT_TTL_SECONDS = 31 * 24 * 60 * 60;
/** The default idle timeout (PROTOCOL.md section 12): Flask's lifetime, sliding as before. No absolute timeout by default. */
export const DEFAULT_IDLE_TIMEOUT_SECONDS = DEFAULT_TTL_SECONDS;
export const DEFAULT_REDIS_URL = 'redis://127.0.0.1:6379';
/** Cookie attributes (PROTOCOL.md section 2: `Path=/; HttpOnly; SameSite=Lax`), and a cookie that outlives the browser session. */
export const DEFAULT_COOKIE_OPTIONS = { path: '/', secure: false, httpOnly: true, sameSite: 'lax', persistent: true } as const;

/** Characters allowed in a key prefix here and in resty.shared_session ({} for Redis Cluster hash tags). */
export const KEY_PREFIX_PATTERN = /^[A-Za-z0-9_.:{}-]{1,64}$/;
/** An RFC 6265 cookie name (a token). */
export const COOKIE_NAME_PATTERN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}$/;

/** Injection token of the ioredis client the module uses. */
export const SHARED_SESSION_REDIS = Symbol('SHARED_SESSION_REDIS');
/** Injection token of the validated, defaulted configuration. */
export const SHARED_SESSION_CONFIG = Symbol('SHARED_SESSION_CONFIG');
/** Metadata key written by @Groups(). */
export const GROUPS_METADATA = 'resty-shared-session:groups';
/** Metadata key written by @SkipCsrfCheck(). */
export const SKIP_CSRF_CHECK_METADATA = 'resty-shared-session:skip-csrf-check';
/** Metadata key written by @AllowUnavailableSession(). */
export const ALLOW_UNAVAILABLE_SESSION_METADATA = 'resty-shared-session:allow-unavailable-session';
/** A secret shorter than this (in bytes) is accepted with a warning: one cookie lets anyone try guesses offline. */
export const MIN_SECRET_BYTES = 32;
/** PROTOCOL.md section 13.1: the session field that names its user, by default. */
export const DEFAULT_USER_ID_FIELD = 'username';

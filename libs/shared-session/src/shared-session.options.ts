import {
  COOKIE_NAME_PATTERN,
  DEFAULT_COOKIE_NAME,
  DEFAULT_COOKIE_OPTIONS,
  DEFAULT_KEY_PREFIX,
  DEFAULT_REDIS_URL,
  DEFAULT_SALT,
  DEFAULT_IDLE_TIMEOUT_SECONDS,
  DEFAULT_USER_ID_FIELD,
  KEY_PREFIX_PATTERN,
  MIN_SECRET_BYTES,
} from './shared-session.constants';
import { serializedOrigin } from './serialized-origin';
import { defaultRefreshIntervalSeconds } from './session-lifetime';
import { isKeyLayout, layoutOptionProblem } from './layouts/create-session-layout';
import type { KeyLayout } from './layouts/session-layout';
import { isRedisClient, namesRedisCluster } from './redis-client';
import type { SharedSessionClusterOption, SharedSessionRedisOption } from './redis-connection';
import { LoginThrottleConfig, LoginThrottleOptions, resolveLoginThrottleOptions } from './login-throttle.options';
import { resolveEventsOptions, SharedSessionEventsConfig, SharedSessionEventsOptions } from './shared-session.events';
import { resolveRevocationOptions, SharedSessionRevocationConfig, SharedSessionRevocationOptions } from './revocation.options';
import { resolveMetricsOption, SharedSessionMetricsConfig, SharedSessionMetricsOptions } from './shared-session.metrics';

export type { SharedSessionMetricsOptions, SharedSessionMetricsRegistry } from './shared-session.metrics';
export type { SharedSessionRevocationOptions } from './revocation.options';

export interface SharedSessionCookieOptions {
  /** Cookie `Path`. Default `/`. */
  path?: string;
  /** Cookie `Domain`. Default: none (host-only cookie). */
  domain?: string;
  /** Cookie `Secure`. Default false. Behind a TLS-terminating proxy, set `proxy: true` too. */
  secure?: boolean;
  /** Cookie `HttpOnly`. Default true. */
  httpOnly?: boolean;
  /** Cookie `SameSite`. Default `'lax'`. */
  sameSite?: 'lax' | 'strict' | 'none' | boolean;
  /**
   * true: the cookie carries `Expires` (Flask's permanent session): the
   * session's absolute deadline when it has one, else 400 days renewed when
   * the session is extended (PROTOCOL.md section 12); false: a browser-session
   * cookie. Default true.
   */
  persistent?: boolean;
}

export interface SharedSessionCsrfOptions {
  /**
   * Refuse unsafe requests (POST, PUT, PATCH, DELETE...) that another site
   * made a browser send, judged by `Sec-Fetch-Site` and `Origin`. Default true.
   */
  enabled?: boolean;
  /**
   * Origins besides the request's own that may send unsafe requests, such as
   * `https://admin.example.com` (a sibling subdomain is another origin). Default `[]`.
   */
  trustedOrigins?: string[];
}

export interface SharedSessionModuleOptions {
  /** The current signing secret (Flask's `SECRET_KEY`). Required. */
  secret: string;
  /** Older secrets still accepted; a cookie signed with one is re-signed with `secret`. Default `[]`. */
  secretFallbacks?: string[];
  /** Signer salt (Flask's `session_cookie_salt`). Default `flask-resty-session`. */
  salt?: string;
  /** Redis key prefix (Flask's `SESSION_KEY_PREFIX`). Default `resty_shared_session`. */
  keyPrefix?: string;
  /** Cookie name (Flask's `SESSION_COOKIE_NAME`). Default `session`. */
  cookieName?: string;
  /**
   * Idle timeout in seconds: a session unused this long ends. The TTL of the
   * three Redis keys, set back to this when the app or nginx sees the
   * session used (never past its absolute deadline). Default 2678400 (31 days).
   */
  idleTimeoutSeconds?: number;
  /**
   * Absolute timeout in seconds: a session ends this long after login,
   * whatever happens (the deadline in its timed session id, PROTOCOL.md
   * section 11). At least `idleTimeoutSeconds`. Default: none.
   */
  absoluteTimeoutSeconds?: number;
  /** @deprecated The old name of `idleTimeoutSeconds` (give one or the other). */
  ttlSeconds?: number;
  /**
   * An ioredis instance (left open on shutdown), a redis:// URL, or ioredis
   * options (including Sentinel: `{ sentinels, name }`). Default `redis://127.0.0.1:6379`.
   */
  redis?: SharedSessionRedisOption;
  /**
   * The Redis key names: `v1` (PROTOCOL.md section 3, what Flask and the 2017
   * Lua module read), `cluster` (section 14: the session id as a hash tag,
   * so that a session's keys share one slot; needed on Redis Cluster), or
   * `compact` (section 15: one string key per session, its signature then its
   * JSON; about 0.7 times connect-redis' memory per session; on one Redis or
   * a Redis Cluster; neither Flask nor the 2017 Lua module read it).
   * Default `v1`.
   */
  keyLayout?: KeyLayout;
  /** Cookie attributes. */
  cookie?: SharedSessionCookieOptions;
  /**
   * Refresh the TTL of the three keys when a request reads a session
   * (express-session's store `touch`), so that an active session lives on.
   * Default true.
   */
  touch?: boolean;
  /**
   * With `touch`, refresh a session once it has not been extended for this
   * many seconds (PROTOCOL.md section 12: when its expiry is closer than
   * the idle timeout minus this; a write on every read would double the
   * Redis round trips), and at least once per half its idle timeout. 0: on
   * every request. Default: follows `idleTimeoutSeconds`, `min(idle / 2,
   * max(60, idle / 10))` (30 minutes: 3 minutes; 31 days: about 3 days; 2
   * s: 1 s).
   */
  touchAfterSeconds?: number;
  /**
   * Trust `X-Forwarded-Proto` for secure cookies (express-session `proxy`),
   * and `X-Forwarded-Proto`/`X-Forwarded-Host` for the request's own origin
   * in the cross-site check. Default: Express's `trust proxy`.
   */
  proxy?: boolean;
  /** Protection against cross-site requests (CSRF, login CSRF included). */
  csrf?: SharedSessionCsrfOptions;
  /** The session field that names its user, for the per-user index (PROTOCOL.md section 13.1). Default `username`. */
  userIdField?: string;
  /** A login beyond this many live sessions of one user ends the user's oldest. Default: no limit. */
  maxSessionsPerUser?: number;
  /** What `login` records for `listSessions` (each off by default: personal data, see the README). */
  loginMetadata?: SharedSessionLoginMetadataOptions;
  /** Synchronous revocation: for `logout` and `setGroups`, and by default for the control methods (`revokeUser`, `setUserGroups`...). */
  revocation?: SharedSessionRevocationOptions;
  /** Login throttling for LoginThrottle: true (the defaults) or its limits. Default: off. */
  loginThrottle?: boolean | LoginThrottleOptions;
  /** Structured events (PROTOCOL.md section 16): logged, and given to a listener. Default: neither. */
  events?: SharedSessionEventsOptions;
  /**
   * Prometheus metrics through prom-client (an optional peer dependency,
   * loaded only when this is on): `true` registers them in prom-client's
   * default registry, `{ registry }` in that one. Default: off.
   */
  metrics?: boolean | SharedSessionMetricsOptions;
}

export interface SharedSessionLoginMetadataOptions {
  /** Record the client's IP address at login (`req.ip`: mind `trust proxy`). Default false. */
  ip?: boolean;
  /** Record the client's User-Agent at login (at most 256 characters). Default false. */
  userAgent?: boolean;
}

export type { KeyLayout };

export type { SharedSessionClusterOption, SharedSessionRedisOption };

/** The options after validation, every default filled in. */
export interface SharedSessionConfig {
  secret: string;
  secretFallbacks: string[];
  salt: string;
  keyPrefix: string;
  cookieName: string;
  idleTimeoutSeconds: number;
  /** null: no absolute timeout. */
  absoluteTimeoutSeconds: number | null;
  /** @deprecated Equal to `idleTimeoutSeconds`. */
  ttlSeconds: number;
  redis: SharedSessionRedisOption;
  keyLayout: KeyLayout;
  cookie: Required<Omit<SharedSessionCookieOptions, 'domain'>> & { domain?: string };
  touch: boolean;
  touchAfterSeconds: number;
  proxy?: boolean;
  csrf: Required<SharedSessionCsrfOptions>;
  userIdField: string;
  /** 0: no limit. */
  maxSessionsPerUser: number;
  loginMetadata: Required<SharedSessionLoginMetadataOptions>;
  revocation: SharedSessionRevocationConfig;
  /** null: off. */
  loginThrottle: LoginThrottleConfig | null;
  events: SharedSessionEventsConfig;
  metrics: SharedSessionMetricsConfig;
}

export class SharedSessionOptionsError extends Error {
  constructor(option: string, problem: string) {
    super(`SharedSessionModule: option "${option}" ${problem}`);
    this.name = 'SharedSessionOptionsError';
  }
}

const SAME_SITE = ['lax', 'strict', 'none', true, false];

function nonEmptyString(option: string, value: unknown): string {
  if (typeof value !== 'string' || value.length === 0) {
    throw new SharedSessionOptionsError(option, 'must be a non-empty string');
  }
  return value;
}

function optionalBoolean(option: string, value: unknown, fallback: boolean): boolean {
  if (value === undefined) return fallback;
  if (typeof value !== 'boolean') throw new SharedSessionOptionsError(option, 'must be true or false');
  return value;
}

/** Validates the options and fills in the defaults; throws naming the first bad option. */
export function resolveSharedSessionOptions(options: SharedSessionModuleOptions): SharedSessionConfig {
  if (!options || typeof options !== 'object') {
    throw new SharedSessionOptionsError('options', 'must be an object with at least { secret }');
  }
  const known = new Set([
    'secret',
    'secretFallbacks',
    'salt',
    'keyPrefix',
    'cookieName',
    'ttlSeconds',
    'idleTimeoutSeconds',
    'absoluteTimeoutSeconds',
    'redis',
    'keyLayout',
    'cookie',
    'touch',
    'touchAfterSeconds',
    'proxy',
    'csrf',
    'userIdField',
    'maxSessionsPerUser',
    'loginMetadata',
    'revocation',
    'loginThrottle',
    'events',
    'metrics',
  ]);
  for (const key of Object.keys(options)) {
    if (!known.has(key)) throw new SharedSessionOptionsError(key, 'is not a known option');
  }

  const secret = nonEmptyString('secret', options.secret);
  const fallbacks = options.secretFallbacks ?? [];
  if (!Array.isArray(fallbacks)) throw new SharedSessionOptionsError('secretFallbacks', 'must be an array of strings');
  fallbacks.forEach((s, i) => nonEmptyString(`secretFallbacks[${i}]`, s));

  const salt = nonEmptyString('salt', options.salt ?? DEFAULT_SALT);
  const keyPrefix = options.keyPrefix ?? DEFAULT_KEY_PREFIX;
  if (typeof keyPrefix !== 'string' || !KEY_PREFIX_PATTERN.test(keyPrefix)) {
    throw new SharedSessionOptionsError('keyPrefix', 'must be 1 to 64 characters of A-Z a-z 0-9 _ . : { } -');
  }
  const cookieName = options.cookieName ?? DEFAULT_COOKIE_NAME;
  if (typeof cookieName !== 'string' || !COOKIE_NAME_PATTERN.test(cookieName)) {
    throw new SharedSessionOptionsError('cookieName', "must be a cookie name token (letters, digits, !#$%&'*+.^_`|~-)");
  }
  if (options.ttlSeconds !== undefined && options.idleTimeoutSeconds !== undefined) {
    throw new SharedSessionOptionsError('ttlSeconds', 'is the old name of "idleTimeoutSeconds": give one of them, not both');
  }
  const idleName = options.ttlSeconds !== undefined ? 'ttlSeconds' : 'idleTimeoutSeconds';
  const { idleTimeoutSeconds, absoluteTimeoutSeconds } = checkTimeouts(
    { idleTimeoutSeconds: options.idleTimeoutSeconds ?? options.ttlSeconds, absoluteTimeoutSeconds: options.absoluteTimeoutSeconds },
    { idle: DEFAULT_IDLE_TIMEOUT_SECONDS, absolute: null },
    idleName,
  );
  const ttlSeconds = idleTimeoutSeconds;

  // Unset: follows the idle timeout (PROTOCOL.md section 12's default interval), so a short idle timeout alone is valid.
  const touchAfterSeconds = options.touchAfterSeconds ?? defaultRefreshIntervalSeconds(ttlSeconds);
  if (
    options.touchAfterSeconds !== undefined &&
    (typeof touchAfterSeconds !== 'number' ||
      !Number.isInteger(touchAfterSeconds) ||
      touchAfterSeconds < 0 ||
      touchAfterSeconds >= ttlSeconds)
  ) {
    throw new SharedSessionOptionsError('touchAfterSeconds', `must be a whole number of seconds from 0 to less than ${idleName}`);
  }

  const redis = options.redis ?? DEFAULT_REDIS_URL;
  if (typeof redis === 'string') {
    if (!/^rediss?:\/\//.test(redis)) throw new SharedSessionOptionsError('redis', 'URL must start with redis:// or rediss://');
  } else if (!redis || typeof redis !== 'object') {
    throw new SharedSessionOptionsError('redis', 'must be an ioredis instance, a redis:// URL or ioredis options');
  }
  const keyLayout = options.keyLayout ?? 'v1';
  if (!isKeyLayout(keyLayout)) throw new SharedSessionOptionsError('keyLayout', "must be 'v1', 'cluster' or 'compact'");
  const cluster = namesRedisCluster(redis);
  const nodes = cluster && !isRedisClient(redis) ? (redis as SharedSessionClusterOption).cluster : undefined;
  if (cluster && !isRedisClient(redis) && (!Array.isArray(nodes) || nodes.length === 0)) {
    throw new SharedSessionOptionsError('redis.cluster', 'must be a non-empty array of startup nodes ({ host, port } or "host:port")');
  }
  const problem = layoutOptionProblem(keyLayout, { cluster, prefix: keyPrefix });
  if (problem?.option === 'layout') {
    throw new SharedSessionOptionsError('keyLayout', `must be 'cluster' or 'compact' with Redis Cluster (${problem.reason})`);
  }
  if (problem) {
    throw new SharedSessionOptionsError('keyPrefix', `must hold no { or } with keyLayout '${keyLayout}' (${problem.reason})`);
  }

  const cookie = options.cookie ?? {};
  if (typeof cookie !== 'object') throw new SharedSessionOptionsError('cookie', 'must be an object');
  const path = nonEmptyString('cookie.path', cookie.path ?? DEFAULT_COOKIE_OPTIONS.path);
  if (!path.startsWith('/')) throw new SharedSessionOptionsError('cookie.path', 'must start with /');
  if (cookie.domain !== undefined) nonEmptyString('cookie.domain', cookie.domain);
  const secure = optionalBoolean('cookie.secure', cookie.secure, DEFAULT_COOKIE_OPTIONS.secure);
  const sameSite = cookie.sameSite ?? DEFAULT_COOKIE_OPTIONS.sameSite;
  if (!SAME_SITE.includes(sameSite)) {
    throw new SharedSessionOptionsError('cookie.sameSite', "must be 'lax', 'strict', 'none', true or false");
  }
  if (sameSite === 'none' && secure === false) {
    throw new SharedSessionOptionsError('cookie.sameSite', "'none' needs cookie.secure true (browsers drop it otherwise)");
  }

  // Browsers store a __Host- cookie only with Secure, Path=/ and no Domain (a sibling domain cannot set one), a __Secure- one only with Secure.
  if (cookieName.startsWith('__Host-') && (!secure || path !== '/' || cookie.domain !== undefined)) {
    throw new SharedSessionOptionsError('cookieName', "'__Host-' names need cookie.secure true, cookie.path '/' and no cookie.domain");
  }
  if (cookieName.startsWith('__Secure-') && !secure) {
    throw new SharedSessionOptionsError('cookieName', "'__Secure-' names need cookie.secure true");
  }

  const csrf = options.csrf ?? {};
  if (!csrf || typeof csrf !== 'object') throw new SharedSessionOptionsError('csrf', 'must be an object');
  for (const key of Object.keys(csrf)) {
    if (key !== 'enabled' && key !== 'trustedOrigins') throw new SharedSessionOptionsError(`csrf.${key}`, 'is not a known option');
  }
  const trustedOrigins = csrf.trustedOrigins ?? [];
  if (!Array.isArray(trustedOrigins)) throw new SharedSessionOptionsError('csrf.trustedOrigins', 'must be an array of origins');
  const origins = trustedOrigins.map((origin, i) => {
    const serialized = typeof origin === 'string' ? serializedOrigin(origin) : undefined;
    // An origin is scheme, host and port: a path, a query or a wildcard would suggest a check that is not made.
    if (serialized === undefined || serialized.includes('*') || serialized !== origin.replace(/\/$/, '').toLowerCase()) {
      throw new SharedSessionOptionsError(
        `csrf.trustedOrigins[${i}]`,
        'must be an origin such as https://admin.example.com (scheme, host, optional port; nothing else)',
      );
    }
    return serialized;
  });

  const userIdField = nonEmptyString('userIdField', options.userIdField ?? DEFAULT_USER_ID_FIELD);
  const maxSessionsPerUser = options.maxSessionsPerUser ?? 0;
  if (typeof maxSessionsPerUser !== 'number' || !Number.isInteger(maxSessionsPerUser) || maxSessionsPerUser < 0) {
    throw new SharedSessionOptionsError('maxSessionsPerUser', 'must be a positive whole number (0: no limit)');
  }
  const loginMetadata = knownKeys('loginMetadata', options.loginMetadata ?? {}, ['ip', 'userAgent']);
  return {
    secret,
    secretFallbacks: [...fallbacks],
    salt,
    keyPrefix,
    cookieName,
    idleTimeoutSeconds,
    absoluteTimeoutSeconds,
    ttlSeconds,
    redis,
    keyLayout,
    cookie: {
      path,
      domain: cookie.domain,
      secure,
      httpOnly: optionalBoolean('cookie.httpOnly', cookie.httpOnly, DEFAULT_COOKIE_OPTIONS.httpOnly),
      sameSite,
      persistent: optionalBoolean('cookie.persistent', cookie.persistent, DEFAULT_COOKIE_OPTIONS.persistent),
    },
    touch: optionalBoolean('touch', options.touch, true),
    touchAfterSeconds,
    proxy: options.proxy === undefined ? undefined : optionalBoolean('proxy', options.proxy, false),
    csrf: { enabled: optionalBoolean('csrf.enabled', csrf.enabled, true), trustedOrigins: origins },
    userIdField,
    maxSessionsPerUser,
    loginMetadata: {
      ip: optionalBoolean('loginMetadata.ip', loginMetadata.ip, false),
      userAgent: optionalBoolean('loginMetadata.userAgent', loginMetadata.userAgent, false),
    },
    revocation: resolveRevocationOptions(
      knownKeys('revocation', options.revocation ?? {}, ['wait', 'timeoutMs', 'barrierIntervalMs']),
      optionalBoolean,
      (option, problem) => new SharedSessionOptionsError(option, problem),
    ),
    loginThrottle: resolveLoginThrottleOptions(options.loginThrottle, (option, problem) => new SharedSessionOptionsError(option, problem)),
    events: resolveEventsOptions(options.events, (option, problem) => new SharedSessionOptionsError(option, problem)),
    metrics: resolveMetricsOption(options.metrics, (option, problem) => new SharedSessionOptionsError(option, problem)),
  };
}

/** An object option whose keys are all known. */
function knownKeys<T extends object>(option: string, value: T, keys: string[]): T {
  if (!value || typeof value !== 'object' || Array.isArray(value)) throw new SharedSessionOptionsError(option, 'must be an object');
  for (const key of Object.keys(value)) {
    if (!keys.includes(key)) throw new SharedSessionOptionsError(`${option}.${key}`, 'is not a known option');
  }
  return value;
}

/** The two timeouts of a session (PROTOCOL.md section 12), in seconds. */
export interface SessionTimeouts {
  idleTimeoutSeconds: number;
  /** null: no absolute timeout. */
  absoluteTimeoutSeconds: number | null;
}

/**
 * Checks timeouts given as options (the module's, or one login's) and fills
 * in `defaults`; throws a SharedSessionOptionsError that names the option.
 * Whole seconds, positive; the absolute one at least the idle one (a session
 * could never be idle that long).
 */
export function checkTimeouts(
  given: { idleTimeoutSeconds?: unknown; absoluteTimeoutSeconds?: unknown },
  defaults: { idle: number; absolute: number | null },
  idleName = 'idleTimeoutSeconds',
): SessionTimeouts {
  const seconds = (name: string, value: unknown): number => {
    if (typeof value !== 'number' || !Number.isInteger(value) || value <= 0) {
      throw new SharedSessionOptionsError(name, 'must be a positive whole number of seconds');
    }
    return value;
  };
  const idle = given.idleTimeoutSeconds === undefined ? defaults.idle : seconds(idleName, given.idleTimeoutSeconds);
  const absolute =
    given.absoluteTimeoutSeconds === undefined ? defaults.absolute : seconds('absoluteTimeoutSeconds', given.absoluteTimeoutSeconds);
  if (absolute !== null && absolute < idle) {
    throw new SharedSessionOptionsError('absoluteTimeoutSeconds', `must be at least ${idleName} (${absolute} < ${idle})`);
  }
  return { idleTimeoutSeconds: idle, absoluteTimeoutSeconds: absolute };
}

/**
 * Start-up warnings about secrets shorter than MIN_SECRET_BYTES: one cookie
 * is enough to try guesses of a short secret offline. They are accepted all
 * the same, because an existing Flask deployment's SECRET_KEY has to keep
 * working. The warnings name the option and the length, never the secret.
 */
export function weakSecretWarnings(config: Pick<SharedSessionConfig, 'secret' | 'secretFallbacks'>): string[] {
  const secrets = [['secret', config.secret], ...config.secretFallbacks.map((s, i) => [`secretFallbacks[${i}]`, s])];
  return secrets
    .map(([option, secret]) => [option, Buffer.byteLength(secret, 'utf8')] as const)
    .filter(([, bytes]) => bytes < MIN_SECRET_BYTES)
    .map(
      ([option, bytes]) =>
        `option "${option}" is ${bytes} bytes long: a secret shorter than ${MIN_SECRET_BYTES} bytes can be guessed offline from one cookie; use ${MIN_SECRET_BYTES} random bytes or more (it is accepted, so that an existing Flask SECRET_KEY keeps working)`,
    );
}

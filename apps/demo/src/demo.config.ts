import type { HttpAdapterName, SessionLoginOptions, SharedSessionModuleOptions } from 'nest-resty-shared-session';

/** The demo's settings, from the environment, each with a default. */
export interface DemoConfig {
  /** The Nest HTTP platform (DEMO_ADAPTER: `express`, the default, or `fastify`): the same routes and pages on either. */
  adapter: HttpAdapterName;
  host: string;
  port: number;
  /**
   * The operations port (APP_ADMIN_PORT, default 9464): /metrics and
   * /health only, and those only there (apps/demo/src/operations-server.ts).
   */
  adminPort: number;
  /** Where the admin page's status panel asks Prometheus (PROMETHEUS_URL, http or https); unset: no figures. */
  prometheusUrl?: string;
  cacheSeconds: number;
  /**
   * Express's `trust proxy`, Fastify's `trustProxy` (TRUST_PROXY; default
   * `loopback`: nginx on the same host): `req.ip`, the address that login
   * throttling and the session list see, is then the client's, from nginx's
   * X-Forwarded-For.
   */
  trustProxy: string;
  session: SharedSessionModuleOptions;
  /** The timeouts of a "keep me signed in" login (PROTOCOL.md section 12). */
  rememberMe: Required<SessionLoginOptions>;
}

/** "Keep me signed in", by default: 30 days unused, a year at most. */
const REMEMBER_ME_IDLE_SECONDS = 30 * 24 * 3600;
const REMEMBER_ME_ABSOLUTE_SECONDS = 365 * 24 * 3600;

/** The secret the README publishes: anyone can forge cookies with it, so only a development run may use it. */
export const DEV_SECRET = 'demo-secret-change-me';

/** `DEMO_DEV_MODE=1`: a development run (`npm run demo`, the tests), where the published secret is allowed. */
export function isDevMode(env: NodeJS.ProcessEnv = process.env): boolean {
  return env.DEMO_DEV_MODE === '1';
}

/** The secret to sign with; outside development mode, a missing or published secret stops the demo. */
function sessionSecret(env: NodeJS.ProcessEnv): string {
  const dev = isDevMode(env);
  const secret = env.SESSION_SECRET || (dev ? DEV_SECRET : undefined);
  if (secret === undefined) {
    throw new Error(
      'SESSION_SECRET is not set: set it to 32 or more random bytes (e.g. `openssl rand -base64 32`), or DEMO_DEV_MODE=1 for a development run with the published demo secret',
    );
  }
  if (!dev && (secret === DEV_SECRET || list(env.SESSION_SECRET_FALLBACKS).includes(DEV_SECRET))) {
    throw new Error(
      `SESSION_SECRET or SESSION_SECRET_FALLBACKS is the published demo secret "${DEV_SECRET}", with which anyone can forge a session cookie: set a secret of your own, or DEMO_DEV_MODE=1 for a development run`,
    );
  }
  return secret;
}

function list(value: string | undefined): string[] {
  return (value ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
}

/** A whole number of seconds from the environment, or undefined (the library's default) when unset. */
function seconds(name: string, value: string | undefined): number | undefined {
  return value === undefined || value === '' ? undefined : whole(name, value, 0);
}

function whole(name: string, value: string | undefined, fallback: number): number {
  if (value === undefined || value === '') return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new Error(`${name} must be a whole number, not "${value}"`);
  return n;
}

/**
 * Where sessions live: REDIS_URL (one Redis), or REDIS_CLUSTER_NODES
 * (`host:port,host:port`: a Redis Cluster), and in which layout
 * (SESSION_KEY_LAYOUT: `v1`; `cluster`, the default on a cluster:
 * PROTOCOL.md section 14; or `compact`, one key per session: section 15).
 */
function redisSettings(env: NodeJS.ProcessEnv): Pick<SharedSessionModuleOptions, 'redis' | 'keyLayout'> {
  const nodes = list(env.REDIS_CLUSTER_NODES);
  if (nodes.length > 0 && env.REDIS_URL) throw new Error('set REDIS_URL (one Redis) or REDIS_CLUSTER_NODES (a Redis Cluster), not both');
  const layout = env.SESSION_KEY_LAYOUT || (nodes.length > 0 ? 'cluster' : 'v1');
  if (layout !== 'v1' && layout !== 'cluster' && layout !== 'compact')
    throw new Error(`SESSION_KEY_LAYOUT must be v1, cluster or compact, not "${layout}"`);
  // The library checks the rest (a cluster with the v1 layout, a prefix with braces), naming its option.
  return { redis: nodes.length > 0 ? { cluster: nodes } : env.REDIS_URL || undefined, keyLayout: layout };
}

function adapter(value: string | undefined): HttpAdapterName {
  if (value === undefined || value === '' || value === 'express') return 'express';
  if (value === 'fastify') return 'fastify';
  throw new Error(`DEMO_ADAPTER must be express or fastify, not "${value}"`);
}

/**
 * TRUST_PROXY as Express takes it: true/false, a number of hops, or
 * addresses and names (`loopback`, `10.0.0.0/8`...). Fastify takes the same
 * but a number of hops, which it reads as "trust nobody": refused there at
 * start-up (demoConfig), rather than every client seen as nginx.
 */
export function trustProxyValue(text: string): boolean | number | string {
  if (text === 'true' || text === 'false') return text === 'true';
  return /^\d+$/.test(text) ? Number(text) : text;
}

function prometheusUrl(value: string | undefined): string | undefined {
  if (!value) return undefined;
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new Error(`PROMETHEUS_URL must be an http(s) URL, not "${value}"`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new Error(`PROMETHEUS_URL must be an http(s) URL, not "${value}"`);
  return url.toString().replace(/\/$/, '');
}

export function demoConfig(env: NodeJS.ProcessEnv = process.env): DemoConfig {
  // Short timeouts for trying them out (e.g. idle 2, absolute 5); the library checks them at start-up.
  const idle = seconds('SESSION_IDLE_TIMEOUT_SECONDS', env.SESSION_IDLE_TIMEOUT_SECONDS);
  const absolute = seconds('SESSION_ABSOLUTE_TIMEOUT_SECONDS', env.SESSION_ABSOLUTE_TIMEOUT_SECONDS);
  const rememberIdle = whole('REMEMBER_ME_IDLE_TIMEOUT_SECONDS', env.REMEMBER_ME_IDLE_TIMEOUT_SECONDS, REMEMBER_ME_IDLE_SECONDS);
  const rememberAbsolute = whole(
    'REMEMBER_ME_ABSOLUTE_TIMEOUT_SECONDS',
    env.REMEMBER_ME_ABSOLUTE_TIMEOUT_SECONDS,
    REMEMBER_ME_ABSOLUTE_SECONDS,
  );
  // Checked here, at start-up, rather than at the first "keep me signed in" login.
  if (rememberIdle <= 0) throw new Error('REMEMBER_ME_IDLE_TIMEOUT_SECONDS must be a positive whole number');
  if (rememberAbsolute < rememberIdle) {
    throw new Error('REMEMBER_ME_ABSOLUTE_TIMEOUT_SECONDS must be at least REMEMBER_ME_IDLE_TIMEOUT_SECONDS');
  }
  const port = whole('APP_PORT', env.APP_PORT, 5017);
  const adminPort = whole('APP_ADMIN_PORT', env.APP_ADMIN_PORT, 9464);
  if (adminPort === port)
    throw new Error(`APP_ADMIN_PORT must differ from APP_PORT (${port}): the operations port is never the public one`);
  const platform = adapter(env.DEMO_ADAPTER);
  const trustProxy = env.TRUST_PROXY || 'loopback';
  if (platform === 'fastify' && typeof trustProxyValue(trustProxy) === 'number')
    throw new Error(
      `TRUST_PROXY must be true, false or addresses on Fastify (DEMO_ADAPTER=fastify), not a number of hops ("${trustProxy}"): Fastify trusts no proxy by a count`,
    );
  return {
    adapter: platform,
    host: env.APP_HOST || '127.0.0.1',
    port,
    adminPort,
    prometheusUrl: prometheusUrl(env.PROMETHEUS_URL),
    cacheSeconds: whole('CACHE_SECONDS', env.CACHE_SECONDS, 60),
    trustProxy,
    session: {
      secret: sessionSecret(env),
      secretFallbacks: list(env.SESSION_SECRET_FALLBACKS),
      salt: env.SESSION_SALT || undefined,
      keyPrefix: env.SESSION_KEY_PREFIX || undefined,
      cookieName: env.SESSION_COOKIE_NAME || undefined,
      // Behind TLS: a Secure cookie, and X-Forwarded-Proto from the proxy trusted (a __Host- name needs it).
      ...(env.SESSION_COOKIE_SECURE === '1' ? { cookie: { secure: true }, proxy: true } : {}),
      ...redisSettings(env),
      idleTimeoutSeconds: idle,
      absoluteTimeoutSeconds: absolute,
      // The app refreshes a session at most once a minute, and at least once per half its idle timeout.
      touchAfterSeconds: idle === undefined ? undefined : Math.min(60, Math.floor(idle / 2)),
      // Shown on the admin page: the address and browser each session logged in from.
      loginMetadata: { ip: true, userAgent: true },
      // A logout or a group change answers once nginx has applied it (or after 500 ms, with a warning):
      // the browser's next request, whichever nginx worker takes it, sees the change.
      // The periodic barrier (REVOCATION_BARRIER_MS, 0: off) feeds the revocation lag metric between revocations.
      revocation: { wait: true, barrierIntervalMs: whole('REVOCATION_BARRIER_MS', env.REVOCATION_BARRIER_MS, 5000) },
      // Failed logins counted in Redis (LOGIN_THROTTLE=off to turn it off): the library's defaults,
      // after Authelia's: 3 failures of one user from one address in 2 minutes ban that pair for
      // 5 minutes; 20 from one address, whatever the users, ban the address.
      loginThrottle: env.LOGIN_THROTTLE !== 'off',
      // Every login, logout and control operation as one JSON line in the app's log (PROTOCOL.md section 16).
      events: { log: true },
    },
    rememberMe: { idleTimeoutSeconds: rememberIdle, absoluteTimeoutSeconds: rememberAbsolute },
  };
}

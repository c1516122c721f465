import type { SharedSessionModuleOptions } from 'nest-resty-shared-session';

/** The demo's settings, from the environment, each with a default. */
export interface DemoConfig {
  host: string;
  port: number;
  cacheSeconds: number;
  session: SharedSessionModuleOptions;
}

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

function whole(name: string, value: string | undefined, fallback: number): number {
  if (value === undefined || value === '') return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new Error(`${name} must be a whole number, not "${value}"`);
  return n;
}

export function demoConfig(env: NodeJS.ProcessEnv = process.env): DemoConfig {
  return {
    host: env.APP_HOST || '127.0.0.1',
    port: whole('APP_PORT', env.APP_PORT, 5017),
    cacheSeconds: whole('CACHE_SECONDS', env.CACHE_SECONDS, 60),
    session: {
      secret: sessionSecret(env),
      secretFallbacks: list(env.SESSION_SECRET_FALLBACKS),
      salt: env.SESSION_SALT || undefined,
      keyPrefix: env.SESSION_KEY_PREFIX || undefined,
      cookieName: env.SESSION_COOKIE_NAME || undefined,
      redis: env.REDIS_URL || undefined,
      // Shown on the admin page: the address and browser each session logged in from.
      loginMetadata: { ip: true, userAgent: true },
    },
  };
}

import type { SharedSessionModuleOptions } from 'nest-resty-shared-session';

/** The demo's settings, from the environment, each with a default. */
export interface DemoConfig {
  host: string;
  port: number;
  cacheSeconds: number;
  session: SharedSessionModuleOptions;
}

export const DEV_SECRET = 'demo-secret-change-me';

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
      secret: env.SESSION_SECRET || DEV_SECRET,
      secretFallbacks: list(env.SESSION_SECRET_FALLBACKS),
      salt: env.SESSION_SALT || undefined,
      keyPrefix: env.SESSION_KEY_PREFIX || undefined,
      cookieName: env.SESSION_COOKIE_NAME || undefined,
      redis: env.REDIS_URL || undefined,
    },
  };
}

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  COOKIE_NAME_PATTERN,
  DEFAULT_COOKIE_NAME,
  DEFAULT_KEY_PREFIX,
  DEFAULT_SALT,
  KEY_PREFIX_PATTERN,
} from '../libs/shared-session/src/shared-session.constants';
import { REPO_ROOT } from './nginx-platform';

export { debianLuaPackagePath, debianPlatformLines, REPO_ROOT } from './nginx-platform';

/** The one nginx configuration template of the demo: local stack, tests and docker-compose. */
export const NGINX_TEMPLATE = join(REPO_ROOT, 'resty', 'conf', 'nginx.conf.template');

/** The values the template asks for. */
export interface NginxConfValues {
  /** Main-context lines of the platform: load_module on Debian, nothing on OpenResty. */
  PLATFORM: string;
  WORKERS: string;
  RUN_DIR: string;
  /** Where and from which level: `<file> warn`. */
  ERROR_LOG: string;
  ACCESS_LOG: string;
  LUA_PACKAGE_PATH: string;
  NGINX_LISTEN: string;
  APP_UPSTREAM: string;
  REDIS_HOST: string;
  REDIS_PORT: string;
  REDIS_DB: string;
  SESSION_SALT: string;
  SESSION_COOKIE_NAME: string;
  SESSION_KEY_PREFIX: string;
  /** Seconds between two refreshes of one session by nginx, at most (PROTOCOL.md section 12). */
  SESSION_REFRESH_INTERVAL: string;
}

/** Fills in the template; a placeholder without a value, or a value nothing asks for, is an error. */
export function renderNginxConf(values: NginxConfValues, template = readFileSync(NGINX_TEMPLATE, 'utf8')): string {
  const used = new Set<string>();
  const text = template.replace(/\{\{([A-Z_]+)\}\}/g, (_m, name: string) => {
    const value = (values as unknown as Record<string, string | undefined>)[name];
    if (value === undefined) throw new Error(`nginx template: no value for {{${name}}}`);
    used.add(name);
    return value;
  });
  const unused = Object.keys(values).filter((k) => !used.has(k));
  if (unused.length > 0) throw new Error(`nginx template: values nothing uses: ${unused.join(', ')}`);
  return text;
}

/** Session settings nginx shares with the app, from the same variables the app reads. */
export function sessionValuesFromEnv(
  env: NodeJS.ProcessEnv,
): Pick<NginxConfValues, 'SESSION_SALT' | 'SESSION_COOKIE_NAME' | 'SESSION_KEY_PREFIX' | 'SESSION_REFRESH_INTERVAL'> {
  const checked = (name: string, fallback: string, pattern: RegExp) => {
    const value = env[name] || fallback;
    // Values land inside Lua strings in nginx.conf: allow only what the protocol allows.
    if (!pattern.test(value)) throw new Error(`${name} has characters nginx.conf cannot carry: "${value}"`);
    return value;
  };
  return {
    SESSION_SALT: checked('SESSION_SALT', DEFAULT_SALT, /^[^"'\\\n\r{}$;]{1,128}$/),
    SESSION_COOKIE_NAME: checked('SESSION_COOKIE_NAME', DEFAULT_COOKIE_NAME, COOKIE_NAME_PATTERN),
    SESSION_KEY_PREFIX: checked('SESSION_KEY_PREFIX', DEFAULT_KEY_PREFIX, KEY_PREFIX_PATTERN),
    // A number for Lua; configure() checks its range and names the option.
    SESSION_REFRESH_INTERVAL: checked('SESSION_REFRESH_INTERVAL', '60', /^\d{1,6}(\.\d{1,3})?$/),
  };
}

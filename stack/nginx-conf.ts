import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

/** The repository's root folder: the nearest folder above this file's (source or compiled) with the nginx template. */
export const REPO_ROOT = findRepoRoot(__dirname);

function findRepoRoot(from: string): string {
  for (let dir = from; ; dir = dirname(dir)) {
    if (existsSync(join(dir, 'resty', 'conf', 'nginx.conf.template'))) return dir;
    if (dirname(dir) === dir) throw new Error(`no repository above ${from}`);
  }
}

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
}

/** Debian's nginx: its dynamic modules (ndk before lua), by absolute path. */
export function debianPlatformLines(modulesDir = '/usr/lib/nginx/modules'): string {
  const lines = ['ndk_http_module.so', 'ngx_http_lua_module.so', 'ngx_http_headers_more_filter_module.so'].map(
    (m) => `load_module ${join(modulesDir, m)};`,
  );
  // As root, nginx would run its workers as "nobody", who cannot read the
  // 0700 run folder: keep them as the user who runs nginx.
  if (process.getuid?.() === 0) lines.push('user root;');
  return lines.join('\n');
}

/**
 * Lua search path on Debian: the rock from this repository, and the libraries
 * unpacked into .vendor/. The trailing ";;" keeps the default path, where
 * resty.core lives.
 */
export function debianLuaPackagePath(): string {
  return [join(REPO_ROOT, 'resty', 'lib', '?.lua'), join(REPO_ROOT, '.vendor', 'usr', 'share', 'lua', '5.1', '?.lua'), ';'].join(';');
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
export function sessionValuesFromEnv(env: NodeJS.ProcessEnv): Pick<NginxConfValues, 'SESSION_SALT' | 'SESSION_COOKIE_NAME' | 'SESSION_KEY_PREFIX'> {
  const checked = (name: string, fallback: string, pattern: RegExp) => {
    const value = env[name] || fallback;
    // Values land inside Lua strings in nginx.conf: allow only what the protocol allows.
    if (!pattern.test(value)) throw new Error(`${name} has characters nginx.conf cannot carry: "${value}"`);
    return value;
  };
  return {
    SESSION_SALT: checked('SESSION_SALT', 'flask-resty-session', /^[^"'\\\n\r{}$;]{1,128}$/),
    SESSION_COOKIE_NAME: checked('SESSION_COOKIE_NAME', 'session', /^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}$/),
    SESSION_KEY_PREFIX: checked('SESSION_KEY_PREFIX', 'resty_shared_session', /^[A-Za-z0-9_.:{}-]{1,64}$/),
  };
}

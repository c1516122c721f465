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
  /** The operations server's `listen` (/metrics, /health): never the public one. */
  ADMIN_LISTEN: string;
  APP_UPSTREAM: string;
  /** `resolver <address>;` when Redis is named rather than addressed (Docker's DNS), else empty. */
  RESOLVER: string;
  /** Where Redis is, as the rock's `redis` fields: `redisLua()`. */
  REDIS: string;
  SESSION_SALT: string;
  SESSION_COOKIE_NAME: string;
  SESSION_KEY_PREFIX: string;
  /** `v1` or `cluster` (PROTOCOL.md section 14), as the app's `keyLayout`. */
  SESSION_KEY_LAYOUT: string;
  /** nginx's `refresh.interval` (PROTOCOL.md section 12): seconds, or `nil` for the default that follows the idle timeout. */
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

/** One Redis, or the startup nodes of a Redis Cluster. */
export type RedisTarget = { host: string; port: number; db?: number } | { cluster: { host: string; port: number }[] };

/** A host name or address that can stand inside a Lua string in nginx.conf. */
const HOST = /^[A-Za-z0-9.:_-]{1,253}$/;

/** The rock's `redis` fields for `target` (resty/README.md): `host = …, port = …, db = …` or `cluster = { nodes = { … } }`. */
export function redisLua(target: RedisTarget): string {
  const node = (n: { host: string; port: number }) => {
    if (!HOST.test(n.host) || !Number.isInteger(n.port) || n.port < 1 || n.port > 65535) {
      throw new Error(`not a Redis host and port nginx.conf can carry: ${n.host}:${n.port}`);
    }
    return `host = "${n.host}", port = ${n.port}`;
  };
  if ('cluster' in target) {
    if (target.cluster.length === 0) throw new Error('a Redis Cluster needs at least one node');
    return `cluster = { nodes = { ${target.cluster.map((n) => `{ ${node(n)} }`).join(', ')} } }`;
  }
  return `${node(target)}, db = ${target.db ?? 0}`;
}

/** `host:port,host:port` (REDIS_CLUSTER_NODES, as the demo app reads it): a Redis Cluster's startup nodes. */
export function clusterNodesFromList(list: string): { host: string; port: number }[] {
  return list
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
    .map((item) => {
      const colon = item.lastIndexOf(':');
      const port = Number(item.slice(colon + 1));
      if (colon <= 0 || !Number.isInteger(port)) throw new Error(`REDIS_CLUSTER_NODES: not host:port: ${item}`);
      return { host: item.slice(0, colon), port };
    });
}

/** Session settings nginx shares with the app, from the same variables the app reads. */
export function sessionValuesFromEnv(
  env: NodeJS.ProcessEnv,
): Pick<
  NginxConfValues,
  'SESSION_SALT' | 'SESSION_COOKIE_NAME' | 'SESSION_KEY_PREFIX' | 'SESSION_KEY_LAYOUT' | 'SESSION_REFRESH_INTERVAL'
> {
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
    // The app's default: the cluster layout with a Redis Cluster, else v1.
    SESSION_KEY_LAYOUT: checked('SESSION_KEY_LAYOUT', env.REDIS_CLUSTER_NODES ? 'cluster' : 'v1', /^(v1|cluster|compact)$/),
    // A number for Lua; configure() checks its range and names the option.
    // Unset: Lua's nil, nginx's default, which follows each session's idle timeout (PROTOCOL.md section 12).
    SESSION_REFRESH_INTERVAL: env.SESSION_REFRESH_INTERVAL ? checked('SESSION_REFRESH_INTERVAL', '', /^\d{1,6}(\.\d{1,3})?$/) : 'nil',
  };
}

/**
 * nginx.conf for OpenResty in docker-compose (stack/render-nginx-conf.ts),
 * from the variables the demo app reads too: REDIS_CLUSTER_NODES
 * (`host:port,...`: a Redis Cluster) or REDIS_URL, SESSION_KEY_LAYOUT and the
 * other session settings; NGINX_RESOLVER (Docker's DNS, 127.0.0.11) for Redis
 * by service name.
 */
export function dockerNginxConf(env: NodeJS.ProcessEnv): string {
  const redis = new URL(env.REDIS_URL || 'redis://redis:6379');
  return renderNginxConf({
    PLATFORM: '',
    WORKERS: env.NGINX_WORKERS || 'auto',
    RUN_DIR: env.NGINX_RUN_DIR || '/var/run/resty',
    ERROR_LOG: '/dev/stderr warn',
    ACCESS_LOG: '/dev/stdout',
    LUA_PACKAGE_PATH: env.LUA_PACKAGE_PATH || '/opt/resty-shared-session/lib/?.lua;;',
    NGINX_LISTEN: env.NGINX_LISTEN || '8089',
    // Inside the compose network only: docker-compose.yml does not publish it.
    ADMIN_LISTEN: env.NGINX_ADMIN_LISTEN || '9145',
    APP_UPSTREAM: env.APP_UPSTREAM || 'demo:5017',
    RESOLVER: env.NGINX_RESOLVER ? `resolver ${checkedResolver(env.NGINX_RESOLVER)} ipv6=off valid=10s;` : '',
    REDIS: redisLua(
      env.REDIS_CLUSTER_NODES
        ? { cluster: clusterNodesFromList(env.REDIS_CLUSTER_NODES) }
        : { host: redis.hostname, port: Number(redis.port || 6379), db: Number(redis.pathname.replace('/', '') || 0) },
    ),
    ...sessionValuesFromEnv(env),
  });
}

function checkedResolver(address: string): string {
  if (!/^[A-Za-z0-9.:_-]{1,253}$/.test(address)) throw new Error(`NGINX_RESOLVER is not an address nginx.conf can carry: "${address}"`);
  return address;
}

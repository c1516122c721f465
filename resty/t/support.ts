/**
 * What the nginx/Lua specs share: cookies signed by the protocol test kit's
 * reference signer (never by the library: these specs import nothing of
 * libs/, see imports.spec.ts), the redis-server + client + nginx each block
 * starts and stops, and the checks on nginx's error log. Sessions are written
 * and destroyed with the test kit's writeSession and destroySession.
 */
import Redis, { RedisOptions } from 'ioredis';
import { cookieValue, PROTOCOL_DEFAULTS, signature as protocolSignature } from '../../protocol/testkit';
import { HttpResponse, request } from '../../stack/http-client';
import { NginxConfContext, NginxServer, NginxStartOptions } from '../../stack/nginx-server';
import { RedisServer } from '../../stack/redis-server';

export const SECRET = 'current-secret';
export const SALT = PROTOCOL_DEFAULTS.salt;

export const SID = '3f1d7c9e-8a4b-4c2d-9e6f-0a1b2c3d4e5f';
export const OTHER_SID = '00000000-0000-4000-8000-000000000000';

/** The 27-character signature of `sid` made with `secret` (and SALT): what a writer stores as `<prefix>:signature:<sid>`. */
export function signature(sid: string, secret = SECRET): string {
  return protocolSignature(sid, secret, SALT);
}

/** The cookie value `<sid>.<signature>`. */
export function cookieFor(sid: string, secret = SECRET): string {
  return cookieValue(sid, secret, SALT);
}

/** A Cookie header carrying the `session` cookie. */
export function sessionCookie(sid: string, secret = SECRET): string {
  return `session=${cookieFor(sid, secret)}`;
}

/** How many times Redis ran `command` (INFO commandstats). */
export async function commandCalls(client: Redis, command: string): Promise<number> {
  const stats = await client.info('commandstats');
  return Number(new RegExp(`cmdstat_${command}:calls=(\\d+)`).exec(stats)?.[1] ?? 0);
}

/** GET `path` from nginx, with `cookie` as the Cookie header when given. */
export function get(nginx: NginxServer, path: string, cookie?: string): Promise<HttpResponse> {
  return request(nginx.port, path, { headers: cookie === undefined ? {} : { Cookie: cookie } });
}

/** Fails on a crashed worker, a Lua runtime error, and (with `alerts`) any [alert] line. */
export function assertNoCrash(log: string, options: { alerts?: boolean } = {}): void {
  expect(log).not.toMatch(/signal/); // a worker that crashed: "exited on signal N"
  expect(log).not.toMatch(options.alerts ? /runtime error|entry thread aborted|\[alert\]/ : /runtime error|entry thread aborted/);
}

/** A client of `redis` that fails a command rather than queue it for long. */
export function redisClient(redis: RedisServer, options: RedisOptions = {}): Redis {
  return new Redis(redis.port, '127.0.0.1', { maxRetriesPerRequest: 1, ...options });
}

/** A redis-server and a client of it. */
export async function startRedis(): Promise<{ redis: RedisServer; client: Redis }> {
  const redis = await RedisServer.start();
  return { redis, client: redisClient(redis) };
}

/** A redis-server, a client of it, and an nginx started with `nginxOptions(redis.port)`; on failure, stops what started. */
export async function startRedisAndNginx(
  nginxOptions: (redisPort: number) => NginxStartOptions,
): Promise<{ redis: RedisServer; client: Redis; nginx: NginxServer }> {
  const { redis, client } = await startRedis();
  try {
    return { redis, client, nginx: await NginxServer.start(nginxOptions(redis.port)) };
  } catch (error) {
    await stopRedisAndNginx({ redis, client });
    throw error;
  }
}

/** Stops nginx, the client and redis-server (whichever exist), then runs `checkLog` on nginx's error log. */
export async function stopRedisAndNginx(
  stack: { redis?: RedisServer; client?: Redis; nginx?: NginxServer },
  checkLog?: (log: string) => void,
): Promise<void> {
  const log = stack.nginx?.errorLog() ?? '';
  await stack.nginx?.dispose();
  stack.client?.disconnect();
  await stack.redis?.dispose();
  checkLog?.(log);
}

/** Lua that opens a Redis connection the 0.1.x way, on OpenResty or Debian. */
export function luaConnectRedis(port: number, varName = 'red'): string {
  return `
      local ok_lib, redis = pcall(require, "resty.redis")
      if not ok_lib then redis = require "nginx.redis" end
      local ${varName} = redis:new()
      ${varName}:set_timeout(1000)
      assert(${varName}:connect("127.0.0.1", ${port}))`;
}

/** The parts in which the nginx.conf of one spec differs from another's; `nginxConf` writes the rest. */
export interface TestNginxConf {
  /** The options of configure() (a Lua table constructor, `{ ... }`) run in init_by_lua; null: configure() is not called. */
  configure: string | null;
  /** The size of `lua_shared_dict decisions` (the decision cache's dict); omitted: no dict. */
  dict?: string;
  /** init_worker_by_lua starts the revocation subscriber. */
  subscriber?: boolean;
  /** Lua run first in init_worker_by_lua (before the subscriber starts). */
  initWorker?: string | ((ctx: NginxConfContext) => string);
  /** More http-context lines (buffers, lua_ssl_*), before init_by_lua. */
  http?: string;
  /** `default_type text/plain;` in the server (the default); false: nginx's own. */
  plainText?: boolean;
  /** The server's locations (more than ACCESS_LOCATION when it is wanted: it is not added). */
  locations: string | ((ctx: NginxConfContext) => string);
}

/** The one-line form, as an operator writes it: 200 "allowed <group>" for a member of the group in the path. */
export const ACCESS_LOCATION = `
    location ~ ^/groups/(?<group_id>[^/]+)/ {
      access_by_lua_block { require("resty.shared_session").access(ngx.var.group_id) }
      content_by_lua_block { ngx.say("allowed ", ngx.var.group_id) }
    }`;

/** Test-only window into the dict: is the epoch (the subscriber's heartbeat) there? */
export const EPOCH_LOCATION = `
    location = /epoch {
      content_by_lua_block { ngx.say(ngx.shared.decisions:get("e") and "up" or "down") }
    }`;

/** The init_worker_by_lua block: the spec's own Lua, then the subscriber; none when neither is asked for. */
function initWorker(o: TestNginxConf, ctx: NginxConfContext): string {
  const own = typeof o.initWorker === 'function' ? o.initWorker(ctx) : (o.initWorker ?? '');
  const subscriber = o.subscriber ? 'require("resty.shared_session").start_subscriber()' : '';
  return own || subscriber ? `init_worker_by_lua_block {\n    ${own}\n    ${subscriber}\n  }` : '';
}

/** The nginx.conf of every resty/t spec: one worker's events, the platform's lines, configure(), one server. */
export function nginxConf(o: TestNginxConf): (ctx: NginxConfContext) => string {
  return (ctx) => `${ctx.preamble}
events { worker_connections 256; }
http {
  ${ctx.httpPreamble}
  ${o.http ?? ''}
  ${o.dict ? `lua_shared_dict decisions ${o.dict};` : ''}
  ${o.configure === null ? '' : `init_by_lua_block {\n    require("resty.shared_session").configure${o.configure}\n  }`}
  ${initWorker(o, ctx)}
  server {
    listen 127.0.0.1:${ctx.port};
    ${(o.plainText ?? true) ? 'default_type text/plain;' : ''}
${typeof o.locations === 'function' ? o.locations(ctx) : o.locations}
  }
}
`;
}

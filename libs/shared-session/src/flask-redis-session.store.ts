import { Logger } from '@nestjs/common';
import type { SessionData } from 'express-session';
import { Store } from 'express-session';
import type { SharedSessionRedis } from './redis-client';
import { SessionCookieSigner } from './session-cookie-signer';
import { sessionIdExpired } from './session-id';
import { cookieExpiry, IDLE_KEY, idleSecondsOf, keyTtlMs } from './session-lifetime';
import type { KeyLayout, SharedSessionCookieOptions } from './shared-session.options';
import {
  DEFAULT_COOKIE_OPTIONS,
  DEFAULT_IDLE_TIMEOUT_SECONDS,
  DEFAULT_KEY_PREFIX,
  DEFAULT_TOUCH_AFTER_SECONDS,
} from './shared-session.constants';

export interface FlaskRedisSessionStoreOptions {
  client: SharedSessionRedis;
  signer: SessionCookieSigner;
  keyPrefix?: string;
  /** PROTOCOL.md section 3's key names (`v1`, default) or section 14's (`cluster`). */
  keyLayout?: KeyLayout;
  /**
   * Idle timeout (seconds) of a session whose JSON holds none (`_idle`,
   * PROTOCOL.md section 12); written into each session it saves. Default 31 days.
   */
  idleTimeoutSeconds?: number;
  /** @deprecated The old name of `idleTimeoutSeconds`. */
  ttlSeconds?: number;
  /**
   * Refresh the three keys' TTL when express-session touches a session that a
   * request read, so that an active session lives on. Default true; false:
   * the store has no `touch`, and express-session never calls one.
   */
  touch?: boolean;
  /**
   * With `touch`: refresh a session at most once per this many seconds (default
   * 60, 0: always), and at least once per half of its idle timeout.
   */
  touchAfterSeconds?: number;
  /** Attributes of the cookie rebuilt on `get` (the data in Redis holds none). */
  cookie?: SharedSessionCookieOptions;
  logger?: Pick<Logger, 'error' | 'warn' | 'log'>;
}

type Callback<T = void> = (err?: unknown, value?: T) => void;

/**
 * The session's JSON and its remaining time to live (ms), read atomically;
 * when the data is missing, how many of its sibling keys are left over
 * (PROTOCOL.md section 9: a half-deleted session).
 */
const READ_SCRIPT = `
local data = redis.call('GET', KEYS[1])
if not data then return {false, -2, redis.call('EXISTS', KEYS[2], KEYS[3])} end
return {data, redis.call('PTTL', KEYS[1]), 0}`;

/**
 * PROTOCOL.md section 8: a write that a concurrent logout or group change
 * cannot undo. ARGV: mode, data JSON, signature, ttl, channel, sid, then the
 * groups (to write for "create" and "update-groups"; as read, for "update").
 *  - create: a new session id, written as section 3 says;
 *  - update / update-groups: only while the data key exists (never re-creates a
 *    session deleted after it was read);
 *  - update: leaves the groups set alone, and only when it still holds the
 *    groups this writer read; otherwise answers the stored groups, for the
 *    writer to adopt them and try again.
 */
const WRITE_SCRIPT = `
local mode, ttl = ARGV[1], ARGV[4]
if mode ~= 'create' and redis.call('EXISTS', KEYS[1]) == 0 then return 'gone' end
if mode == 'update' then
  local stored = redis.call('SMEMBERS', KEYS[3])
  local same = #stored == #ARGV - 6
  if same then
    local read = {}
    for i = 7, #ARGV do read[ARGV[i]] = true end
    for _, g in ipairs(stored) do
      if not read[g] then same = false; break end
    end
  end
  if not same then return stored end
end
redis.call('SET', KEYS[1], ARGV[2], 'EX', ttl)
redis.call('SET', KEYS[2], ARGV[3], 'EX', ttl)
if mode == 'update' then
  redis.call('EXPIRE', KEYS[3], ttl)
else
  redis.call('DEL', KEYS[3])
  if #ARGV > 6 then
    redis.call('SADD', KEYS[3], unpack(ARGV, 7))
    redis.call('EXPIRE', KEYS[3], ttl)
  end
end
redis.call('PUBLISH', ARGV[5], ARGV[6])
return 'ok'`;

/** How many times a write adopts groups changed under it before it gives up (each retry means another change landed). */
const WRITE_ATTEMPTS = 5;

/** The three keys of one session (PROTOCOL.md section 3). */
export interface SessionKeys {
  data: string;
  signature: string;
  groups: string;
}

/**
 * An express-session store that keeps each session in the layout of
 * PROTOCOL.md section 3, so that Flask (flask-resty-shared-session) and nginx
 * (resty.shared_session) read what it writes, and it reads what Flask writes.
 */
export class FlaskRedisSessionStore extends Store {
  private readonly client: SharedSessionRedis;
  private readonly keyLayout: KeyLayout;
  private readonly signer: SessionCookieSigner;
  private readonly keyPrefix: string;
  /** The idle timeout of sessions whose JSON holds none. */
  private readonly idleSeconds: number;
  private readonly touchAfterSeconds: number;
  /** sid → when its keys expire, as last read or refreshed: lets `touch` skip a write that changes nothing much. */
  private readonly expiries = new Map<string, number>();
  private readonly cookie: SharedSessionCookieOptions;
  private readonly logger: Pick<Logger, 'error' | 'warn' | 'log'>;
  /**
   * The groups each session object had when it was read from Redis (express-session
   * makes every loaded session through createSession). A session object not in
   * here is new (a fresh id): its first write is a plain section 3 write.
   */
  private readonly readGroups = new WeakMap<object, string[]>();
  private healthy = true;
  /**
   * express-session's optional store method, absent with `touch: false`:
   * express-session looks once, when it is created, whether the store has one.
   */
  declare touch?: (sid: string, session: SessionData, callback?: Callback) => void;

  constructor(options: FlaskRedisSessionStoreOptions) {
    super();
    this.client = options.client;
    this.signer = options.signer;
    this.keyPrefix = options.keyPrefix ?? DEFAULT_KEY_PREFIX;
    this.keyLayout = options.keyLayout ?? 'v1';
    this.idleSeconds = options.idleTimeoutSeconds ?? options.ttlSeconds ?? DEFAULT_IDLE_TIMEOUT_SECONDS;
    this.touchAfterSeconds = options.touchAfterSeconds ?? DEFAULT_TOUCH_AFTER_SECONDS;
    this.cookie = options.cookie ?? {};
    this.logger = options.logger ?? new Logger('SharedSession');
    if (options.touch !== false) this.touch = (sid, session, callback) => this.refreshExpiry(sid, session, callback);
    // ioredis reports every failed reconnection; say it once per fault, and say when it is over.
    this.client.on('error', (err: Error) => this.fault(err));
    this.client.on('ready', () => this.recovered());
    this.client.defineCommand('sharedSessionRead', { numberOfKeys: 3, lua: READ_SCRIPT });
    this.client.defineCommand('sharedSessionWrite', { numberOfKeys: 3, lua: WRITE_SCRIPT });
  }

  /**
   * False while the connection to Redis is down: sessions then answer 503 at
   * once instead of waiting for a timeout. ('wait' is a lazyConnect client that
   * connects on its first command.)
   */
  get available(): boolean {
    return this.client.status === 'ready' || this.client.status === 'wait';
  }

  /**
   * PROTOCOL.md section 7: every write and every delete publishes the session
   * id here, inside the same transaction, so that nginx forgets its cached
   * decisions for that session at once (logout, regenerate, group change).
   */
  get invalidationChannel(): string {
    return `${this.keyPrefix}:invalidate`;
  }

  keys(sid: string): SessionKeys {
    const p = this.keyPrefix;
    if (this.keyLayout === 'cluster')
      return { data: `${p}:{${sid}}:data`, signature: `${p}:{${sid}}:signature`, groups: `${p}:{${sid}}:groups` };
    return { data: `${p}:data:${sid}`, signature: `${p}:signature:${sid}`, groups: `${p}:groups:${sid}` };
  }

  get(sid: string, callback: Callback<SessionData | null>): void {
    const keys = this.keys(sid);
    const read = this.scripts.sharedSessionRead(keys.data, keys.signature, keys.groups) as Promise<[string | null, number, number]>;
    read.then(
      ([json, pttl, leftovers]) => {
        this.recovered();
        // A timed id past its deadline (section 11) has ended, whatever its keys say.
        const data = json === null || sessionIdExpired(sid) ? null : this.parse(sid, json);
        if (data) {
          this.rememberExpiry(sid, pttl);
          callback(undefined, { ...data, cookie: this.rebuildCookie(sid) } as SessionData);
        } else if (json === null && leftovers === 0) {
          callback(undefined, null);
        } else {
          // Half-deleted (section 9) or past its deadline (section 11): no session,
          // and its leftovers go, so that nginx, which judges by the signature and
          // groups keys alone, refuses it too.
          this.destroy(sid, (err) => callback(err, null));
        }
      },
      (err: Error) => {
        this.fault(err);
        callback(err);
      },
    );
  }

  /** express-session makes every session it loads through this: remember the groups it was read with. */
  override createSession(req: Parameters<Store['createSession']>[0], session: SessionData): ReturnType<Store['createSession']> {
    const made = super.createSession(req, session);
    this.readGroups.set(made, groupsOf(session));
    return made;
  }

  /**
   * Writes the session as PROTOCOL.md section 8 says: a new one is created, a
   * loaded one is updated only while it exists (a logout or a revocation that
   * happened after this request read it is never undone), and groups changed
   * after the read are kept, not overwritten with the stale ones (the session
   * object then shows the stored groups). Other fields: the last write wins.
   */
  set(sid: string, session: SessionData, callback?: Callback): void {
    let data: Record<string, unknown>;
    let groups: string[];
    try {
      ({ data, groups } = FlaskRedisSessionStore.serialize(session));
    } catch (err) {
      callback?.(err);
      return;
    }
    // Flask's own flag: without it, a Flask app that rewrites the session turns
    // a persistent cookie into a browser-session one.
    if (data._permanent === undefined) data._permanent = this.cookie.persistent !== false;
    // Section 12: the session's own idle timeout, for whoever refreshes it (nginx included).
    if (data[IDLE_KEY] === undefined) data[IDLE_KEY] = this.idleSeconds;
    this.expiries.delete(sid);
    this.write(sid, session, data, groups, WRITE_ATTEMPTS).then(
      () => {
        this.recovered();
        callback?.();
      },
      (err: Error) => {
        this.fault(err);
        callback?.(err);
      },
    );
  }

  private async write(sid: string, session: SessionData, data: Record<string, unknown>, groups: string[], attempts: number): Promise<void> {
    const read = this.readGroups.get(session);
    const mode = read === undefined ? 'create' : sameMembers(read, groups) ? 'update' : 'update-groups';
    const keys = this.keys(sid);
    // Section 12: the idle timeout, cut at the deadline; whole seconds (the v1
    // layout's EX), rounded up. A session past its deadline is not written.
    const ttlMs = keyTtlMs(sid, idleSecondsOf(data, this.idleSeconds));
    if (ttlMs <= 0) return;
    const reply = (await this.scripts.sharedSessionWrite(
      keys.data,
      keys.signature,
      keys.groups,
      mode,
      JSON.stringify(data),
      this.signer.signature(sid),
      Math.ceil(ttlMs / 1000),
      this.invalidationChannel,
      sid,
      ...(mode === 'update' ? read! : groups),
    )) as string | string[];
    if (reply === 'ok' || reply === 'gone') {
      // 'gone': ended after this request read it; the write is dropped, the session stays ended.
      if (reply === 'ok') this.readGroups.set(session, groups);
      return;
    }
    // The groups changed after the read: they win. Adopt them and write the rest again.
    if (attempts <= 1) throw new Error('session groups keep changing; write abandoned');
    const stored = [...reply].sort();
    (session as { groups?: string[] }).groups = stored;
    this.readGroups.set(session, stored);
    await this.write(sid, session, { ...data, groups: stored }, stored, attempts - 1);
  }

  /**
   * True when `touch` would refresh this session now: at most once per
   * `touchAfterSeconds` (and at least once per half its idle timeout), never
   * once its deadline has come. The middleware renews the cookie of a session
   * without a deadline on the same occasions.
   */
  refreshDue(sid: string, session: object, now = Date.now()): boolean {
    const idleSeconds = idleSecondsOf(session, this.idleSeconds);
    const ttlMs = keyTtlMs(sid, idleSeconds, now);
    if (ttlMs <= 0) return false;
    const expiry = this.expiries.get(sid);
    // At most once per touchAfterSeconds, at least once per half what a refresh would give (short idle, near the deadline).
    const slack = Math.min(this.touchAfterSeconds * 1000, ttlMs / 2);
    return expiry === undefined || expiry < now + ttlMs - slack;
  }

  /**
   * `touch`: sets the TTL of the three keys back to the session's idle
   * timeout, never past its deadline (PROTOCOL.md section 12), at most once per
   * `touchAfterSeconds` per session: express-session touches after every
   * request that read a session, and a write per read would double the Redis
   * round trips. PEXPIRE never re-creates a key that is gone.
   */
  private refreshExpiry(sid: string, session: object, callback?: Callback): void {
    const now = Date.now();
    if (!this.refreshDue(sid, session, now)) {
      callback?.();
      return;
    }
    const keys = this.keys(sid);
    const ttl = keyTtlMs(sid, idleSecondsOf(session, this.idleSeconds), now);
    // Concurrent requests of one session see the refresh at once, not after their own round trip.
    this.rememberExpiry(sid, ttl);
    this.run(this.client.multi().pexpire(keys.data, ttl).pexpire(keys.signature, ttl).pexpire(keys.groups, ttl).exec(), callback);
  }

  destroy(sid: string, callback?: Callback): void {
    this.expiries.delete(sid);
    const keys = this.keys(sid);
    this.run(this.client.multi().del(keys.data, keys.signature, keys.groups).publish(this.invalidationChannel, sid).exec(), callback);
  }

  /** The JSON Flask reads: the session minus express-session's cookie; the groups it grants. */
  static serialize(session: SessionData): { data: Record<string, unknown>; groups: string[] } {
    const { cookie: _cookie, ...data } = session as SessionData & Record<string, unknown>;
    const groups = (data as { groups?: unknown }).groups;
    if (groups === undefined || groups === null) return { data, groups: [] };
    if (!Array.isArray(groups) || groups.some((g) => typeof g !== 'string' || g.length === 0)) {
      throw new TypeError('session.groups must be an array of non-empty strings');
    }
    return { data, groups: [...new Set(groups as string[])] };
  }

  /** The two scripts, defined on the client in the constructor (ioredis sends EVALSHA, EVAL once on NOSCRIPT). */
  private get scripts(): SessionScripts {
    return this.client as unknown as SessionScripts;
  }

  /** Bounded: at most 10 000 sessions, the least recently seen dropped first (a dropped one is simply touched). */
  private rememberExpiry(sid: string, pttl: number): void {
    if (pttl <= 0) return;
    this.expiries.delete(sid);
    if (this.expiries.size >= 10_000) this.expiries.delete(this.expiries.keys().next().value as string);
    this.expiries.set(sid, Date.now() + pttl);
  }

  private parse(sid: string, json: string): Record<string, unknown> | null {
    try {
      const value: unknown = JSON.parse(json);
      if (value && typeof value === 'object' && !Array.isArray(value)) return value as Record<string, unknown>;
    } catch {
      // fall through: logged below
    }
    this.logger.warn(`session ${sid.slice(0, 8)}…: data is not a JSON object; treated as no session`);
    return null;
  }

  /** The cookie's attributes; its expiry as PROTOCOL.md section 12 says (session-lifetime.ts). */
  private rebuildCookie(sid: string): SessionData['cookie'] {
    const persistent = this.cookie.persistent ?? DEFAULT_COOKIE_OPTIONS.persistent;
    const expires = cookieExpiry(sid, persistent) ?? null;
    return {
      path: this.cookie.path ?? DEFAULT_COOKIE_OPTIONS.path,
      domain: this.cookie.domain,
      secure: this.cookie.secure ?? DEFAULT_COOKIE_OPTIONS.secure,
      httpOnly: this.cookie.httpOnly ?? DEFAULT_COOKIE_OPTIONS.httpOnly,
      sameSite: this.cookie.sameSite ?? DEFAULT_COOKIE_OPTIONS.sameSite,
      originalMaxAge: expires ? expires.getTime() - Date.now() : null,
      expires,
    } as SessionData['cookie'];
  }

  /** Runs one Redis call (a command, a script or a MULTI); a MULTI fails as a whole if any command in it failed. */
  private run<T, R>(pending: Promise<T>, callback?: Callback<R>, map?: (result: T) => R): void {
    pending.then(
      (result) => {
        const failed = isMultiReply(result) ? result.find(([err]) => err) : undefined;
        if (result === null || failed) {
          const err = failed ? (failed[0] as Error) : new Error('Redis transaction aborted');
          this.fault(err);
          callback?.(err);
          return;
        }
        this.recovered();
        callback?.(undefined, map ? map(result) : undefined);
      },
      (err: Error) => {
        this.fault(err);
        callback?.(err);
      },
    );
  }

  private fault(err: Error): void {
    if (!this.healthy) return;
    this.healthy = false;
    this.logger.error(`Redis unavailable (${err.message}): logins and guarded routes answer 503 until it is back`);
  }

  private recovered(): void {
    if (this.healthy) return;
    this.healthy = true;
    this.logger.log('Redis is reachable again: sessions work again');
  }
}

interface SessionScripts {
  sharedSessionRead(data: string, signature: string, groups: string): Promise<unknown>;
  sharedSessionWrite(data: string, signature: string, groups: string, ...args: (string | number)[]): Promise<unknown>;
}

function groupsOf(session: SessionData): string[] {
  const groups = (session as { groups?: unknown }).groups;
  return Array.isArray(groups) ? [...new Set(groups.filter((g): g is string => typeof g === 'string'))] : [];
}

function sameMembers(a: string[], b: string[]): boolean {
  if (a.length !== b.length) return false;
  const set = new Set(a);
  return b.every((g) => set.has(g));
}

/** ioredis' MULTI result: one [error, reply] pair per command. */
function isMultiReply(result: unknown): result is [Error | null, unknown][] {
  return Array.isArray(result) && result.every((r) => Array.isArray(r) && r.length === 2 && (r[0] === null || r[0] instanceof Error));
}

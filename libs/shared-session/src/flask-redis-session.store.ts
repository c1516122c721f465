import { Logger } from '@nestjs/common';
import { createHash } from 'node:crypto';
import type { SessionData } from 'express-session';
import { Store } from 'express-session';
import type { Redis } from 'ioredis';
import { SessionCookieSigner } from './session-cookie-signer';
import type { SharedSessionCookieOptions } from './shared-session.options';
import { DEFAULT_COOKIE_OPTIONS, DEFAULT_KEY_PREFIX, DEFAULT_TOUCH_AFTER_SECONDS, DEFAULT_TTL_SECONDS } from './shared-session.constants';

export interface FlaskRedisSessionStoreOptions {
  client: Redis;
  signer: SessionCookieSigner;
  keyPrefix?: string;
  ttlSeconds?: number;
  /**
   * Refresh the three keys' TTL when express-session touches a session that a
   * request read, so that an active session lives on. Default true; false:
   * the store has no `touch`, and express-session never calls one.
   */
  touch?: boolean;
  /** With `touch`: refresh only when a session is older than this (seconds; default 60, 0: always). */
  touchAfterSeconds?: number;
  /** Attributes of the cookie rebuilt on `get` (the data in Redis holds none). */
  cookie?: SharedSessionCookieOptions;
  logger?: Pick<Logger, 'error' | 'warn' | 'log'>;
}

type Callback<T = void> = (err?: unknown, value?: T) => void;

/** The session's JSON and its remaining time to live (ms), read atomically. */
const GET_WITH_TTL = "return {redis.call('GET', KEYS[1]), redis.call('PTTL', KEYS[1])}";
const GET_WITH_TTL_SHA = createHash('sha1').update(GET_WITH_TTL).digest('hex');

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
  private readonly client: Redis;
  private readonly signer: SessionCookieSigner;
  private readonly keyPrefix: string;
  private readonly ttlSeconds: number;
  private readonly touchAfterSeconds: number;
  /** sid → when its keys expire, as last read or refreshed: lets `touch` skip a write that changes nothing much. */
  private readonly expiries = new Map<string, number>();
  private readonly cookie: SharedSessionCookieOptions;
  private readonly logger: Pick<Logger, 'error' | 'warn' | 'log'>;
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
    this.ttlSeconds = options.ttlSeconds ?? DEFAULT_TTL_SECONDS;
    this.touchAfterSeconds = Math.min(options.touchAfterSeconds ?? DEFAULT_TOUCH_AFTER_SECONDS, this.ttlSeconds);
    this.cookie = options.cookie ?? {};
    this.logger = options.logger ?? new Logger('SharedSession');
    if (options.touch !== false) this.touch = (sid, _session, callback) => this.refreshExpiry(sid, callback);
    // ioredis reports every failed reconnection; say it once per fault, and say when it is over.
    this.client.on('error', (err: Error) => this.fault(err));
    this.client.on('ready', () => this.recovered());
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
    return { data: `${p}:data:${sid}`, signature: `${p}:signature:${sid}`, groups: `${p}:groups:${sid}` };
  }

  get(sid: string, callback: Callback<SessionData | null>): void {
    const key = this.keys(sid).data;
    // One script instead of MULTI GET PTTL: the same atomic read at the cost of a plain GET
    // (this runs on every request that carries a session).
    const read = this.client.evalsha(GET_WITH_TTL_SHA, 1, key).catch((err: Error) =>
      /NOSCRIPT/.test(err.message) ? this.client.eval(GET_WITH_TTL, 1, key) : Promise.reject(err),
    ) as Promise<[string | null, number]>;
    this.run(read, callback, ([json, pttl]) => {
      if (json === null) return null;
      this.rememberExpiry(sid, pttl as number);
      const data = this.parse(sid, json as string);
      if (!data) return null;
      return { ...data, cookie: this.rebuildCookie(pttl as number) } as SessionData;
    });
  }

  set(sid: string, session: SessionData, callback?: Callback): void {
    let data: Record<string, unknown>;
    let groups: string[];
    try {
      ({ data, groups } = FlaskRedisSessionStore.serialize(session));
    } catch (err) {
      callback?.(err);
      return;
    }
    this.expiries.delete(sid);
    const keys = this.keys(sid);
    const ttl = this.ttlSeconds;
    const tx = this.client
      .multi()
      .set(keys.data, JSON.stringify(data), 'EX', ttl)
      .set(keys.signature, this.signer.signature(sid), 'EX', ttl)
      .del(keys.groups);
    if (groups.length > 0) tx.sadd(keys.groups, ...groups).expire(keys.groups, ttl);
    tx.publish(this.invalidationChannel, sid);
    this.run(tx.exec(), callback);
  }

  /**
   * `touch`: refreshes the TTL of the three keys, at most once per
   * `touchAfterSeconds` per session: express-session touches after every
   * request that read a session, and a write per read would double the Redis
   * round trips.
   */
  private refreshExpiry(sid: string, callback?: Callback): void {
    const expiry = this.expiries.get(sid);
    if (expiry !== undefined && expiry - Date.now() > (this.ttlSeconds - this.touchAfterSeconds) * 1000) {
      callback?.();
      return;
    }
    const keys = this.keys(sid);
    const ttl = this.ttlSeconds;
    // Concurrent requests of one session see the refresh at once, not after their own round trip.
    this.rememberExpiry(sid, ttl * 1000);
    this.run(this.client.multi().expire(keys.data, ttl).expire(keys.signature, ttl).expire(keys.groups, ttl).exec(), callback);
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

  private rebuildCookie(pttl: number): SessionData['cookie'] {
    const persistent = this.cookie.persistent ?? DEFAULT_COOKIE_OPTIONS.persistent;
    const remaining = pttl > 0 ? pttl : this.ttlSeconds * 1000;
    return {
      path: this.cookie.path ?? DEFAULT_COOKIE_OPTIONS.path,
      domain: this.cookie.domain,
      secure: this.cookie.secure ?? DEFAULT_COOKIE_OPTIONS.secure,
      httpOnly: this.cookie.httpOnly ?? DEFAULT_COOKIE_OPTIONS.httpOnly,
      sameSite: this.cookie.sameSite ?? DEFAULT_COOKIE_OPTIONS.sameSite,
      originalMaxAge: persistent ? this.ttlSeconds * 1000 : null,
      expires: persistent ? new Date(Date.now() + remaining) : null,
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

/** ioredis' MULTI result: one [error, reply] pair per command. */
function isMultiReply(result: unknown): result is [Error | null, unknown][] {
  return Array.isArray(result) && result.every((r) => Array.isArray(r) && r.length === 2 && (r[0] === null || r[0] instanceof Error));
}

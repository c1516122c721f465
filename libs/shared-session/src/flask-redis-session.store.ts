import { Logger } from '@nestjs/common';
import type { SessionData } from 'express-session';
import { Store } from 'express-session';
import type { Redis } from 'ioredis';
import { SessionCookieSigner } from './session-cookie-signer';
import type { SharedSessionCookieOptions } from './shared-session.options';
import { DEFAULT_KEY_PREFIX, DEFAULT_TTL_SECONDS } from './shared-session.constants';

export interface FlaskRedisSessionStoreOptions {
  client: Redis;
  signer: SessionCookieSigner;
  keyPrefix?: string;
  ttlSeconds?: number;
  /** Attributes of the cookie rebuilt on `get` (the data in Redis holds none). */
  cookie?: SharedSessionCookieOptions;
  logger?: Pick<Logger, 'error' | 'warn' | 'log'>;
}

type Callback<T = void> = (err?: unknown, value?: T) => void;

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
  private readonly cookie: SharedSessionCookieOptions;
  private readonly logger: Pick<Logger, 'error' | 'warn' | 'log'>;
  private healthy = true;

  constructor(options: FlaskRedisSessionStoreOptions) {
    super();
    this.client = options.client;
    this.signer = options.signer;
    this.keyPrefix = options.keyPrefix ?? DEFAULT_KEY_PREFIX;
    this.ttlSeconds = options.ttlSeconds ?? DEFAULT_TTL_SECONDS;
    this.cookie = options.cookie ?? {};
    this.logger = options.logger ?? new Logger('SharedSession');
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
    const keys = this.keys(sid);
    this.run(this.client.multi().get(keys.data).pttl(keys.data).exec(), callback, ([json, pttl]) => {
      if (json === null) return null;
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

  touch(sid: string, _session: SessionData, callback?: Callback): void {
    const keys = this.keys(sid);
    const ttl = this.ttlSeconds;
    this.run(this.client.multi().expire(keys.data, ttl).expire(keys.signature, ttl).expire(keys.groups, ttl).exec(), callback);
  }

  destroy(sid: string, callback?: Callback): void {
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
    const persistent = this.cookie.persistent !== false;
    const remaining = pttl > 0 ? pttl : this.ttlSeconds * 1000;
    return {
      path: this.cookie.path ?? '/',
      domain: this.cookie.domain,
      secure: this.cookie.secure ?? false,
      httpOnly: this.cookie.httpOnly ?? true,
      sameSite: this.cookie.sameSite ?? 'lax',
      originalMaxAge: persistent ? this.ttlSeconds * 1000 : null,
      expires: persistent ? new Date(Date.now() + remaining) : null,
    } as SessionData['cookie'];
  }

  /** Runs one Redis call; a failed MULTI (any command in it) fails the whole call. */
  private run<T, R>(pending: Promise<T>, callback?: Callback<R>, map?: (values: unknown[]) => R): void {
    pending.then(
      (result) => {
        const replies = Array.isArray(result) ? (result as [Error | null, unknown][]) : [];
        const failed = replies.find((reply) => Array.isArray(reply) && reply[0]);
        if (result === null || failed) {
          const err = failed ? (failed[0] as Error) : new Error('Redis transaction aborted');
          this.fault(err);
          callback?.(err);
          return;
        }
        this.recovered();
        callback?.(undefined, map ? map(replies.map((reply) => (Array.isArray(reply) ? reply[1] : reply))) : undefined);
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

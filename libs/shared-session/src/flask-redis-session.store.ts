import { Logger } from '@nestjs/common';
import { EventEmitter } from 'node:events';
import type { SessionData, Store } from 'express-session';
import type { SharedSessionRedis } from './redis-client';
import { createSessionLayout } from './layouts/create-session-layout';
import type { KeyLayout, SessionKeys } from './layouts/session-layout';
import { SessionCookieSigner } from './session-cookie-signer';
import { sessionIdExpired } from './session-id';
import { cookieExpiry, defaultRefreshIntervalSeconds, IDLE_KEY, idleSecondsOf, keyTtlMs } from './session-lifetime';
import { refusedByNotBefore, userIdOf } from './session-control.keys';
import { isWellFormed, jsonObject, sessionJsonBoundsProblem } from './session-json';
import { SessionRepository } from './session-repository';
import type { SharedSessionCookieOptions } from './shared-session.options';
import { metricsClock, NO_METRICS, secondsSince, SessionMetrics, StoreOperation } from './shared-session.metrics';
import {
  DEFAULT_COOKIE_OPTIONS,
  DEFAULT_IDLE_TIMEOUT_SECONDS,
  DEFAULT_KEY_PREFIX,
  DEFAULT_USER_ID_FIELD,
} from './shared-session.constants';

export type { SessionKeys };

export interface FlaskRedisSessionStoreOptions {
  client: SharedSessionRedis;
  signer: SessionCookieSigner;
  keyPrefix?: string;
  /** PROTOCOL.md section 3's key names (`v1`, default), section 14's (`cluster`), or section 15's one key per session (`compact`). */
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
   * With `touch`: refresh a session once it has not been extended for this
   * many seconds (0: always), and at least once per half of its idle
   * timeout. Default: follows each session's idle timeout (PROTOCOL.md
   * section 12: `min(idle / 2, max(60, idle / 10))`).
   */
  touchAfterSeconds?: number;
  /** Attributes of the cookie rebuilt on `get` (the data in Redis holds none). */
  cookie?: SharedSessionCookieOptions;
  logger?: Pick<Logger, 'error' | 'warn' | 'log'>;
  /** PROTOCOL.md section 13.1: the session field that names its user, for the per-user index (default `username`). */
  userIdField?: string;
  /** A create beyond this many live sessions of one user ends the user's oldest (default: no limit). */
  maxSessionsPerUser?: number;
  /** Counts each Redis operation, its latency and its errors (default: nothing). */
  metrics?: SessionMetrics;
}

type Callback<T = void> = (err?: unknown, value?: T) => void;

/**
 * An express-session store that keeps each session in the layout of
 * PROTOCOL.md section 3 (or 14, or 15: `keyLayout`), so that Flask
 * (flask-resty-shared-session) and nginx (resty.shared_session) read what it
 * writes, and it reads what Flask writes. What is express-session's is here
 * (callbacks, the cookie, the groups a request read); the sessions in Redis
 * are the SessionRepository's, on the layout chosen once.
 */
export class FlaskRedisSessionStore extends EventEmitter {
  private readonly client: SharedSessionRedis;
  private readonly sessions: SessionRepository;
  private readonly signer: SessionCookieSigner;
  /** The idle timeout of sessions whose JSON holds none. */
  private readonly idleSeconds: number;
  /** undefined: the default, which follows each session's idle timeout. */
  private readonly touchAfterSeconds: number | undefined;
  /** sid → when its keys expire, as last read or refreshed: lets `touch` skip a write that changes nothing much. */
  private readonly expiries = new Map<string, number>();
  private readonly cookie: SharedSessionCookieOptions;
  private readonly logger: Pick<Logger, 'error' | 'warn' | 'log'>;
  /** Section 13.1: the session field that names its user. */
  readonly userIdField: string;
  /**
   * The groups each session object had when it was read from Redis (express-session
   * makes every loaded session through createSession). A session object not in
   * here is new (a fresh id): its first write is a plain section 3 write.
   */
  private readonly readGroups = new WeakMap<object, string[]>();
  /** The user each loaded session named when it was read (section 14.1: a write that changes it takes it out of that user's index). */
  private readonly readUsers = new WeakMap<object, string | undefined>();
  private healthy = true;
  private readonly metrics: SessionMetrics;
  /**
   * express-session's optional store method, absent with `touch: false`:
   * express-session looks once, when it is created, whether the store has one.
   */
  declare touch?: (sid: string, session: SessionData, callback?: Callback) => void;

  /** `sessions`: the module's repository (its layout chosen once, in the providers); else one is made from the options. */
  constructor(options: FlaskRedisSessionStoreOptions, sessions?: SessionRepository) {
    super();
    this.client = options.client;
    this.signer = options.signer;
    this.idleSeconds = options.idleTimeoutSeconds ?? options.ttlSeconds ?? DEFAULT_IDLE_TIMEOUT_SECONDS;
    this.touchAfterSeconds = options.touchAfterSeconds;
    this.cookie = options.cookie ?? {};
    this.logger = options.logger ?? new Logger('SharedSession');
    this.userIdField = options.userIdField ?? DEFAULT_USER_ID_FIELD;
    this.sessions = sessions ?? sessionRepository(options, this.logger);
    this.metrics = options.metrics ?? NO_METRICS;
    if (options.touch !== false) this.touch = (sid, session, callback) => this.refreshExpiry(sid, session, callback);
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
    return this.sessions.channel;
  }

  /**
   * The three keys of a session in the v1 or cluster layout. The compact
   * layout (PROTOCOL.md section 15) keeps a session in one key,
   * `<prefix>:{<sid>}`: there it throws, saying so.
   */
  keys(sid: string): SessionKeys {
    return this.sessions.keys(sid);
  }

  /** The Redis key prefix (PROTOCOL.md section 3). */
  get prefix(): string {
    return this.sessions.prefix;
  }

  get(sid: string, callback: Callback<SessionData | null>): void {
    const start = metricsClock(this.metrics);
    this.sessions.read(sid).then(
      ([json, pttl, leftovers, mark]) => {
        this.measured('get', start);
        this.recovered();
        // A timed id past its deadline (section 11), or issued before the not-before mark (section 13.2), has ended, whatever its keys say.
        const ended = sessionIdExpired(sid) || refusedByNotBefore(sid, mark);
        const data = json === null || ended ? null : this.parse(sid, json);
        if (data) {
          this.rememberExpiry(sid, pttl);
          callback(undefined, { ...data, cookie: this.rebuildCookie(sid) } as SessionData);
        } else if (json === null && leftovers === 0) {
          callback(undefined, null);
        } else if (json === null) {
          // Half-deleted (section 9) or malformed (section 15): no session, and its leftovers go, so that nginx,
          // which judges by the signature and groups keys alone, refuses it too; only while it is still no session.
          this.run('destroy', metricsClock(this.metrics), this.sessions.dropLeftovers(sid), (err) => callback(err, null));
        } else {
          // Past its deadline (section 11) or the not-before mark (13.2), or its JSON no session: it ends whole.
          this.destroy(sid, (err) => callback(err, null));
        }
      },
      (err: Error) => {
        this.measured('get', start, err);
        this.fault(err);
        callback(err);
      },
    );
  }

  // express-session's Store methods, from express-session itself when it calls them (the Express seam): on Fastify it is never loaded.

  regenerate(req: Parameters<Store['regenerate']>[0], callback: (err?: unknown) => void): void {
    expressSessionStore().regenerate.call(this, req, callback);
  }

  load(sid: string, callback: (err: unknown, session?: SessionData) => void): void {
    expressSessionStore().load.call(this, sid, callback);
  }

  /** express-session makes every session it loads through this: remember the groups it was read with. */
  createSession(req: Parameters<Store['createSession']>[0], session: SessionData): ReturnType<Store['createSession']> {
    const made = expressSessionStore().createSession.call(this, req, session);
    this.trackLoaded(made, session);
    return made;
  }

  /** A session object made from what `get` read (by express-session, or on Fastify): its first write is an update (section 8). */
  trackLoaded(made: object, session: SessionData | Record<string, unknown>): void {
    this.readGroups.set(made, groupsOf(session as SessionData));
    this.readUsers.set(made, userIdOf(session as Record<string, unknown>, this.userIdField));
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
    const start = metricsClock(this.metrics);
    this.write(sid, session, data, groups).then(
      () => {
        this.measured('set', start);
        this.recovered();
        callback?.();
      },
      (err: Error) => {
        this.measured('set', start, err);
        this.fault(err);
        callback?.(err);
      },
    );
  }

  private async write(sid: string, session: SessionData, data: Record<string, unknown>, groups: string[]): Promise<void> {
    // Section 12: the idle timeout, cut at the deadline; whole seconds (the v1
    // layout's EX), rounded up. A session past its deadline is not written.
    const ttlMs = keyTtlMs(sid, idleSecondsOf(data, this.idleSeconds));
    if (ttlMs <= 0) return;
    const read = this.readGroups.get(session);
    const user = userIdOf(data, this.userIdField);
    const previous = read === undefined ? undefined : this.readUsers.get(session);
    const outcome = await this.sessions.save(sid, data, groups, read, this.signer.signature(sid), Math.ceil(ttlMs / 1000), user, previous);
    if (outcome.written) this.readUsers.set(session, user);
    // The groups changed after the read: the session object shows the stored ones.
    if (outcome.groups !== groups) (session as { groups?: string[] }).groups = outcome.groups;
    if (outcome.written || outcome.groups !== groups) this.readGroups.set(session, outcome.groups);
  }

  /**
   * True when `touch` would refresh this session now (PROTOCOL.md section
   * 12): when its known expiry is closer than what a refresh would give
   * minus the interval (`touchAfterSeconds`, or the default that follows
   * its idle timeout), i.e. once it has not been extended for the interval;
   * at least once per half its idle timeout; never once its deadline has
   * come. The middleware renews the cookie of a session
   * without a deadline on the same occasions.
   */
  refreshDue(sid: string, session: object, now = Date.now()): boolean {
    const idleSeconds = idleSecondsOf(session, this.idleSeconds);
    const ttlMs = keyTtlMs(sid, idleSeconds, now);
    if (ttlMs <= 0) return false;
    const expiry = this.expiries.get(sid);
    // Not extended for the interval; at least once per half what a refresh would give (short idle, near the deadline).
    const intervalSeconds = this.touchAfterSeconds ?? defaultRefreshIntervalSeconds(idleSeconds);
    const slack = Math.min(intervalSeconds * 1000, ttlMs / 2);
    return expiry === undefined || expiry < now + ttlMs - slack;
  }

  /**
   * `touch`: sets the TTL of the session's keys back to its idle timeout,
   * never past its deadline (PROTOCOL.md section 12), at most once per
   * `touchAfterSeconds` per session: express-session touches after every
   * request that read a session, and a write per read would double the Redis
   * round trips. PEXPIRE never re-creates a key that is gone. The user's
   * index keeps the session's new expiry (section 13.1), so that pruning
   * never drops a live session.
   */
  private refreshExpiry(sid: string, session: object, callback?: Callback): void {
    const now = Date.now();
    if (!this.refreshDue(sid, session, now)) {
      callback?.();
      return;
    }
    const ttl = keyTtlMs(sid, idleSecondsOf(session, this.idleSeconds), now);
    // Concurrent requests of one session see the refresh at once, not after their own round trip.
    this.rememberExpiry(sid, ttl);
    const user = userIdOf(session as Record<string, unknown>, this.userIdField);
    this.run('touch', metricsClock(this.metrics), this.sessions.refresh(sid, user, now, ttl), callback);
  }

  destroy(sid: string, callback?: Callback): void {
    this.expiries.delete(sid);
    this.run('destroy', metricsClock(this.metrics), this.sessions.end(sid), callback);
  }

  /** Ends a session: its keys, its member in its user's index, the notice. True when it existed. */
  end(sid: string): Promise<boolean> {
    this.expiries.delete(sid);
    return this.sessions.end(sid);
  }

  /** The JSON Flask reads: the session minus express-session's cookie; the groups it grants. */
  static serialize(session: SessionData): { data: Record<string, unknown>; groups: string[] } {
    const { cookie: _cookie, ...data } = session as SessionData & Record<string, unknown>;
    const groups = (data as { groups?: unknown }).groups;
    if (groups === undefined || groups === null) return { data, groups: [] };
    if (!Array.isArray(groups) || groups.some((g) => typeof g !== 'string' || g.length === 0 || !isWellFormed(g))) {
      throw new TypeError('session.groups must be an array of non-empty, well-formed strings (no lone surrogate)');
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

  /** Section 15.1: beyond the bounds (too deep, too large) or not a JSON object, the session is malformed. */
  private parse(sid: string, json: string): Record<string, unknown> | null {
    const beyond = sessionJsonBoundsProblem(json);
    const data = beyond === undefined ? jsonObject(json) : null;
    if (data) return data;
    this.logger.warn(`session ${sid.slice(0, 8)}…: data ${beyond ?? 'is not a JSON object'}; treated as no session`);
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
  private run<T, R>(op: StoreOperation, start: number, pending: Promise<T>, callback?: Callback<R>, map?: (result: T) => R): void {
    pending.then(
      (result) => {
        const failed = isMultiReply(result) ? result.find(([err]) => err) : undefined;
        if (result === null || failed) {
          const err = failed ? (failed[0] as Error) : new Error('Redis transaction aborted');
          this.measured(op, start, err);
          this.fault(err);
          callback?.(err);
          return;
        }
        this.measured(op, start);
        this.recovered();
        callback?.(undefined, map ? map(result) : undefined);
      },
      (err: Error) => {
        this.measured(op, start, err);
        this.fault(err);
        callback?.(err);
      },
    );
  }

  /** One Redis operation for the metrics (nothing when they are off). */
  private measured(op: StoreOperation, start: number, err?: Error): void {
    if (this.metrics.enabled) this.metrics.storeOperation(op, secondsSince(start), err);
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

/** The repository of a store made from its options alone (without Nest): its layout chosen here, once. */
export function sessionRepository(
  options: Pick<FlaskRedisSessionStoreOptions, 'client' | 'keyPrefix' | 'keyLayout' | 'userIdField' | 'maxSessionsPerUser' | 'logger'>,
  logger: Pick<Logger, 'error' | 'warn' | 'log'> = options.logger ?? new Logger('SharedSession'),
): SessionRepository {
  const prefix = options.keyPrefix ?? DEFAULT_KEY_PREFIX;
  const layout = createSessionLayout(options.keyLayout ?? 'v1', {
    client: options.client,
    prefix,
    userIdField: options.userIdField ?? DEFAULT_USER_ID_FIELD,
    maxSessionsPerUser: options.maxSessionsPerUser ?? 0,
    logger,
  });
  return new SessionRepository(options.client, layout, prefix);
}

/** express-session's Store prototype, loaded on first use (then kept: createSession runs on every request that reads a session). */
let storePrototype: Store | undefined;
function expressSessionStore(): Store {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  storePrototype ??= (require('express-session') as typeof import('express-session')).Store.prototype;
  return storePrototype;
}

function groupsOf(session: SessionData): string[] {
  const groups = (session as { groups?: unknown }).groups;
  return Array.isArray(groups) ? [...new Set(groups.filter((g): g is string => typeof g === 'string'))] : [];
}

/** ioredis' MULTI result: one [error, reply] pair per command. */
function isMultiReply(result: unknown): result is [Error | null, unknown][] {
  return Array.isArray(result) && result.every((r) => Array.isArray(r) && r.length === 2 && (r[0] === null || r[0] instanceof Error));
}

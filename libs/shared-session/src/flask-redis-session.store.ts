import { Logger } from '@nestjs/common';
import type { SessionData } from 'express-session';
import { Store } from 'express-session';
import type { SharedSessionRedis } from './redis-client';
import { COMPACT_LUA, compactKey, compactValue, parseCompactValue } from './compact-value';
import { SessionCookieSigner } from './session-cookie-signer';
import { sessionIdExpired, sessionIdTimes } from './session-id';
import { cookieExpiry, IDLE_KEY, idleSecondsOf, keyTtlMs } from './session-lifetime';
import { refusedByNotBefore, userIdOf } from './session-control.keys';
import type { KeyLayout, SharedSessionCookieOptions } from './shared-session.options';
import {
  DEFAULT_COOKIE_OPTIONS,
  DEFAULT_IDLE_TIMEOUT_SECONDS,
  DEFAULT_KEY_PREFIX,
  DEFAULT_TOUCH_AFTER_SECONDS,
  DEFAULT_USER_ID_FIELD,
} from './shared-session.constants';

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
   * With `touch`: refresh a session at most once per this many seconds (default
   * 60, 0: always), and at least once per half of its idle timeout.
   */
  touchAfterSeconds?: number;
  /** Attributes of the cookie rebuilt on `get` (the data in Redis holds none). */
  cookie?: SharedSessionCookieOptions;
  logger?: Pick<Logger, 'error' | 'warn' | 'log'>;
  /** PROTOCOL.md section 13.1: the session field that names its user, for the per-user index (default `username`). */
  userIdField?: string;
  /** A create beyond this many live sessions of one user ends the user's oldest (default: no limit). */
  maxSessionsPerUser?: number;
}

type Callback<T = void> = (err?: unknown, value?: T) => void;

/**
 * The session's JSON and its remaining time to live (ms), read atomically;
 * when the data is missing, how many of its sibling keys are left over
 * (PROTOCOL.md section 9: a half-deleted session).
 */
const READ_SCRIPT = `
local mark = redis.call('GET', KEYS[4])
local data = redis.call('GET', KEYS[1])
if not data then return {false, -2, redis.call('EXISTS', KEYS[2], KEYS[3]), mark} end
return {data, redis.call('PTTL', KEYS[1]), 0, mark}`;

/** Lua: the issue time (ms) of a timed session id (section 11), or nil for an untimed one. */
export const ISSUED_LUA = `
local function issued(sid)
  if #sid ~= 48 then return nil end
  local i, d = string.match(sid, '^([0-9a-f]+)_([0-9a-f]+)_')
  if not i or #i ~= 12 or #d ~= 12 then return nil end
  return tonumber(i, 16)
end`;

/**
 * PROTOCOL.md section 8: a write that a concurrent logout or group change
 * cannot undo. KEYS: data, signature, groups, the user's index (section 13.1;
 * the data key again when the session has no user), the not-before mark.
 * ARGV: mode, data JSON, signature, ttl, channel, sid, has-user ('1' or ''),
 * now (ms), max sessions per user (0: none), key prefix, then the groups (to
 * write for "create" and "update-groups"; as read, for "update").
 *  - create: a new session id, written as section 3 says;
 *  - update / update-groups: only while the data key exists (never re-creates a
 *    session deleted after it was read);
 *  - update: leaves the groups set alone, and only when it still holds the
 *    groups this writer read; otherwise answers the stored groups, for the
 *    writer to adopt them and try again.
 */
const WRITE_SCRIPT = `
local mode, ttl = ARGV[1], ARGV[4]
local G = 11 -- the first group's ARGV index (section 13 added 7 to 10)
${ISSUED_LUA}
if mode ~= 'create' and redis.call('EXISTS', KEYS[1]) == 0 then return 'gone' end
-- Section 13.2: a session issued before the not-before mark has ended.
if mode ~= 'create' then
  local mark = tonumber(redis.call('GET', KEYS[5]) or '0') or 0
  local at = issued(ARGV[6])
  if mark > 0 and (at == nil or at < mark) then return 'gone' end
end
if mode == 'update' then
  local stored = redis.call('SMEMBERS', KEYS[3])
  local same = #stored == #ARGV - (G - 1)
  if same then
    local read = {}
    for i = G, #ARGV do read[ARGV[i]] = true end
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
  if #ARGV >= G then
    redis.call('SADD', KEYS[3], unpack(ARGV, G))
    redis.call('EXPIRE', KEYS[3], ttl)
  end
end
-- Section 13.1: the user's index, in the same atomic step as the keys.
if ARGV[7] == '1' then
  local now, p = tonumber(ARGV[8]), ARGV[10]
  redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now)
  redis.call('ZADD', KEYS[4], now + tonumber(ttl) * 1000, ARGV[6])
  local max = tonumber(ARGV[9])
  if mode == 'create' and max > 0 and redis.call('ZCARD', KEYS[4]) > max then
    -- Over the limit: the oldest sessions (by issue time) end.
    local members = redis.call('ZRANGE', KEYS[4], 0, -1)
    table.sort(members, function(a, b)
      local ia, ib = issued(a) or 0, issued(b) or 0
      if ia ~= ib then return ia < ib end
      return a < b
    end)
    local excess = #members - max
    for _, old in ipairs(members) do
      if excess <= 0 then break end
      if old ~= ARGV[6] then
        redis.call('DEL', p .. ':data:' .. old, p .. ':signature:' .. old, p .. ':groups:' .. old)
        redis.call('ZREM', KEYS[4], old)
        redis.call('PUBLISH', ARGV[5], old)
        excess = excess - 1
      end
    end
  end
  local last = redis.call('ZRANGE', KEYS[4], -1, -1, 'WITHSCORES')
  redis.call('PEXPIREAT', KEYS[4], last[2])
end
redis.call('PUBLISH', ARGV[5], ARGV[6])
return 'ok'`;

/**
 * Ends one session (logout, revocation, a half-deleted or expired one): its
 * three keys, its member in its user's index (section 13.1), and the notice
 * (section 7). KEYS: data, signature, groups. ARGV: channel, sid, key prefix,
 * user id field. Answers 1 when the data key existed.
 */
const DESTROY_SCRIPT = `
local data = redis.call('GET', KEYS[1])
if data then
  local ok, session = pcall(cjson.decode, data)
  if ok and type(session) == 'table' then
    local user = session[ARGV[4]]
    if type(user) == 'string' and user ~= '' then redis.call('ZREM', ARGV[3] .. ':user:' .. user, ARGV[2]) end
  end
end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
redis.call('PUBLISH', ARGV[1], ARGV[2])
return data and 1 or 0`;

/**
 * PROTOCOL.md section 14.1: a session's member in its user's index on the
 * cluster layout, in the index's own slot (before the session's write, after
 * a refresh). KEYS[1]: the index. ARGV: now, the session's expiry (ms), sid.
 * Prunes what has expired, raises (or adds) the member, and raises the
 * index's own expiry to the session's, never lowering either. Answers how
 * many members it holds.
 */
const INDEX_SESSION_SCRIPT = `
local now, at = tonumber(ARGV[1]), tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZADD', KEYS[1], 'GT', at, ARGV[3])
if redis.call('PTTL', KEYS[1]) < at - now then redis.call('PEXPIRE', KEYS[1], at - now) end
return redis.call('ZCARD', KEYS[1])`;

/**
 * PROTOCOL.md section 15, the compact layout: a session is one string key,
 * its signature then its JSON (compact-value.ts). Section 13 works as on the
 * cluster layout (sections 14.1 to 14.3): the index and the mark are written
 * and read in steps of their own, so these scripts touch the one key alone.
 */

/** KEYS[1]: the session's key. Its value and PTTL, atomically (the value is judged in TypeScript). */
const COMPACT_READ_SCRIPT = `
local value = redis.call('GET', KEYS[1])
if not value then return {false, -2} end
return {value, redis.call('PTTL', KEYS[1])}`;

/**
 * Section 8 on one key. KEYS[1]: the session's key. ARGV: mode, value, ttl
 * (s), channel, sid, then (update) the groups as read. Update and
 * update-groups write only while a well-formed value is stored (a malformed
 * one is no session: 'gone'); update only while its groups are, as a set,
 * those read, and otherwise answers the stored groups.
 */
const COMPACT_WRITE_SCRIPT = `
${COMPACT_LUA}
local mode = ARGV[1]
if mode ~= 'create' then
  local session = compact_session(redis.call('GET', KEYS[1]))
  if not session then return 'gone' end
  if mode == 'update' then
    local stored, read = compact_groups(session), {}
    for i = 6, #ARGV do read[ARGV[i]] = true end
    local same = #stored == #ARGV - 5
    for _, g in ipairs(stored) do
      if not read[g] then same = false end
    end
    if not same then return stored end
  end
end
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
redis.call('PUBLISH', ARGV[4], ARGV[5])
return 'ok'`;

/**
 * Ends one session: its key and the notice (section 7). KEYS[1]: the
 * session's key. ARGV: channel, sid, user id field. Answers false when there
 * was no key, else the user of its data ('' when none or malformed), whose
 * index member the store removes next (section 14.1: another slot).
 */
const COMPACT_DESTROY_SCRIPT = `
${COMPACT_LUA}
local value = redis.call('GET', KEYS[1])
if not value then return false end
local session, user = compact_session(value), ''
if session and type(session[ARGV[3]]) == 'string' then user = session[ARGV[3]] end
redis.call('DEL', KEYS[1])
redis.call('PUBLISH', ARGV[1], ARGV[2])
return user`;

/** One session as a reader of the per-user index finds it: id, JSON, remaining time to live (ms). */
export interface IndexedSession {
  sid: string;
  json: string;
  pttl: number;
}

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
  /** Section 13.1: the session field that names its user. */
  readonly userIdField: string;
  private readonly maxSessionsPerUser: number;
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
    this.userIdField = options.userIdField ?? DEFAULT_USER_ID_FIELD;
    this.maxSessionsPerUser = options.maxSessionsPerUser ?? 0;
    if (options.touch !== false) this.touch = (sid, session, callback) => this.refreshExpiry(sid, session, callback);
    // ioredis reports every failed reconnection; say it once per fault, and say when it is over.
    this.client.on('error', (err: Error) => this.fault(err));
    this.client.on('ready', () => this.recovered());
    if (this.compact) {
      this.client.defineCommand('sharedSessionCompactRead', { numberOfKeys: 1, lua: COMPACT_READ_SCRIPT });
      this.client.defineCommand('sharedSessionCompactWrite', { numberOfKeys: 1, lua: COMPACT_WRITE_SCRIPT });
      this.client.defineCommand('sharedSessionCompactDestroy', { numberOfKeys: 1, lua: COMPACT_DESTROY_SCRIPT });
    } else {
      this.client.defineCommand('sharedSessionRead', { numberOfKeys: 4, lua: READ_SCRIPT });
      this.client.defineCommand('sharedSessionWrite', { numberOfKeys: 5, lua: WRITE_SCRIPT });
      this.client.defineCommand('sharedSessionDestroy', { numberOfKeys: 3, lua: DESTROY_SCRIPT });
    }
    this.client.defineCommand('sharedSessionIndex', { numberOfKeys: 1, lua: INDEX_SESSION_SCRIPT });
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

  /** The three keys of a session in the v1 or cluster layout (the compact layout has one: `compactKey`). */
  keys(sid: string): SessionKeys {
    const p = this.keyPrefix;
    if (this.compact) throw new Error('the compact layout keeps a session in one key: compactKey()');
    if (this.keyLayout === 'cluster')
      return { data: `${p}:{${sid}}:data`, signature: `${p}:{${sid}}:signature`, groups: `${p}:{${sid}}:groups` };
    return { data: `${p}:data:${sid}`, signature: `${p}:signature:${sid}`, groups: `${p}:groups:${sid}` };
  }

  /** PROTOCOL.md section 15: the one key of a session in the compact layout. */
  compactKey(sid: string): string {
    return compactKey(this.keyPrefix, sid);
  }

  /** True on the compact layout (PROTOCOL.md section 15). */
  get compact(): boolean {
    return this.keyLayout === 'compact';
  }

  /** Every key of a session: section 3's three, or section 15's one. */
  private sessionKeyList(sid: string): string[] {
    if (this.compact) return [this.compactKey(sid)];
    const keys = this.keys(sid);
    return [keys.data, keys.signature, keys.groups];
  }

  /** The Redis key prefix (PROTOCOL.md section 3). */
  get prefix(): string {
    return this.keyPrefix;
  }

  /**
   * True when PROTOCOL.md section 13 applies whole, in the session's own
   * scripts (the v1 layout). On the cluster and compact layouts (sections
   * 14.1 to 14.3, and section 15) the per-user index and the not-before mark
   * are in slots of their own, written and read in steps of their own.
   */
  get controlled(): boolean {
    return this.keyLayout === 'v1';
  }

  /** Section 13.1: the index of a user's live sessions. */
  userIndexKey(userId: string): string {
    return `${this.keyPrefix}:user:${userId}`;
  }

  /** Section 13.2: the not-before mark. */
  get notBeforeKey(): string {
    return `${this.keyPrefix}:not-before`;
  }

  get(sid: string, callback: Callback<SessionData | null>): void {
    const read = this.compact ? this.readCompact(sid) : this.readThreeKeys(sid);
    // Section 14.3: on the cluster and compact layouts the mark is in a slot of its own, read beside the script.
    const clusterMark = this.controlled ? Promise.resolve(null) : this.client.get(this.notBeforeKey);
    Promise.all([read, clusterMark]).then(
      ([[json, pttl, leftovers, markRead], markBeside]) => {
        const mark = this.controlled ? markRead : markBeside;
        this.recovered();
        // A timed id past its deadline (section 11), or issued before the not-before mark (section 13.2), has ended, whatever its keys say.
        const ended = sessionIdExpired(sid) || refusedByNotBefore(sid, mark);
        const data = json === null || ended ? null : this.parse(sid, json);
        if (data) {
          this.rememberExpiry(sid, pttl);
          callback(undefined, { ...data, cookie: this.rebuildCookie(sid) } as SessionData);
        } else if (json === null && leftovers === 0) {
          callback(undefined, null);
        } else {
          // Half-deleted (section 9), malformed (section 15) or past its deadline (section 11): no session,
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

  /** Section 9: the data's JSON and PTTL; when the data key is missing, how many of its siblings are left over. */
  private readThreeKeys(sid: string): Promise<[string | null, number, number, string | null]> {
    const keys = this.keys(sid);
    return this.scripts.sharedSessionRead(
      keys.data,
      keys.signature,
      keys.groups,
      this.controlled ? this.notBeforeKey : keys.data,
    ) as Promise<[string | null, number, number, string | null]>;
  }

  /** Section 15: the same from the one key; a malformed value is no session, but a leftover to delete (as section 9's). */
  private async readCompact(sid: string): Promise<[string | null, number, number, null]> {
    const [value, pttl] = (await this.scripts.sharedSessionCompactRead(this.compactKey(sid))) as [string | null, number];
    const session = parseCompactValue(value);
    if (value !== null && !session) this.logger.warn(`session ${sid.slice(0, 8)}…: malformed value; treated as no session`);
    return [session ? session.json : null, pttl, value !== null && !session ? 1 : 0, null];
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
    const owner = userIdOf(data, this.userIdField);
    // v1: the index is written by the write script itself; cluster and compact (sections 14.1, 15): first, in its own slot.
    const user = this.controlled ? owner : undefined;
    // Section 12: the idle timeout, cut at the deadline; whole seconds (the v1
    // layout's EX), rounded up. A session past its deadline is not written.
    const ttlMs = keyTtlMs(sid, idleSecondsOf(data, this.idleSeconds));
    if (ttlMs <= 0) return;
    const now = Date.now();
    // Section 14.1: the index first; section 14.3: the mark checked before an update (the v1 script checks it itself).
    const [indexed, mark] = await Promise.all([
      !this.controlled && owner !== undefined ? this.indexSession(owner, sid, now, Math.ceil(ttlMs / 1000) * 1000) : 0,
      !this.controlled && mode !== 'create' ? this.client.get(this.notBeforeKey) : null,
    ]);
    if (refusedByNotBefore(sid, mark)) return; // ended by the mark: the update is dropped, as 'gone'
    const ttl = Math.ceil(ttlMs / 1000);
    const reply = (await (this.compact
      ? this.writeCompact(sid, mode, data, ttl, mode === 'update' ? read! : [])
      : this.writeThreeKeys(sid, mode, data, user, now, ttl, mode === 'update' ? read! : groups))) as string | string[];
    if (reply === 'ok' || reply === 'gone') {
      // 'gone': ended after this request read it; the write is dropped, the session stays ended.
      if (reply === 'ok') this.readGroups.set(session, groups);
      if (reply === 'ok' && mode === 'create' && this.maxSessionsPerUser > 0 && indexed > this.maxSessionsPerUser) {
        // Section 14.1: after the login, not in its script; a failure leaves the user above the limit until the next login.
        await this.endOldest(owner!, sid).catch((err: Error) =>
          this.logger.warn(`sessions above maxSessionsPerUser not ended yet (${err.message}); the next login tries again`),
        );
      }
      return;
    }
    // The groups changed after the read: they win. Adopt them and write the rest again.
    if (attempts <= 1) throw new Error('session groups keep changing; write abandoned');
    const stored = [...reply].sort();
    (session as { groups?: string[] }).groups = stored;
    this.readGroups.set(session, stored);
    await this.write(sid, session, { ...data, groups: stored }, stored, attempts - 1);
  }

  /** Section 8 on the v1 and cluster layouts; `groups`: to write (create, update-groups) or as read (update). */
  private writeThreeKeys(
    sid: string,
    mode: string,
    data: Record<string, unknown>,
    user: string | undefined,
    now: number,
    ttl: number,
    groups: string[],
  ): Promise<unknown> {
    const keys = this.keys(sid);
    return this.scripts.sharedSessionWrite(
      keys.data,
      keys.signature,
      keys.groups,
      user === undefined ? keys.data : this.userIndexKey(user),
      // On the cluster layout (checked before, section 14.3) the data key stands
      // in for the mark: it never reads as a number, so no mark.
      this.controlled ? this.notBeforeKey : keys.data,
      mode,
      JSON.stringify(data),
      this.signer.signature(sid),
      ttl,
      this.invalidationChannel,
      sid,
      user === undefined ? '' : '1',
      now,
      this.maxSessionsPerUser,
      this.keyPrefix,
      ...groups,
    );
  }

  /** Section 8 on the compact layout's one key (section 15); `read`: the groups as read, for an update. */
  private writeCompact(sid: string, mode: string, data: Record<string, unknown>, ttl: number, read: string[]): Promise<unknown> {
    const value = compactValue(this.signer.signature(sid), JSON.stringify(data));
    return this.scripts.sharedSessionCompactWrite(this.compactKey(sid), mode, value, ttl, this.invalidationChannel, sid, ...read);
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
    const ttl = keyTtlMs(sid, idleSecondsOf(session, this.idleSeconds), now);
    // Concurrent requests of one session see the refresh at once, not after their own round trip.
    this.rememberExpiry(sid, ttl);
    const multi = this.client.multi();
    // Section 15: the compact layout's one key; else section 3's three.
    for (const key of this.sessionKeyList(sid)) multi.pexpire(key, ttl);
    // Section 13.1: the index keeps the session's new expiry, so that pruning never drops a live session;
    // the index itself only ever lives longer (GT), never shorter than another of its sessions.
    const user = userIdOf(session as Record<string, unknown>, this.userIdField);
    if (user !== undefined && this.controlled) {
      const index = this.userIndexKey(user);
      multi.zadd(index, 'XX', 'GT', now + ttl, sid).pexpire(index, ttl, 'GT');
    }
    // Section 14.1: on the cluster and compact layouts, the index (another slot) after the session's keys. Its
    // failure leaves the member's old score (the next write or refresh raises it), not a failed touch.
    const cluster = user !== undefined && !this.controlled;
    const raise = (result: unknown) =>
      cluster
        ? this.indexSession(user, sid, now, ttl).then(
            () => result,
            () => result,
          )
        : result;
    this.run(multi.exec().then(raise), callback);
  }

  /** Section 14.1: the session's member in its user's index, in the index's slot. Answers how many members it holds. */
  private async indexSession(userId: string, sid: string, now: number, ttlMs: number): Promise<number> {
    return (await this.scripts.sharedSessionIndex(this.userIndexKey(userId), now, now + ttlMs, sid)) as number;
  }

  /**
   * Section 14.1: the user's indexed sessions whose data key exists, each read
   * in its own slot (the index first, then one MULTI per session).
   */
  async indexedSessions(userId: string): Promise<IndexedSession[]> {
    const members = await this.client.zrange(this.userIndexKey(userId), 0, -1);
    const read = await Promise.all(members.map((sid) => this.readJson(sid)));
    return read.filter((s): s is IndexedSession => s !== null);
  }

  /**
   * One session's JSON and PTTL, in its slot (one MULTI); null when its data
   * key is gone or (section 15) its value is malformed: no session.
   */
  async readJson(sid: string): Promise<IndexedSession | null> {
    const key = this.compact ? this.compactKey(sid) : this.keys(sid).data;
    const result = await this.client.multi().get(key).pttl(key).exec();
    const failed = result?.find(([err]) => err);
    if (!result || failed) throw failed?.[0] ?? new Error('Redis transaction aborted');
    const value = result[0][1] as string | null;
    const json = this.compact ? (parseCompactValue(value)?.json ?? null) : value;
    return json === null ? null : { sid, json, pttl: Number(result[1][1]) };
  }

  /**
   * Ends sessions of a user and takes those that existed out of the index
   * (section 14.1: each session in its own slot, the index after; a member
   * whose session is not there yet, a login racing this, stays). Answers how
   * many existed.
   */
  async endUserSessions(userId: string, sids: string[]): Promise<number> {
    const existed = await Promise.all(sids.map((sid) => this.end(sid)));
    const ended = sids.filter((_, i) => existed[i]);
    if (ended.length > 0) await this.client.zrem(this.userIndexKey(userId), ...ended);
    return ended.length;
  }

  /** Section 14.1: after a create that took the user above the limit, the oldest live sessions (by issue time) end. */
  private async endOldest(userId: string, created: string): Promise<void> {
    const live = (await this.indexedSessions(userId)).map((s) => s.sid).sort(byIssueTime);
    const excess = live.length - this.maxSessionsPerUser;
    if (excess <= 0) return;
    await this.endUserSessions(userId, live.filter((sid) => sid !== created).slice(0, excess));
  }

  destroy(sid: string, callback?: Callback): void {
    this.expiries.delete(sid);
    this.run(this.end(sid), callback);
  }

  /** Ends a session: its keys, its member in its user's index, the notice. True when it existed. */
  async end(sid: string): Promise<boolean> {
    this.expiries.delete(sid);
    if (this.compact) {
      // Section 15: the one key; section 14.1: its user's member after it, in the index's slot.
      const user = (await this.scripts.sharedSessionCompactDestroy(
        this.compactKey(sid),
        this.invalidationChannel,
        sid,
        this.userIdField,
      )) as string | null;
      const owner = typeof user === 'string' ? userIdOf({ user }, 'user') : undefined;
      if (owner !== undefined) await this.client.zrem(this.userIndexKey(owner), sid);
      return user !== null;
    }
    const keys = this.keys(sid);
    const existed = await this.scripts.sharedSessionDestroy(
      keys.data,
      keys.signature,
      keys.groups,
      this.invalidationChannel,
      sid,
      this.keyPrefix,
      this.controlled ? this.userIdField : '',
    );
    return existed === 1;
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

  /** The scripts, defined on the client in the constructor (ioredis sends EVALSHA, EVAL once on NOSCRIPT). */
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
  sharedSessionRead(data: string, signature: string, groups: string, notBefore: string): Promise<unknown>;
  sharedSessionWrite(
    data: string,
    signature: string,
    groups: string,
    user: string,
    notBefore: string,
    ...args: (string | number)[]
  ): Promise<unknown>;
  sharedSessionDestroy(data: string, signature: string, groups: string, ...args: string[]): Promise<unknown>;
  sharedSessionIndex(index: string, ...args: (string | number)[]): Promise<unknown>;
  sharedSessionCompactRead(key: string): Promise<unknown>;
  sharedSessionCompactWrite(key: string, ...args: (string | number)[]): Promise<unknown>;
  sharedSessionCompactDestroy(key: string, ...args: string[]): Promise<unknown>;
}

/** Oldest first by issue time (section 11; an untimed id counts as 0), then by id: the order of the v1 write script. */
function byIssueTime(a: string, b: string): number {
  const ia = sessionIdTimes(a)?.issuedAt ?? 0;
  const ib = sessionIdTimes(b)?.issuedAt ?? 0;
  return ia !== ib ? ia - ib : a < b ? -1 : a > b ? 1 : 0;
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

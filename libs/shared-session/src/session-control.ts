import type { SharedSessionRedis as Redis } from './redis-client';
import type { FlaskRedisSessionStore, IndexedSession } from './flask-redis-session.store';
import { RevocationAcknowledgements, RevocationConfirmation } from './revocation-acknowledgements';
import { sessionIdTimes } from './session-id';
import { checkGroupId, checkSessionId, checkUserId } from './session-control.keys';
import { SIGNATURE_LENGTH } from './compact-value';

/**
 * PROTOCOL.md section 13: acting on users and groups from outside a request.
 * Each change is one script, so Redis applies it whole or not at all, and
 * publishes what nginx must forget in the same step. On the cluster and
 * compact layouts (sections 14.1 and 15) a change to a user's sessions is one
 * such script per session, in that session's slot: atomic per session, not
 * across them.
 * Used by SharedSessionService (which turns Redis failures into 503s) and by
 * the operator CLI.
 */

/** One live session of a user, as `listSessions` gives it. */
export interface UserSession {
  /** The session id (without the cookie's signature it opens nothing). */
  sessionId: string;
  /** When it was issued (from its timed id, section 11); null for an untimed id. */
  createdAt: Date | null;
  /** When a request last refreshed it, to within `touchAfterSeconds` (its keys' expiry minus `ttlSeconds`). */
  lastSeenAt: Date;
  /** When its keys expire unless refreshed. */
  expiresAt: Date;
  groups: string[];
  /** The client's IP address at login, when `loginMetadata.ip` was on. */
  ip?: string;
  /** The client's User-Agent at login, when `loginMetadata.userAgent` was on. */
  userAgent?: string;
}

/** Synchronous revocation, per call: wait until every subscribed nginx has applied the change. */
export interface ControlOptions {
  /** Wait for the readers' acknowledgements (section 13.4). Default: the module's `revocation.wait`. */
  wait?: boolean;
  /** At most this long (ms). Default: the module's `revocation.timeoutMs`. */
  timeoutMs?: number;
}

/** What a change did, and with `wait`, what the readers said. */
export interface ControlResult {
  /** Sessions changed or ended (for `invalidateGroupCache` and `revokeIssuedBefore`: 0). */
  sessions: number;
  /** With `wait`: acknowledged / expected readers, and whether the wait timed out. */
  confirmation?: RevocationConfirmation;
}

/** The reserved key of the session's JSON that holds what `loginMetadata` records (section 13.1). */
export const LOGIN_METADATA_FIELD = '_login';

/**
 * KEYS[1]: the user's index. ARGV: now, prefix. Each member whose data key
 * exists: sid, data, pttl (by existence, not by score: a session that nginx
 * kept alive may have outlived the score its last write gave it).
 */
const LIST_SCRIPT = `
local out = {}
for _, sid in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  local key = ARGV[2] .. ':data:' .. sid
  local data = redis.call('GET', key)
  if data then
    out[#out + 1] = sid
    out[#out + 1] = data
    out[#out + 1] = redis.call('PTTL', key)
  end
end
return out`;

/** KEYS[1]: the user's index. ARGV: channel, prefix, the ids to keep. Ends every other session; answers how many existed. */
const REVOKE_USER_SCRIPT = `
local keep = {}
for i = 3, #ARGV do keep[ARGV[i]] = true end
local p, n = ARGV[2], 0
for _, sid in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  if not keep[sid] then
    if redis.call('DEL', p .. ':data:' .. sid, p .. ':signature:' .. sid, p .. ':groups:' .. sid) > 0 then n = n + 1 end
    redis.call('ZREM', KEYS[1], sid)
    redis.call('PUBLISH', ARGV[1], sid)
  end
end
return n`;

/**
 * Section 13.5: new groups for some sessions, all or none. KEYS: data and
 * groups key of each session. ARGV: channel, then per session: sid, the data
 * as read, the new data, the number of groups, the groups. 'conflict' (and
 * nothing written) when a data key changed since it was read; a session
 * ended since is skipped. Answers how many were changed.
 */
const SET_GROUPS_SCRIPT = `
local sessions, a = {}, 2
for k = 1, #KEYS, 2 do
  local n = tonumber(ARGV[a + 3])
  local s = { data = KEYS[k], groups = KEYS[k + 1], sid = ARGV[a], new = ARGV[a + 2], list = {} }
  for i = 1, n do s.list[i] = ARGV[a + 3 + i] end
  local current = redis.call('GET', s.data)
  if current and current ~= ARGV[a + 1] then return 'conflict' end
  s.alive = current ~= false
  sessions[#sessions + 1] = s
  a = a + 4 + n
end
local changed = 0
for _, s in ipairs(sessions) do
  if s.alive then
    local pttl = redis.call('PTTL', s.data)
    redis.call('SET', s.data, s.new, 'KEEPTTL')
    redis.call('DEL', s.groups)
    if #s.list > 0 then
      redis.call('SADD', s.groups, unpack(s.list))
      if pttl > 0 then redis.call('PEXPIRE', s.groups, pttl) end
    end
    redis.call('PUBLISH', ARGV[1], s.sid)
    changed = changed + 1
  end
end
return changed`;

/**
 * Section 13.5 for one session of the compact layout (section 15). KEYS[1]:
 * its key. ARGV: channel, sid, its JSON as read, the new JSON. 'conflict'
 * (nothing written) when its JSON changed since it was read; 0 when it is
 * gone; else the signature kept, the JSON replaced, the ttl kept, the
 * notice, and 1.
 */
const COMPACT_SET_GROUPS_SCRIPT = `
local value = redis.call('GET', KEYS[1])
if not value then return 0 end
if string.sub(value, ${SIGNATURE_LENGTH + 1}) ~= ARGV[3] then return 'conflict' end
redis.call('SET', KEYS[1], string.sub(value, 1, ${SIGNATURE_LENGTH}) .. ARGV[4], 'KEEPTTL')
redis.call('PUBLISH', ARGV[1], ARGV[2])
return 1`;

/** KEYS[1]: the mark. ARGV: ms, channel. Keeps the greater value, publishes it, answers it. */
const NOT_BEFORE_SCRIPT = `
local current = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
local ms = tonumber(ARGV[1])
if ms > current then
  redis.call('SET', KEYS[1], ARGV[1])
  current = ms
end
local text = string.format('%d', current)
redis.call('PUBLISH', ARGV[2], '!not-before ' .. text)
return text`;

/** KEYS[1]: the group's generation. ARGV: channel, group. */
const GENERATION_SCRIPT = `
local n = redis.call('INCR', KEYS[1])
redis.call('PUBLISH', ARGV[1], '!generation ' .. n .. ' ' .. ARGV[2])
return n`;

/** How many times a group change reads again after a concurrent write before it gives up. */
const GROUP_CHANGE_ATTEMPTS = 10;
/** A mark a little ahead of this clock is accepted (clock skew between app servers), not more. */
const MAX_MARK_AHEAD_MS = 1000;

export interface SessionControlOptions {
  store: FlaskRedisSessionStore;
  client: Redis;
  ttlSeconds: number;
  /** Defaults for synchronous revocation. */
  revocation?: { wait: boolean; timeoutMs: number };
}

export class SessionControl {
  private readonly store: FlaskRedisSessionStore;
  private readonly client: Redis;
  private readonly ttlMs: number;
  private readonly revocation: { wait: boolean; timeoutMs: number };
  private readonly acks: RevocationAcknowledgements;

  constructor(options: SessionControlOptions) {
    this.store = options.store;
    this.client = options.client;
    this.ttlMs = options.ttlSeconds * 1000;
    this.revocation = options.revocation ?? { wait: false, timeoutMs: 500 };
    this.acks = new RevocationAcknowledgements(this.client, this.store.invalidationChannel, `${this.store.prefix}:ack`);
    const scripts: [string, number, string][] = [
      ['sharedSessionList', 1, LIST_SCRIPT],
      ['sharedSessionRevokeUser', 1, REVOKE_USER_SCRIPT],
      ['sharedSessionSetGroups', 0, SET_GROUPS_SCRIPT],
      ['sharedSessionCompactSetGroups', 1, COMPACT_SET_GROUPS_SCRIPT],
      ['sharedSessionNotBefore', 1, NOT_BEFORE_SCRIPT],
      ['sharedSessionGeneration', 1, GENERATION_SCRIPT],
    ];
    for (const [name, numberOfKeys, lua] of scripts) {
      // numberOfKeys 0: given with each call (the group change has two keys per session).
      this.client.defineCommand(name, numberOfKeys === 0 ? { lua } : { numberOfKeys, lua });
    }
  }

  /** The user's live sessions, oldest first; none for an unknown user. */
  async listSessions(userId: string): Promise<UserSession[]> {
    checkUserId('listSessions', userId);
    const now = Date.now();
    const sessions: UserSession[] = [];
    for (const { sid: sessionId, json, pttl } of await this.liveSessions(userId, now)) {
      const data = parseObject(json);
      const expiresAt = pttl > 0 ? now + pttl : now;
      const login = data[LOGIN_METADATA_FIELD] as { ip?: unknown; userAgent?: unknown } | undefined;
      const issued = sessionIdTimes(sessionId)?.issuedAt;
      sessions.push({
        sessionId,
        createdAt: issued === undefined ? null : new Date(issued),
        // Its keys' expiry minus its idle timeout (section 12's _idle, else the module's).
        lastSeenAt: new Date(Math.min(now, expiresAt - (Number(data._idle) > 0 ? Number(data._idle) * 1000 : this.ttlMs))),
        expiresAt: new Date(expiresAt),
        groups: Array.isArray(data.groups) ? data.groups.filter((g): g is string => typeof g === 'string') : [],
        ...(typeof login?.ip === 'string' ? { ip: login.ip } : {}),
        ...(typeof login?.userAgent === 'string' ? { userAgent: login.userAgent } : {}),
      });
    }
    return sessions.sort((a, b) => (a.createdAt?.getTime() ?? 0) - (b.createdAt?.getTime() ?? 0));
  }

  /** Ends one session (whoever's it is). `sessions`: 1 when it existed. */
  async revokeSession(sessionId: string, options: ControlOptions = {}): Promise<ControlResult> {
    checkSessionId('revokeSession', sessionId);
    await this.prepare(options);
    const existed = await this.store.end(sessionId);
    return this.result(existed ? 1 : 0, options);
  }

  /** Ends every live session of the user, but those in `except`. */
  async revokeUser(userId: string, options: ControlOptions & { except?: string | string[] } = {}): Promise<ControlResult> {
    checkUserId('revokeUser', userId);
    const except = options.except === undefined ? [] : Array.isArray(options.except) ? options.except : [options.except];
    except.forEach((sid, i) => checkSessionId('revokeUser', sid, `except[${i}]`));
    await this.prepare(options);
    if (!this.store.controlled) {
      // Section 14.1: every member but `except`, each ended in its own slot, then taken out of the index.
      const members = await this.client.zrange(this.store.userIndexKey(userId), 0, -1);
      const keep = new Set(except);
      return this.result(
        await this.store.endUserSessions(
          userId,
          members.filter((sid) => !keep.has(sid)),
        ),
        options,
      );
    }
    const n = (await this.scripts.sharedSessionRevokeUser(
      this.store.userIndexKey(userId),
      this.store.invalidationChannel,
      this.store.prefix,
      ...except,
    )) as number;
    return this.result(n, options);
  }

  /** Sets the not-before mark: every session issued before `date` has ended, at nginx too. */
  async revokeIssuedBefore(date: Date | number, options: ControlOptions = {}): Promise<ControlResult & { notBefore: Date }> {
    const ms = date instanceof Date ? date.getTime() : date;
    if (typeof ms !== 'number' || !Number.isInteger(ms) || ms <= 0 || ms > Date.now() + MAX_MARK_AHEAD_MS) {
      throw new TypeError('revokeIssuedBefore: date must be a valid date, not in the future');
    }
    await this.prepare(options);
    const stored = (await this.scripts.sharedSessionNotBefore(this.store.notBeforeKey, ms, this.store.invalidationChannel)) as string;
    return { ...(await this.result(0, options)), notBefore: new Date(Number(stored)) };
  }

  /** Replaces the groups of every live session of the user. */
  setUserGroups(userId: string, groups: string[], options: ControlOptions = {}): Promise<ControlResult> {
    checkUserId('setUserGroups', userId);
    if (!Array.isArray(groups)) throw new TypeError('setUserGroups: groups must be an array of group ids');
    groups.forEach((g, i) => checkGroupId('setUserGroups', g, `groups[${i}]`));
    const wanted = [...new Set(groups)];
    return this.changeGroups(userId, () => [...wanted], options);
  }

  /** Adds `group` to every live session of the user. */
  addUserToGroup(userId: string, group: string, options: ControlOptions = {}): Promise<ControlResult> {
    checkUserId('addUserToGroup', userId);
    checkGroupId('addUserToGroup', group);
    return this.changeGroups(userId, (current) => (current.includes(group) ? current : [...current, group]), options);
  }

  /** Removes `group` from every live session of the user. */
  removeUserFromGroup(userId: string, group: string, options: ControlOptions = {}): Promise<ControlResult> {
    checkUserId('removeUserFromGroup', userId);
    checkGroupId('removeUserFromGroup', group);
    return this.changeGroups(userId, (current) => current.filter((g) => g !== group), options);
  }

  /** A new cache generation for the group: nginx's cached copies for it are no longer served. `sessions`: 0. */
  async invalidateGroupCache(group: string, options: ControlOptions = {}): Promise<ControlResult & { generation: number }> {
    checkGroupId('invalidateGroupCache', group);
    await this.prepare(options);
    const n = (await this.scripts.sharedSessionGeneration(
      `${this.store.prefix}:group-generation:${group}`,
      this.store.invalidationChannel,
      group,
    )) as number;
    return { ...(await this.result(0, options)), generation: n };
  }

  /** Section 13.4's barrier after a change made elsewhere (a logout, one session's groups), with the module's `revocation` defaults. */
  async confirmRevocation(): Promise<RevocationConfirmation | undefined> {
    return (await this.result(0, {})).confirmation;
  }

  /** Opens the acknowledgement channel now (a synchronous call then does not pay for it). */
  prepareSynchronousRevocation(): Promise<void> {
    return this.acks.ready();
  }

  async close(): Promise<void> {
    await this.acks.close();
  }

  /** Section 13.5: read, compute, apply all or none; again when another write came between. */
  private async changeGroups(userId: string, change: (current: string[]) => string[], options: ControlOptions): Promise<ControlResult> {
    await this.prepare(options);
    if (!this.store.controlled) {
      // Section 14.1: one script per session, in its slot; all or none for each session, not across them.
      const changed = await Promise.all((await this.store.indexedSessions(userId)).map((s) => this.changeSessionGroups(s, change)));
      return this.result(changed.filter(Boolean).length, options);
    }
    for (let attempt = 1; attempt <= GROUP_CHANGE_ATTEMPTS; attempt++) {
      const flat = (await this.scripts.sharedSessionList(this.store.userIndexKey(userId), Date.now(), this.store.prefix)) as string[];
      const keys: string[] = [];
      const args: (string | number)[] = [this.store.invalidationChannel];
      for (let i = 0; i < flat.length; i += 3) {
        const sid = String(flat[i]);
        const read = String(flat[i + 1]);
        const data = parseObject(read);
        const current = Array.isArray(data.groups) ? data.groups.filter((g): g is string => typeof g === 'string') : [];
        const groups = change(current);
        const k = this.store.keys(sid);
        keys.push(k.data, k.groups);
        args.push(sid, read, JSON.stringify({ ...data, groups }), groups.length, ...groups);
      }
      if (keys.length === 0) return this.result(0, options);
      const reply = (await this.scripts.sharedSessionSetGroups(keys.length, ...keys, ...args)) as number | string;
      if (reply !== 'conflict') return this.result(Number(reply), options);
    }
    throw new Error(`the sessions of this user keep changing; group change abandoned after ${GROUP_CHANGE_ATTEMPTS} attempts`);
  }

  /** Section 14.1: one session's groups, read again and computed again when a request saved it meanwhile. True when changed. */
  private async changeSessionGroups(session: IndexedSession, change: (current: string[]) => string[]): Promise<boolean> {
    const { sid } = session;
    let read: string | null = session.json;
    for (let attempt = 1; attempt <= GROUP_CHANGE_ATTEMPTS && read !== null; attempt++) {
      const data = parseObject(read);
      const current = Array.isArray(data.groups) ? data.groups.filter((g): g is string => typeof g === 'string') : [];
      const groups = change(current);
      const json = JSON.stringify({ ...data, groups });
      const channel = this.store.invalidationChannel;
      let reply: unknown;
      if (this.store.compact) {
        // Section 15: the one key's JSON replaced, its signature and ttl kept.
        reply = await this.scripts.sharedSessionCompactSetGroups(this.store.compactKey(sid), channel, sid, read, json);
      } else {
        const k = this.store.keys(sid);
        reply = await this.scripts.sharedSessionSetGroups(2, k.data, k.groups, channel, sid, read, json, groups.length, ...groups);
      }
      if (reply !== 'conflict') return Number(reply) > 0;
      read = (await this.store.readJson(sid))?.json ?? null;
    }
    if (read === null) return false; // ended meanwhile
    throw new Error(`session ${session.sid.slice(0, 8)}… keeps changing; group change abandoned after ${GROUP_CHANGE_ATTEMPTS} attempts`);
  }

  /** The user's indexed sessions whose data exists: one script on v1, one read per session on the cluster layout (section 14.1). */
  private async liveSessions(userId: string, now: number): Promise<IndexedSession[]> {
    if (!this.store.controlled) return this.store.indexedSessions(userId);
    const flat = (await this.scripts.sharedSessionList(this.store.userIndexKey(userId), now, this.store.prefix)) as (string | number)[];
    const sessions: IndexedSession[] = [];
    for (let i = 0; i < flat.length; i += 3) sessions.push({ sid: String(flat[i]), json: String(flat[i + 1]), pttl: Number(flat[i + 2]) });
    return sessions;
  }

  private wants(options: ControlOptions): boolean {
    return options.wait ?? this.revocation.wait;
  }

  /** Before a change that waits: checks the timeout and opens the acknowledgement channel (a failure then changes nothing). */
  private async prepare(options: ControlOptions): Promise<void> {
    if (!this.wants(options)) return;
    const timeoutMs = options.timeoutMs ?? this.revocation.timeoutMs;
    if (typeof timeoutMs !== 'number' || !(timeoutMs > 0)) throw new TypeError('timeoutMs must be a positive number of milliseconds');
    await this.acks.ready();
  }

  /** After a change: with `wait`, the readers' acknowledgements (a failure to ask is reported as a timeout: the change is made). */
  private async result(sessions: number, options: ControlOptions): Promise<ControlResult> {
    if (!this.wants(options)) return { sessions };
    const timeoutMs = options.timeoutMs ?? this.revocation.timeoutMs;
    const confirmation = await this.acks.confirm(timeoutMs).catch(() => ({ acknowledged: 0, expected: 0, timedOut: true }));
    return { sessions, confirmation };
  }

  private get scripts(): ControlScripts {
    return this.client as unknown as ControlScripts;
  }
}

type Script = (...args: (string | number)[]) => Promise<unknown>;
interface ControlScripts {
  sharedSessionList: Script;
  sharedSessionRevokeUser: Script;
  sharedSessionSetGroups: Script;
  sharedSessionCompactSetGroups: Script;
  sharedSessionNotBefore: Script;
  sharedSessionGeneration: Script;
}

function parseObject(json: string): Record<string, unknown> {
  try {
    const value: unknown = JSON.parse(json);
    if (value && typeof value === 'object' && !Array.isArray(value)) return value as Record<string, unknown>;
  } catch {
    // not a JSON object: as section 3 says, an empty session
  }
  return {};
}

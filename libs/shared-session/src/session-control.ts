import type { SharedSessionRedis as Redis } from './redis-client';
import type { GroupChange } from './layouts/session-layout';
import { RevocationAcknowledgements, RevocationConfirmation } from './revocation-acknowledgements';
import { sessionIdTimes } from './session-id';
import { parseSessionJson } from './session-json';
import { checkGroupId, checkSessionId, checkUserId } from './session-control.keys';
import type { SessionRepository } from './session-repository';
import type { EventFacts, SessionEvents, SharedSessionEventName } from './shared-session.events';
import type { SessionMetrics } from './shared-session.metrics';

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

/** A mark a little ahead of this clock is accepted (clock skew between app servers), not more. */
const MAX_MARK_AHEAD_MS = 1000;

export interface SessionControlOptions {
  /** The sessions, on the layout chosen for the store too. */
  sessions: SessionRepository;
  client: Redis;
  ttlSeconds: number;
  /** Defaults for synchronous revocation. */
  revocation?: { wait: boolean; timeoutMs: number };
  /** Where each change reports itself (PROTOCOL.md section 16). Default: nowhere. */
  events?: SessionEvents;
  /** Counts the acknowledgements and their lag (default: nothing). */
  metrics?: SessionMetrics;
}

export class SessionControl {
  private readonly sessions: SessionRepository;
  private readonly client: Redis;
  private readonly ttlMs: number;
  private readonly revocation: { wait: boolean; timeoutMs: number };
  private readonly acks: RevocationAcknowledgements;
  private readonly events?: SessionEvents;

  constructor(options: SessionControlOptions) {
    this.sessions = options.sessions;
    this.client = options.client;
    this.ttlMs = options.ttlSeconds * 1000;
    this.revocation = options.revocation ?? { wait: false, timeoutMs: 500 };
    this.events = options.events;
    this.acks = new RevocationAcknowledgements(this.client, this.sessions.channel, this.sessions.ackChannel, options.metrics);
  }

  /** The user's live sessions, oldest first; none for an unknown user. */
  async listSessions(userId: string): Promise<UserSession[]> {
    checkUserId('listSessions', userId);
    const now = Date.now();
    const sessions: UserSession[] = [];
    for (const { sid: sessionId, json, pttl } of await this.sessions.liveSessions(userId)) {
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
  async revokeSession(sessionId: string, options: ControlOptions = {}, op = 'revokeSession'): Promise<ControlResult> {
    checkSessionId('revokeSession', sessionId);
    await this.prepare(options);
    const existed = await this.sessions.end(sessionId);
    return this.reported('revocation', op, { sessionId }, await this.result(existed ? 1 : 0, options));
  }

  /** Ends every live session of the user, but those in `except`. */
  async revokeUser(
    userId: string,
    options: ControlOptions & { except?: string | string[] } = {},
    op = 'revokeUser',
  ): Promise<ControlResult> {
    checkUserId('revokeUser', userId);
    const except = options.except === undefined ? [] : Array.isArray(options.except) ? options.except : [options.except];
    except.forEach((sid, i) => checkSessionId('revokeUser', sid, `except[${i}]`));
    await this.prepare(options);
    const n = await this.sessions.revokeUser(userId, except);
    return this.reported('revocation', op, { user: userId }, await this.result(n, options));
  }

  /** Sets the not-before mark: every session issued before `date` has ended, at nginx too. */
  async revokeIssuedBefore(date: Date | number, options: ControlOptions = {}): Promise<ControlResult & { notBefore: Date }> {
    const ms = date instanceof Date ? date.getTime() : date;
    if (typeof ms !== 'number' || !Number.isInteger(ms) || ms <= 0 || ms > Date.now() + MAX_MARK_AHEAD_MS) {
      throw new TypeError('revokeIssuedBefore: date must be a valid date, not in the future');
    }
    await this.prepare(options);
    const stored = await this.sessions.moveNotBefore(ms);
    return { ...this.reported('not_before', 'revokeIssuedBefore', {}, await this.result(0, options)), notBefore: new Date(stored) };
  }

  /** Replaces the groups of every live session of the user. */
  setUserGroups(userId: string, groups: string[], options: ControlOptions = {}): Promise<ControlResult> {
    checkUserId('setUserGroups', userId);
    if (!Array.isArray(groups)) throw new TypeError('setUserGroups: groups must be an array of group ids');
    groups.forEach((g, i) => checkGroupId('setUserGroups', g, `groups[${i}]`));
    const wanted = [...new Set(groups)];
    return this.changeGroups('setUserGroups', userId, () => [...wanted], options);
  }

  /** Adds `group` to every live session of the user. */
  addUserToGroup(userId: string, group: string, options: ControlOptions = {}): Promise<ControlResult> {
    checkUserId('addUserToGroup', userId);
    checkGroupId('addUserToGroup', group);
    return this.changeGroups('addUserToGroup', userId, (current) => (current.includes(group) ? current : [...current, group]), options);
  }

  /** Removes `group` from every live session of the user. */
  removeUserFromGroup(userId: string, group: string, options: ControlOptions = {}): Promise<ControlResult> {
    checkUserId('removeUserFromGroup', userId);
    checkGroupId('removeUserFromGroup', group);
    return this.changeGroups('removeUserFromGroup', userId, (current) => current.filter((g) => g !== group), options);
  }

  /** A new cache generation for the group: nginx's cached copies for it are no longer served. `sessions`: 0. */
  async invalidateGroupCache(group: string, options: ControlOptions = {}): Promise<ControlResult & { generation: number }> {
    checkGroupId('invalidateGroupCache', group);
    await this.prepare(options);
    const n = await this.sessions.newGeneration(group);
    return { ...this.reported('purge', 'invalidateGroupCache', {}, await this.result(0, options)), generation: n };
  }

  /** Section 13.4's barrier after a change made elsewhere (a logout, one session's groups), with the module's `revocation` defaults. */
  async confirmRevocation(): Promise<RevocationConfirmation | undefined> {
    return (await this.result(0, {})).confirmation;
  }

  /** Opens the acknowledgement channel now (a synchronous call then does not pay for it). */
  prepareSynchronousRevocation(): Promise<void> {
    return this.acks.ready();
  }

  /**
   * A barrier alone (`!ack <id>`, no change before it): how long the readers
   * take to reach it, for the revocation lag metric. Throws when Redis fails.
   */
  barrier(): Promise<RevocationConfirmation> {
    return this.acks.confirm(this.revocation.timeoutMs);
  }

  /** The acknowledgement subscriber's state, for the health indicator. */
  get acknowledgementSubscriber(): 'idle' | 'up' | 'down' {
    return this.acks.subscriberState;
  }

  async close(): Promise<void> {
    await this.acks.close();
  }

  /**
   * Section 13.5: read, compute, apply; again when another write came
   * between. All or none across the user's sessions on the v1 layout, per
   * session on the others (section 14.1).
   */
  private async changeGroups(
    op: string,
    userId: string,
    change: (current: string[]) => string[],
    options: ControlOptions,
  ): Promise<ControlResult> {
    await this.prepare(options);
    const changeSession: GroupChange = (read) => {
      const data = parseObject(read);
      const current = Array.isArray(data.groups) ? data.groups.filter((g): g is string => typeof g === 'string') : [];
      const groups = change(current);
      return { json: JSON.stringify({ ...data, groups }), groups };
    };
    const n = await this.sessions.changeGroups(userId, changeSession);
    return this.reported('group_change', op, { user: userId }, await this.result(n, options));
  }

  /** The change's event (and a `wait_timeout` one when its wait timed out); the result unchanged. */
  private reported<R extends ControlResult>(event: SharedSessionEventName, op: string, facts: EventFacts, result: R): R {
    this.events?.report(event, op, { ...facts, sessions: result.sessions, confirmation: result.confirmation });
    return result;
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
}

/** Not a JSON object within section 15.1's bounds: as section 3 says, an empty session. */
function parseObject(json: string): Record<string, unknown> {
  return parseSessionJson(json) ?? {};
}

import type { Logger } from '@nestjs/common';
import type { SharedSessionRedis } from '../redis-connection';

/**
 * The one seam between the session code and Redis: a key layout (PROTOCOL.md
 * section 3's `v1`, section 14's `cluster`, section 15's `compact`) is one
 * object that names the keys and runs every operation on them. It is chosen
 * once (create-session-layout.ts); nothing above it asks which one it is.
 */

/** The key layouts: section 3 (`v1`), section 14 (`cluster`), section 15 (`compact`). */
export type KeyLayout = 'v1' | 'cluster' | 'compact';

/** The three keys of one session (PROTOCOL.md section 3). */
export interface SessionKeys {
  data: string;
  signature: string;
  groups: string;
}

/** One session as a reader of the per-user index finds it: id, JSON, remaining time to live (ms). */
export interface IndexedSession {
  sid: string;
  json: string;
  pttl: number;
}

/**
 * A session read for a request: its JSON (null: none), its remaining time to
 * live (ms), how many of its keys are left over when it is no session (a
 * half-deleted one, section 9; a malformed one, section 15), and the
 * not-before mark (section 13.2) as Redis holds it.
 */
export type SessionRead = [json: string | null, pttl: number, leftovers: number, mark: string | null];

/** Section 8's modes: a new session, an update that keeps the groups set, an update that rewrites it. */
export type WriteMode = 'create' | 'update' | 'update-groups';

/** One section 8 write. */
export interface SessionWrite {
  sid: string;
  mode: WriteMode;
  /** The session's JSON. */
  json: string;
  /** The cookie's signature of `sid` (section 2). */
  signature: string;
  /** Whole seconds. */
  ttl: number;
  now: number;
  /** The session's user (section 13.1), if it has one. */
  user: string | undefined;
  /** The user its data named when the writer read it (an update); the write moves it out of that index when it is another (section 14.1). */
  previousUser?: string;
  /** The groups to write (create, update-groups), or as read (update). */
  groups: string[];
}

/** 'ok'; 'gone' (ended after it was read: dropped); or the stored groups, changed since the read (update). */
export type WriteReply = 'ok' | 'gone' | string[];

/** Login throttling: the keys of one subject (a user at a client address, or an address alone), in one slot. */
export interface ThrottleKeys {
  /** The subject's failures in the window (a sorted set scored by time). */
  failures: string;
  /** The subject's ban, while it runs. */
  ban: string;
}

/** Section 13.5: a session's new JSON and groups, computed from its JSON as read. */
export type GroupChange = (json: string) => { json: string; groups: string[] };

/** One v1 session as the migration's source holds it (PROTOCOL.md section 14), read atomically. */
export interface CopiedSession {
  data: string;
  signature: string | null;
  groups: string[];
  /** PTTL of each key (ms; -1: no expiry, -2: absent). */
  pttl: [number, number, number];
}

/** What a migration does to a session on its target (section 14): copy, overwrite, delete, or raise its ttl. */
export type CopyMode = 'create' | 'replace' | 'delete' | 'extend';

/** What a layout is built with. */
export interface LayoutContext {
  client: SharedSessionRedis;
  /** The key prefix (section 3). */
  prefix: string;
  /** Section 13.1: the session field that names its user. */
  userIdField: string;
  /** A create beyond this many live sessions of one user ends the user's oldest (0: no limit). */
  maxSessionsPerUser: number;
  logger: Pick<Logger, 'error' | 'warn' | 'log'>;
}

export interface SessionLayout {
  /** The three keys of a session (section 3's names, or section 14's); throws on a layout of one key per session. */
  keys(sid: string): SessionKeys;
  /** Every key of a session. */
  sessionKeys(sid: string): string[];
  /** Section 7: the channel of the notices. */
  readonly channel: string;
  /** Section 13.4: the channel of the readers' acknowledgements. */
  readonly ackChannel: string;
  /** Section 13.2: the not-before mark. */
  readonly notBeforeKey: string;
  /** Section 13.1: the index of a user's live sessions. */
  userIndexKey(userId: string): string;
  /** Section 13.3: a group's cache generation (`*`: the SCAN pattern of them all). */
  generationKey(group: string): string;
  /** Login throttling: a subject's failures and ban, sharing a hash tag (one slot on a Redis Cluster). */
  throttleKeys(address: string, user?: string): ThrottleKeys;
  /** Login throttling: the bans that run, scored by when they end (a key of its own slot). */
  readonly throttleBansKey: string;

  /** A session for a request (section 9's leftovers, section 13.2's mark), in as few round trips as the layout allows. */
  read(sid: string): Promise<SessionRead>;
  /** Section 8: a write that a concurrent logout or group change cannot undo; the index (13.1) and the limit of sessions per user with it. */
  write(write: SessionWrite): Promise<WriteReply>;
  /** Every key's ttl set to `ttlMs` (section 12), and the user's index member raised; the MULTI's reply. */
  refresh(sid: string, user: string | undefined, now: number, ttlMs: number): Promise<unknown>;
  /**
   * Ends a session: its keys, its index member, the notice (section 7). True
   * when it existed. With `owner`, only when its data names that user (or is
   * no JSON object of anyone), checked in the script that ends it (section 13.1).
   */
  destroy(sid: string, owner?: string): Promise<boolean>;

  /** Deletes what `read` counted as leftovers, only if the session is still none (one script); true when it deleted any. */
  dropLeftovers(sid: string): Promise<boolean>;

  /** One session's JSON and PTTL, in its slot; null when it is no session. */
  readJson(sid: string): Promise<IndexedSession | null>;
  /** Section 13.1: the user's live sessions: those whose data names the user. */
  liveSessions(userId: string): Promise<IndexedSession[]>;
  /** Ends those sessions of a user whose data names the user and takes them out of the index. Answers how many it ended. */
  endUserSessions(userId: string, sids: string[]): Promise<number>;
  /** Ends every live session of the user but `except`. Answers how many existed. */
  revokeUser(userId: string, except: string[]): Promise<number>;
  /** Section 13.5: new groups for every live session of the user. Answers how many changed. */
  changeGroups(userId: string, change: GroupChange): Promise<number>;
  /** Section 13.2: lifts the not-before mark, where the layout allows it (else throws a TypeError that says why). */
  liftNotBefore(): Promise<void>;
  /** Every session id the layout can find by SCAN (sessions no index knows); throws a TypeError where it cannot. */
  scanSessionIds(each: (sids: string[]) => Promise<void>): Promise<void>;
  /** Section 9: what to warn an operator of about Redis' eviction policy, if anything. */
  evictionRisk(): Promise<string | undefined>;

  /** Section 14 (migrating to this layout): the digest of what the target holds once `session` is copied. */
  copyDigest(session: CopiedSession): string;
  /** Section 14: false for a session this layout cannot hold (section 15: data that is not a JSON object). */
  canHold(session: CopiedSession): boolean;
  /** Section 14: one session copied, overwritten, deleted or extended on the target, atomically; the script's answer. */
  applyCopy(mode: CopyMode, sid: string, expected: string, dryRun: boolean, session: CopiedSession | null): Promise<string[]>;
}

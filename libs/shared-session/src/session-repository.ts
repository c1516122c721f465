import type { SharedSessionRedis } from './redis-connection';
import { defineScript } from './redis-scripts';
import type {
  GroupChange,
  IndexedSession,
  SessionKeys,
  SessionLayout,
  SessionRead,
  ThrottleKeys,
  WriteMode,
} from './layouts/session-layout';
import { sessionJsonBoundsProblem } from './session-json';

/** How many times a write adopts groups changed under it before it gives up (each retry means another change landed). */
const WRITE_ATTEMPTS = 5;

/** What `save` did: whether it wrote, and the groups the session holds now (the stored ones when they changed under it). */
export interface SaveOutcome {
  written: boolean;
  groups: string[];
}

/**
 * The sessions in Redis, whatever the key layout: what the express-session
 * store (a request's session) and SessionControl (a user's sessions, from
 * outside the request) both do, on the one layout object chosen for them.
 */
export class SessionRepository {
  private readonly notBeforeCommand = 'sharedSession:control-not-before:1';
  private readonly generationCommand = 'sharedSession:control-generation:1';

  constructor(
    private readonly client: SharedSessionRedis,
    private readonly layout: SessionLayout,
    /** The key prefix (PROTOCOL.md section 3). */
    readonly prefix: string,
  ) {
    defineScript(client, this.notBeforeCommand, 'control-not-before', 1);
    defineScript(client, this.generationCommand, 'control-generation', 1);
  }

  /** Section 7: the channel of the notices. */
  get channel(): string {
    return this.layout.channel;
  }

  /** Section 13.4: the channel of the readers' acknowledgements. */
  get ackChannel(): string {
    return this.layout.ackChannel;
  }

  /** The three keys of a session (section 3 or 14); throws on the compact layout (section 15: one key). */
  keys(sid: string): SessionKeys {
    return this.layout.keys(sid);
  }

  /** Login throttling: a subject's keys (a user at an address, or an address alone), named by the layout. */
  throttleKeys(address: string, user?: string): ThrottleKeys {
    return this.layout.throttleKeys(address, user);
  }

  /** Login throttling: the index of the bans that run. */
  get throttleBansKey(): string {
    return this.layout.throttleBansKey;
  }

  /** A session for a request: JSON (null: none), PTTL, leftovers, the not-before mark. */
  read(sid: string): Promise<SessionRead> {
    return this.layout.read(sid);
  }

  /**
   * Section 8: `read` is the groups the session had when it was read
   * (undefined: a new session id, created). Groups changed after the read
   * win: the write adopts them and is made again.
   */
  async save(
    sid: string,
    data: Record<string, unknown>,
    groups: string[],
    read: string[] | undefined,
    signature: string,
    ttl: number,
    user: string | undefined,
    /** The user the session named when this writer read it (section 14.1: a change of user leaves that index). */
    previousUser?: string,
  ): Promise<SaveOutcome> {
    for (let attempts = WRITE_ATTEMPTS; ; attempts--) {
      const mode: WriteMode = read === undefined ? 'create' : sameMembers(read, groups) ? 'update' : 'update-groups';
      const json = JSON.stringify(data);
      // Section 15.1: what every reader would refuse is never stored.
      const beyond = sessionJsonBoundsProblem(json);
      if (beyond !== undefined) throw new Error(`session data ${beyond} (PROTOCOL.md section 15.1): not saved`);
      const reply = await this.layout.write({
        sid,
        mode,
        json,
        signature,
        ttl,
        now: Date.now(),
        user,
        previousUser,
        groups: mode === 'update' ? read! : groups,
      });
      // 'gone': ended after this request read it; the write is dropped, the session stays ended.
      if (reply === 'ok' || reply === 'gone') return { written: reply === 'ok', groups };
      // The groups changed after the read: they win. Adopt them and write the rest again.
      if (attempts <= 1) throw new Error('session groups keep changing; write abandoned');
      groups = [...(reply as string[])].sort();
      read = groups;
      data = { ...data, groups };
    }
  }

  /** Section 12: every key's ttl, and the user's index member (MULTI reply). */
  refresh(sid: string, user: string | undefined, now: number, ttlMs: number): Promise<unknown> {
    return this.layout.refresh(sid, user, now, ttlMs);
  }

  /** Ends a session: its keys, its member in its user's index, the notice. True when it existed. */
  end(sid: string): Promise<boolean> {
    return this.layout.destroy(sid);
  }

  /** Section 9: a read's leftovers, deleted only while the session is still none. */
  dropLeftovers(sid: string): Promise<boolean> {
    return this.layout.dropLeftovers(sid);
  }

  readJson(sid: string): Promise<IndexedSession | null> {
    return this.layout.readJson(sid);
  }

  liveSessions(userId: string): Promise<IndexedSession[]> {
    return this.layout.liveSessions(userId);
  }

  /** Ends those of `sids` whose data names the user (section 13.1); answers how many it ended. */
  endUserSessions(userId: string, sids: string[]): Promise<number> {
    return this.layout.endUserSessions(userId, sids);
  }

  revokeUser(userId: string, except: string[]): Promise<number> {
    return this.layout.revokeUser(userId, except);
  }

  changeGroups(userId: string, change: GroupChange): Promise<number> {
    return this.layout.changeGroups(userId, change);
  }

  /** Section 13.2: the mark moves forward to `ms` (never back), announced; answers the mark now held. */
  async moveNotBefore(ms: number): Promise<number> {
    const script = this.client as unknown as Record<string, (...args: (string | number)[]) => Promise<unknown>>;
    return Number(await script[this.notBeforeCommand](this.layout.notBeforeKey, ms, this.channel));
  }

  /** Section 13.2: lifts the mark, where the layout allows it. */
  liftNotBefore(): Promise<void> {
    return this.layout.liftNotBefore();
  }

  /** Section 13.3: a new cache generation for the group, announced; answers it. */
  async newGeneration(group: string): Promise<number> {
    const script = this.client as unknown as Record<string, (...args: (string | number)[]) => Promise<unknown>>;
    return (await script[this.generationCommand](this.layout.generationKey(group), this.channel, group)) as number;
  }

  /** The ids of the sessions a SCAN finds (those no index knows: v1 writers); a TypeError where the layout cannot. */
  scanSessionIds(each: (sids: string[]) => Promise<void>): Promise<void> {
    return this.layout.scanSessionIds(each);
  }

  evictionRisk(): Promise<string | undefined> {
    return this.layout.evictionRisk();
  }
}

function sameMembers(a: string[], b: string[]): boolean {
  if (a.length !== b.length) return false;
  const set = new Set(a);
  return b.every((g) => set.has(g));
}

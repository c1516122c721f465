import { batchUntilCheckPhase } from '../redis-connection';
import { refusedByNotBefore } from '../session-control.keys';
import { sessionIdTimes } from '../session-id';
import { GROUP_CHANGE_ATTEMPTS, LayoutBase } from './layout-base';
import type { GroupChange, IndexedSession, SessionRead, SessionWrite, WriteReply } from './session-layout';

/**
 * The layouts for Redis Cluster (PROTOCOL.md section 14's `cluster`, section
 * 15's `compact`): a session's keys share its slot, and section 13's keys
 * (the user's index, the not-before mark) are in slots of their own, so they
 * are written and read in steps of their own (sections 14.1 to 14.3), and a
 * change to a user's sessions is one script per session.
 */
export abstract class OwnSlotLayout extends LayoutBase {
  /** The session's own keys, read atomically: JSON, PTTL, leftovers, and a slot for the mark (read beside). */
  protected abstract readSession(sid: string): Promise<SessionRead>;
  /** Section 8 on the session's own keys; the index and the mark are done before it. */
  protected abstract writeSession(write: SessionWrite): Promise<WriteReply>;
  /** Ends the session's keys (with the notice); undefined when there were none (or, with `owner`, it names another user), else its user, if any. */
  protected abstract destroySession(sid: string, owner?: string): Promise<{ user: string | undefined } | undefined>;
  /** Section 13.5 on one session: 'conflict' when its JSON is no longer `read`, else how many changed (0 or 1). */
  protected abstract setSessionGroups(sid: string, read: string, json: string, groups: string[]): Promise<unknown>;

  /** Section 14.3: the mark is in a slot of its own, read beside the session. */
  read(sid: string): Promise<SessionRead> {
    batchUntilCheckPhase(this.ctx.client);
    return Promise.all([this.readSession(sid), this.ctx.client.get(this.notBeforeKey)]).then(([read, mark]) => {
      read[3] = mark;
      return read;
    });
  }

  /**
   * Section 14.1: the index first, in its slot (a failure after it leaves a
   * member whose session is not there, which readers skip); section 14.3: the
   * mark checked before an update; a change of user leaves the old index
   * after the write. After a create that took the user above the limit, the
   * oldest sessions end, in steps of their own.
   */
  async write(w: SessionWrite): Promise<WriteReply> {
    const [indexed, mark] = await Promise.all([
      w.user !== undefined ? this.indexSession(w.user, w.sid, w.now, w.ttl * 1000) : 0,
      w.mode !== 'create' ? this.ctx.client.get(this.notBeforeKey) : null,
    ]);
    if (refusedByNotBefore(w.sid, mark)) return 'gone'; // ended by the mark: the update is dropped
    const reply = await this.writeSession(w);
    if (reply === 'ok' && w.previousUser !== undefined && w.previousUser !== w.user) {
      // Section 14.1: a change of user leaves the old index last; a failure leaves a member the operations skip.
      await this.ctx.client
        .zrem(this.userIndexKey(w.previousUser), w.sid)
        .catch((err: Error) => this.ctx.logger.warn(`a session that changed user is still in the old user's index (${err.message})`));
    }
    const max = this.ctx.maxSessionsPerUser;
    if (reply === 'ok' && w.mode === 'create' && max > 0 && indexed > max) {
      // A failure leaves the user above the limit until the next login.
      await this.endOldest(w.user!, w.sid).catch((err: Error) =>
        this.ctx.logger.warn(`sessions above maxSessionsPerUser not ended yet (${err.message}); the next login tries again`),
      );
    }
    return reply;
  }

  /**
   * The session's keys, then (another slot) its index member raised: a
   * failure of the index leaves the member's old score (the next write or
   * refresh raises it), not a failed refresh.
   */
  async refresh(sid: string, user: string | undefined, now: number, ttlMs: number): Promise<unknown> {
    const multi = this.ctx.client.multi();
    for (const key of this.sessionKeys(sid)) multi.pexpire(key, ttlMs);
    const result = await multi.exec();
    if (user !== undefined) await this.indexSession(user, sid, now, ttlMs).catch(() => undefined);
    return result;
  }

  /** The session's keys and the notice; its user's member after it, in the index's slot. */
  async destroy(sid: string, owner?: string): Promise<boolean> {
    const ended = await this.destroySession(sid, owner);
    if (ended?.user !== undefined) await this.ctx.client.zrem(this.userIndexKey(ended.user), sid);
    return ended !== undefined;
  }

  liveSessions(userId: string): Promise<IndexedSession[]> {
    return this.indexedSessions(userId);
  }

  /** Every member but `except`, each ended in its own slot, then taken out of the index. */
  async revokeUser(userId: string, except: string[]): Promise<number> {
    const members = await this.ctx.client.zrange(this.userIndexKey(userId), 0, -1);
    const keep = new Set(except);
    return this.endUserSessions(
      userId,
      members.filter((sid) => !keep.has(sid)),
    );
  }

  /** One script per session, in its slot: all or none for each session, not across them. */
  async changeGroups(userId: string, change: GroupChange): Promise<number> {
    const changed = await Promise.all((await this.indexedSessions(userId)).map((s) => this.changeSessionGroups(s, change)));
    return changed.filter(Boolean).length;
  }

  /** One session's groups, read again and computed again when a request saved it meanwhile. True when changed. */
  private async changeSessionGroups(session: IndexedSession, change: GroupChange): Promise<boolean> {
    const { sid } = session;
    let read: string | null = session.json;
    for (let attempt = 1; attempt <= GROUP_CHANGE_ATTEMPTS && read !== null; attempt++) {
      const changed = change(read);
      const reply = await this.setSessionGroups(sid, read, changed.json, changed.groups);
      if (reply !== 'conflict') return Number(reply) > 0;
      read = (await this.readJson(sid))?.json ?? null;
    }
    if (read === null) return false; // ended meanwhile
    throw new Error(`session ${sid.slice(0, 8)}… keeps changing; group change abandoned after ${GROUP_CHANGE_ATTEMPTS} attempts`);
  }

  /** After a create that took the user above the limit, the oldest live sessions (by issue time) end. */
  private async endOldest(userId: string, created: string): Promise<void> {
    const live = (await this.indexedSessions(userId)).map((s) => s.sid).sort(byIssueTime);
    const excess = live.length - this.ctx.maxSessionsPerUser;
    if (excess <= 0) return;
    await this.endUserSessions(userId, live.filter((sid) => sid !== created).slice(0, excess));
  }
}

/** Oldest first by issue time (section 11; an untimed id counts as 0), then by id: the order of the v1 write script. */
function byIssueTime(a: string, b: string): number {
  const ia = sessionIdTimes(a)?.issuedAt ?? 0;
  const ib = sessionIdTimes(b)?.issuedAt ?? 0;
  return ia !== ib ? ia - ib : a < b ? -1 : a > b ? 1 : 0;
}

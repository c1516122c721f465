import type { Redis } from 'ioredis';
import { batchUntilCheckPhase } from '../redis-connection';
import { GROUP_CHANGE_ATTEMPTS, LayoutBase, Script } from './layout-base';
import type { GroupChange, IndexedSession, LayoutContext, SessionKeys, SessionRead, SessionWrite, WriteReply } from './session-layout';

/** A session id (PROTOCOL.md section 1), so that a key of another prefix that a SCAN pattern matches is left alone. */
const SESSION_ID = /^[A-Za-z0-9_-]{16,128}$/;

/**
 * PROTOCOL.md section 3's layout, what Flask and the 2017 Lua module read
 * and write: `<prefix>:data:<sid>`, `:signature:`, `:groups:` on one Redis.
 * Section 13 applies whole in the session's own scripts: the write checks
 * the not-before mark and keeps the user's index in the same atomic step,
 * and a change to a user's sessions is one script for all of them.
 */
export class V1Layout extends LayoutBase {
  protected readonly name = 'v1';
  private readonly writeScript: Script;
  private readonly destroyScript: Script;
  private readonly listScript: Script;
  private readonly revokeUserScript: Script;
  private readonly setGroupsScript: Script;
  /** The key names without the session id: the scripts that end sessions of a user name their keys with them. */
  private readonly named: SessionKeys;

  constructor(ctx: LayoutContext) {
    super(ctx);
    this.writeScript = this.script('v1-write');
    this.destroyScript = this.script('v1-destroy', 3);
    this.listScript = this.script('control-list', 1);
    this.revokeUserScript = this.script('control-revoke-user', 1);
    this.setGroupsScript = this.script('control-set-groups');
    this.named = this.keys('');
  }

  keys(sid: string): SessionKeys {
    const p = this.ctx.prefix;
    return { data: `${p}:data:${sid}`, signature: `${p}:signature:${sid}`, groups: `${p}:groups:${sid}` };
  }

  sessionKeys(sid: string): string[] {
    const k = this.keys(sid);
    return [k.data, k.signature, k.groups];
  }

  protected dataKey(sid: string): string {
    return this.keys(sid).data;
  }

  protected jsonOf(value: string | null): string | null {
    return value;
  }

  /**
   * One round trip of three plain commands (`GET` of the data, its `PTTL`,
   * `GET` of the mark: a fraction of a script's Redis CPU, and no command
   * the least-privilege ACL user lacks): nothing here needs them atomic. The
   * mark read after the data is at least as new (section 13.2). A session
   * gone between the `GET` and the `PTTL` reads as gone. Only when the data
   * is missing, a second round trip counts its leftovers (section 9). They
   * leave with the other reads of this turn of the event loop, in one write
   * (batchUntilCheckPhase), without building a pipeline (an ioredis pipeline
   * copies every script the client defines, on every read).
   *
   * That second round trip looks at the data again: a session whose keys
   * were all written between the two (a restore, a write) is read again
   * once, never taken for a half-deleted one, whose leftovers the store
   * deletes (it would delete the whole session).
   */
  read(sid: string): Promise<SessionRead> {
    return this.readOnce(sid, true);
  }

  private async readOnce(sid: string, again: boolean): Promise<SessionRead> {
    const k = this.keys(sid);
    const client = this.ctx.client as Redis;
    batchUntilCheckPhase(client);
    const [json, pttl, mark] = await Promise.all([client.get(k.data), client.pttl(k.data), client.get(this.notBeforeKey)]);
    if (json !== null && pttl !== -2) return [json, pttl, 0, mark];
    const [data, leftovers] = await Promise.all([client.exists(k.data), client.exists(k.signature, k.groups)]);
    if (data === 0) return [null, -2, leftovers, mark];
    // The data appeared meanwhile: read again; if it comes and goes again, no session (and nothing deleted).
    return again ? this.readOnce(sid, false) : [null, -2, 0, mark];
  }

  /** One script: the keys, the mark checked, the index (a change of user moves it) and the limit of sessions per user (section 13.1). */
  write(w: SessionWrite): Promise<WriteReply> {
    const k = this.keys(w.sid);
    const keys = [k.data, k.signature, k.groups, this.notBeforeKey];
    if (w.user !== undefined) keys.push(this.userIndexKey(w.user));
    return this.writeScript(
      keys.length,
      ...keys,
      w.mode,
      w.json,
      w.signature,
      w.ttl,
      this.channel,
      w.sid,
      w.now,
      this.ctx.maxSessionsPerUser,
      this.named.data,
      this.named.signature,
      this.named.groups,
      this.ctx.userIdField,
      this.userIndexKey(''),
      ...w.groups,
    ) as Promise<WriteReply>;
  }

  /** One MULTI: the three keys, and the index member raised (never added: XX) with the index's own expiry (GT). */
  refresh(sid: string, user: string | undefined, now: number, ttlMs: number): Promise<unknown> {
    const multi = this.ctx.client.multi();
    for (const key of this.sessionKeys(sid)) multi.pexpire(key, ttlMs);
    if (user !== undefined) {
      const index = this.userIndexKey(user);
      multi.zadd(index, 'XX', 'GT', now + ttlMs, sid).pexpire(index, ttlMs, 'GT');
    }
    return multi.exec();
  }

  async destroy(sid: string, owner?: string): Promise<boolean> {
    const k = this.keys(sid);
    const args = [this.channel, sid, this.ctx.userIdField, this.userIndexKey(''), ...(owner === undefined ? [] : [owner])];
    const existed = await this.destroyScript(k.data, k.signature, k.groups, ...args);
    return existed === 1;
  }

  /** One script: every indexed session whose data exists and names the user. */
  async liveSessions(userId: string): Promise<IndexedSession[]> {
    const flat = (await this.listScript(this.userIndexKey(userId), this.named.data, this.ctx.userIdField, userId)) as (string | number)[];
    const sessions: IndexedSession[] = [];
    for (let i = 0; i < flat.length; i += 3) sessions.push({ sid: String(flat[i]), json: String(flat[i + 1]), pttl: Number(flat[i + 2]) });
    return sessions;
  }

  async revokeUser(userId: string, except: string[]): Promise<number> {
    const n = await this.revokeUserScript(
      this.userIndexKey(userId),
      this.channel,
      this.named.data,
      this.named.signature,
      this.named.groups,
      this.ctx.userIdField,
      userId,
      ...except,
    );
    return n as number;
  }

  /** Section 13.5: every session of the user in one script, all or none; read again when another write came between. */
  async changeGroups(userId: string, change: GroupChange): Promise<number> {
    for (let attempt = 1; attempt <= GROUP_CHANGE_ATTEMPTS; attempt++) {
      const keys: string[] = [];
      const args: (string | number)[] = [this.channel];
      for (const { sid, json } of await this.liveSessions(userId)) {
        const changed = change(json);
        const k = this.keys(sid);
        keys.push(k.data, k.groups);
        args.push(sid, json, changed.json, changed.groups.length, ...changed.groups);
      }
      if (keys.length === 0) return 0;
      const reply = (await this.setGroupsScript(keys.length, ...keys, ...args)) as number | string;
      if (reply !== 'conflict') return Number(reply);
    }
    throw new Error(`the sessions of this user keep changing; group change abandoned after ${GROUP_CHANGE_ATTEMPTS} attempts`);
  }

  async liftNotBefore(): Promise<void> {
    const result = await this.ctx.client.multi().del(this.notBeforeKey).publish(this.channel, '!not-before 0').exec();
    const failed = result?.find(([err]) => err);
    if (!result || failed) throw failed?.[0] ?? new Error('Redis transaction aborted');
  }

  /** Every session id of a data key, once each (a SCAN may return a key twice), one SCAN page at a time. */
  async scanSessionIds(each: (sids: string[]) => Promise<void>): Promise<void> {
    const dataPrefix = this.named.data;
    const seen = new Set<string>();
    let cursor = '0';
    do {
      const [next, keys] = await (this.ctx.client as Redis).scan(cursor, 'MATCH', `${dataPrefix}*`, 'COUNT', 1000);
      cursor = next;
      const sids: string[] = [];
      for (const key of keys) {
        const sid = key.slice(dataPrefix.length);
        if (!SESSION_ID.test(sid) || seen.has(sid)) continue;
        seen.add(sid);
        sids.push(sid);
      }
      if (sids.length > 0) await each(sids);
    } while (cursor !== '0');
  }
}

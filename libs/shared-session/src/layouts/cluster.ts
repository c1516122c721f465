import { sessionDigest, Script } from './layout-base';
import { OwnSlotLayout } from './own-slot-layout';
import type { CopiedSession, CopyMode, LayoutContext, SessionKeys, SessionRead, SessionWrite, WriteReply } from './session-layout';

/**
 * PROTOCOL.md section 14's layout: section 3's three keys, named
 * `<prefix>:{<sid>}:data` … so that a session is in one slot of a Redis
 * Cluster. Its scripts are the v1 layout's, given the session's keys alone
 * (section 13 is done in steps of their own: OwnSlotLayout).
 */
export class ClusterLayout extends OwnSlotLayout {
  protected readonly name = 'cluster';
  private readonly readScript: Script;
  private readonly writeScript: Script;
  private readonly destroyScript: Script;
  private readonly setGroupsScript: Script;
  private readonly copyScript: Script;

  constructor(ctx: LayoutContext) {
    super(ctx);
    this.readScript = this.script('v1-read', 3);
    this.writeScript = this.script('v1-write', 3);
    this.destroyScript = this.script('v1-destroy', 3);
    this.setGroupsScript = this.script('control-set-groups', 2);
    this.copyScript = this.script('migrate-target', 3);
  }

  keys(sid: string): SessionKeys {
    const p = this.ctx.prefix;
    return { data: `${p}:{${sid}}:data`, signature: `${p}:{${sid}}:signature`, groups: `${p}:{${sid}}:groups` };
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

  /** The v1 read script without the mark's key: its answer has the mark's slot, empty. */
  protected readSession(sid: string): Promise<SessionRead> {
    const k = this.keys(sid);
    return this.readScript(k.data, k.signature, k.groups) as Promise<SessionRead>;
  }

  protected writeSession(w: SessionWrite): Promise<WriteReply> {
    const k = this.keys(w.sid);
    // No mark and no index among the keys: the script leaves section 13 alone (ARGV 7 to 13 are the index's).
    return this.writeScript(
      k.data,
      k.signature,
      k.groups,
      w.mode,
      w.json,
      w.signature,
      w.ttl,
      this.channel,
      w.sid,
      w.now,
      0,
      '',
      '',
      '',
      '',
      '',
      ...w.groups,
    ) as Promise<WriteReply>;
  }

  /** The index member is left to expire with its score (section 14.1: pruned by the next write to the index). */
  protected async destroySession(sid: string, owner?: string): Promise<{ user: undefined } | undefined> {
    const k = this.keys(sid);
    const args = owner === undefined ? ['', ''] : [this.ctx.userIdField, '', owner];
    const existed = await this.destroyScript(k.data, k.signature, k.groups, this.channel, sid, ...args);
    return existed === 1 ? { user: undefined } : undefined;
  }

  protected setSessionGroups(sid: string, read: string, json: string, groups: string[]): Promise<unknown> {
    const k = this.keys(sid);
    return this.setGroupsScript(k.data, k.groups, this.channel, sid, read, json, groups.length, ...groups);
  }

  copyDigest(session: CopiedSession): string {
    return sessionDigest(session.data, session.signature, session.groups);
  }

  applyCopy(mode: CopyMode, sid: string, expected: string, dryRun: boolean, session: CopiedSession | null): Promise<string[]> {
    const k = this.keys(sid);
    return this.copyScript(
      k.data,
      k.signature,
      k.groups,
      mode,
      expected,
      dryRun ? '1' : '',
      this.channel,
      sid,
      session?.data ?? '',
      session?.signature ?? '',
      ...(session?.pttl ?? [-1, -1, -1]),
      ...(session?.groups ?? []),
    ) as Promise<string[]>;
  }
}

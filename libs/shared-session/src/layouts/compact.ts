import { compactValue, parseCompactValue } from '../compact-value';
import { userIdOf } from '../session-control.keys';
import { sessionDigest, Script } from './layout-base';
import { OwnSlotLayout } from './own-slot-layout';
import type { CopiedSession, CopyMode, LayoutContext, SessionKeys, SessionRead, SessionWrite, WriteReply } from './session-layout';

/**
 * PROTOCOL.md section 15's layout: a session is one string key
 * `<prefix>:{<sid>}`, its signature then its JSON (compact-value.ts), on one
 * Redis or a Redis Cluster. Evicted whole, never half. Section 13 works as
 * on the cluster layout (OwnSlotLayout).
 */
export class CompactLayout extends OwnSlotLayout {
  protected readonly name = 'compact';
  private readonly readScript: Script;
  private readonly writeScript: Script;
  private readonly destroyScript: Script;
  private readonly setGroupsScript: Script;
  private readonly copyScript: Script;

  constructor(ctx: LayoutContext) {
    super(ctx);
    this.readScript = this.script('compact-read', 1);
    this.writeScript = this.script('compact-write', 1);
    this.destroyScript = this.script('compact-destroy', 1);
    this.setGroupsScript = this.script('compact-set-groups', 1);
    this.copyScript = this.script('migrate-target-compact', 1);
  }

  /** The layout has no three keys (one key per session): `sessionKeys(sid)` names it. */
  keys(_sid: string): SessionKeys {
    throw new Error('the compact layout keeps a session in one key, <prefix>:{<sid>} (PROTOCOL.md section 15): it has no three keys');
  }

  sessionKeys(sid: string): string[] {
    return [this.dataKey(sid)];
  }

  protected dataKey(sid: string): string {
    return `${this.ctx.prefix}:{${sid}}`;
  }

  protected jsonOf(value: string | null): string | null {
    return parseCompactValue(value)?.json ?? null;
  }

  /** A malformed value is no session, but a leftover to delete (as section 9's). */
  protected async readSession(sid: string): Promise<SessionRead> {
    const [value, pttl] = (await this.readScript(this.dataKey(sid))) as [string | null, number];
    const session = parseCompactValue(value);
    if (value !== null && !session) this.ctx.logger.warn(`session ${sid.slice(0, 8)}…: malformed value; treated as no session`);
    return [session ? session.json : null, pttl, value !== null && !session ? 1 : 0, null];
  }

  protected writeSession(w: SessionWrite): Promise<WriteReply> {
    const value = compactValue(w.signature, w.json);
    // Section 15.1: a value every reader would refuse (a lone surrogate in a string) is never stored.
    if (parseCompactValue(value) === null) {
      return Promise.reject(new Error('session data holds a string that is not well-formed Unicode (PROTOCOL.md section 15.1): not saved'));
    }
    const read = w.mode === 'update' ? w.groups : [];
    return this.writeScript(this.dataKey(w.sid), w.mode, value, w.ttl, this.channel, w.sid, ...read) as Promise<WriteReply>;
  }

  /** With `owner`, a session whose data names another user is left alone (the script answers -1). */
  protected async destroySession(sid: string, owner?: string): Promise<{ user: string | undefined } | undefined> {
    const args = [this.channel, sid, this.ctx.userIdField, ...(owner === undefined ? [] : [owner])];
    const user = (await this.destroyScript(this.dataKey(sid), ...args)) as string | number | null;
    return typeof user === 'string' ? { user: userIdOf({ user }, 'user') } : undefined;
  }

  protected setSessionGroups(sid: string, read: string, json: string): Promise<unknown> {
    return this.setGroupsScript(this.dataKey(sid), this.channel, sid, read, json);
  }

  /** A session is evicted whole: no half-deleted session to warn of. */
  async evictionRisk(): Promise<undefined> {
    return undefined;
  }

  /** Data that is not a JSON object cannot be a compact value. */
  canHold(session: CopiedSession): boolean {
    return parseCompactValue(copiedValue(session)) !== null;
  }

  /** Its groups are its data's, which section 3 makes the same set as the source's groups key. */
  copyDigest(session: CopiedSession): string {
    return sessionDigest(session.data, session.signature, parseCompactValue(copiedValue(session))?.groups ?? []);
  }

  /** The value built from the source's signature and data, with its data key's PTTL. */
  applyCopy(mode: CopyMode, sid: string, expected: string, dryRun: boolean, session: CopiedSession | null): Promise<string[]> {
    return this.copyScript(
      this.dataKey(sid),
      mode,
      expected,
      dryRun ? '1' : '',
      this.channel,
      sid,
      session ? copiedValue(session) : '',
      session?.pttl[0] ?? -1,
    ) as Promise<string[]>;
  }
}

function copiedValue(session: CopiedSession): string {
  return compactValue(session.signature ?? '', session.data);
}

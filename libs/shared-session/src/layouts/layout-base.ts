import { createHash } from 'node:crypto';
import { evictionRisk } from '../redis-eviction';
import { defineScript, RedisScriptName } from '../redis-scripts';
import { sessionUserOf } from '../session-json';
import type {
  CopiedSession,
  CopyMode,
  GroupChange,
  IndexedSession,
  LayoutContext,
  SessionKeys,
  SessionLayout,
  SessionRead,
  SessionWrite,
  ThrottleKeys,
  WriteReply,
} from './session-layout';

/** A Redis script defined on the client, called with its keys then its arguments. */
export type Script = (...args: (string | number)[]) => Promise<unknown>;

/** How many times a group change reads again after a concurrent write before it gives up. */
export const GROUP_CHANGE_ATTEMPTS = 10;

/**
 * What every layout does alike: the names of section 13's keys and of the
 * channels, a session's JSON read in its slot, the per-user index's
 * bookkeeping. What differs is abstract, or a default a layout overrides.
 */
export abstract class LayoutBase implements SessionLayout {
  readonly channel: string;
  readonly ackChannel: string;
  readonly notBeforeKey: string;
  readonly throttleBansKey: string;
  private readonly indexScript: Script;
  private readonly dropLeftoversScript: Script;

  constructor(protected readonly ctx: LayoutContext) {
    this.channel = `${ctx.prefix}:invalidate`;
    this.ackChannel = `${ctx.prefix}:ack`;
    this.notBeforeKey = `${ctx.prefix}:not-before`;
    this.throttleBansKey = `${ctx.prefix}:throttle-bans`;
    this.indexScript = this.script('index', 1);
    this.dropLeftoversScript = this.script('drop-leftovers');
  }

  abstract keys(sid: string): SessionKeys;
  abstract sessionKeys(sid: string): string[];
  abstract read(sid: string): Promise<SessionRead>;
  abstract write(write: SessionWrite): Promise<WriteReply>;
  abstract refresh(sid: string, user: string | undefined, now: number, ttlMs: number): Promise<unknown>;
  abstract destroy(sid: string, owner?: string): Promise<boolean>;
  abstract liveSessions(userId: string): Promise<IndexedSession[]>;
  abstract revokeUser(userId: string, except: string[]): Promise<number>;
  abstract changeGroups(userId: string, change: GroupChange): Promise<number>;
  /** The key that holds the session's JSON. */
  protected abstract dataKey(sid: string): string;
  /** The JSON in the data key's value; null when the value is no session. */
  protected abstract jsonOf(value: string | null): string | null;

  userIndexKey(userId: string): string {
    return `${this.ctx.prefix}:user:${userId}`;
  }

  generationKey(group: string): string {
    return `${this.ctx.prefix}:group-generation:${group}`;
  }

  /**
   * The user and the address are URI-encoded, so the tag holds no brace and
   * no `:` of theirs: a (user, address) pair and an address alone never share
   * a name, whatever the user id holds.
   */
  throttleKeys(address: string, user?: string): ThrottleKeys {
    const subject = user === undefined ? `address:${keyPart(address)}` : `pair:${keyPart(user)}:${keyPart(address)}`;
    const base = `${this.ctx.prefix}:throttle:{${subject}}`;
    return { failures: `${base}:failures`, ban: `${base}:ban` };
  }

  /**
   * What a read found of a session that is no session (section 9's leftovers, section 15's malformed value),
   * deleted in one script with the check that it still is none: a session written whole since the read stays.
   * True when it deleted a key (then the notice went too).
   */
  async dropLeftovers(sid: string): Promise<boolean> {
    const keys = this.sessionKeys(sid);
    return ((await this.dropLeftoversScript(keys.length, ...keys, this.channel, sid)) as number) > 0;
  }

  async readJson(sid: string): Promise<IndexedSession | null> {
    const key = this.dataKey(sid);
    const result = await this.ctx.client.multi().get(key).pttl(key).exec();
    const failed = result?.find(([err]) => err);
    if (!result || failed) throw failed?.[0] ?? new Error('Redis transaction aborted');
    const json = this.jsonOf(result[0][1] as string | null);
    return json === null ? null : { sid, json, pttl: Number(result[1][1]) };
  }

  /**
   * Section 14.1: the user's indexed sessions that exist and name the user
   * (section 13.1), each read in its own slot (the index first). What acts on
   * one of them checks it again in its own script (the JSON as read, or the
   * owner).
   */
  protected async indexedSessions(userId: string): Promise<IndexedSession[]> {
    const members = await this.ctx.client.zrange(this.userIndexKey(userId), 0, -1);
    const read = await Promise.all(members.map((sid) => this.readJson(sid)));
    return read.filter((s): s is IndexedSession => s !== null && sessionUserOf(s.json, this.ctx.userIdField) === userId);
  }

  /**
   * Each session in its own slot, ended only when its data names the user,
   * the index after; a member whose session is not there yet (a login racing
   * this) or names another user (a move racing this) stays.
   */
  async endUserSessions(userId: string, sids: string[]): Promise<number> {
    const existed = await Promise.all(sids.map((sid) => this.destroy(sid, userId)));
    const ended = sids.filter((_, i) => existed[i]);
    if (ended.length > 0) await this.ctx.client.zrem(this.userIndexKey(userId), ...ended);
    return ended.length;
  }

  /** Section 14.1: the session's member in its user's index, in the index's slot. Answers how many members it holds. */
  protected async indexSession(userId: string, sid: string, now: number, ttlMs: number): Promise<number> {
    return (await this.indexScript(this.userIndexKey(userId), now, now + ttlMs, sid)) as number;
  }

  async liftNotBefore(): Promise<void> {
    throw new TypeError(
      `on the ${this.name} layout the not-before mark only moves forward (PROTOCOL.md sections 14.3 and 15): it cannot be lifted`,
    );
  }

  async scanSessionIds(_each: (sids: string[]) => Promise<void>): Promise<void> {
    throw new TypeError('a SCAN finds the sessions of v1 writers, which only the v1 layout holds');
  }

  evictionRisk(): Promise<string | undefined> {
    return evictionRisk(this.ctx.client);
  }

  copyDigest(_session: CopiedSession): string {
    throw new TypeError(`the ${this.name} layout is not a migration target`);
  }

  canHold(_session: CopiedSession): boolean {
    return true;
  }

  applyCopy(_mode: CopyMode, _sid: string, _expected: string, _dryRun: boolean, _session: CopiedSession | null): Promise<string[]> {
    throw new TypeError(`the ${this.name} layout is not a migration target`);
  }

  /** The layout's name, for messages. */
  protected abstract readonly name: string;

  /**
   * The script `name` as a function. Each (script, number of keys) is one
   * command on the client, so layouts that share a client (the migration's
   * source and target, on one Redis) share it too.
   */
  protected script(name: RedisScriptName, numberOfKeys?: number): Script {
    const command = `sharedSession:${name}:${numberOfKeys ?? 'n'}`;
    const client = this.ctx.client as unknown as Record<string, Script>;
    if (typeof client[command] !== 'function') defineScript(this.ctx.client, command, name, numberOfKeys);
    return client[command].bind(client);
  }
}

/**
 * A user id or an address in a key: URI-encoded, a lone surrogate (which
 * encodeURIComponent refuses) as U+FFFD; past 256 characters, its SHA-256,
 * so that a login form posted with a huge user name makes no huge key.
 */
function keyPart(text: string): string {
  const encoded = encodeURIComponent(text.replace(/\p{Cs}/gu, '\ufffd'));
  return encoded.length <= 256 ? encoded : `sha256.${createHash('sha256').update(encoded).digest('hex')}`;
}

/**
 * Section 14: the digest of a copied session, as the migration's target
 * scripts compute it of what the target holds: SHA-1 of the SHA-1s of data
 * and signature and the sorted SHA-1s of the groups (hex digests sort alike
 * in any collation).
 */
export function sessionDigest(data: string, signature: string | null, groups: string[]): string {
  const sha1 = (s: string) => createHash('sha1').update(s, 'utf8').digest('hex');
  const hashed = groups.map(sha1).sort();
  return sha1(sha1(data) + sha1(signature ?? '') + hashed.join(''));
}

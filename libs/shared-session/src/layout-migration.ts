import { createHash } from 'node:crypto';
import type { Cluster, Redis } from 'ioredis';
import { COMPACT_LUA, compactKey, compactValue, parseCompactValue, SIGNATURE_LENGTH } from './compact-value';
import { refusedByNotBefore } from './session-control.keys';
import { sessionIdExpired } from './session-id';

/**
 * PROTOCOL.md section 14, "Migrating": sessions copied from the v1 layout on
 * one Redis to the cluster layout on a Redis Cluster, or (section 15) to the
 * compact layout on a Redis Cluster or on the same Redis, without logging
 * anyone out, in runs around the moment the apps and nginx are switched.
 *
 * Every run is the same reconciliation. The first (empty state) copies every
 * session that the target does not hold and remembers, per session, a digest
 * of what it copied. The later ones (`--finish`: after the switch, once just
 * before it to shorten the window, and again at will) carry over what the
 * source saw since: new sessions are copied, changed ones overwritten, used
 * ones get the source's longer time to live, ended ones are deleted (with a
 * notice, section 7), each only while the target still holds exactly what
 * the migration copied. A session the apps wrote on the target since the
 * switch is never overwritten; a session that ended on the target is never
 * copied again, so a logout is never undone by a copy.
 */

/** What the migration remembers between its runs: per session, the digest of what it copied to the target. */
export interface MigrationState {
  format: typeof STATE_FORMAT;
  prefix: string;
  /** The target as given when the migration began: startup nodes, a redis:// URL, or `source` (the source Redis itself, section 15). */
  target: string;
  /** The target's layout (absent: `cluster`, the only one before section 15). */
  layout?: TargetLayout;
  /** sid → the digest of what was copied, or ENDED. */
  sessions: Record<string, string>;
}

/** The layouts a migration writes: section 14's or section 15's. */
export type TargetLayout = 'cluster' | 'compact';

/** A session whose copy has ended (on the target, or on the source and then deleted on the target): never copied again. */
export const ENDED = '-';

export const STATE_FORMAT = 'nest-resty-shared-session migrate-layout 1';

/** How the sessions fared, by outcome. */
export interface MigrationCounts {
  /** Absent from the target, copied to it. */
  copied: number;
  /** On the target as the source holds it; nothing to do. */
  unchanged: number;
  /** Changed on the source since the last run, overwritten on the target (which still held the copy); notice published. */
  updated: number;
  /** Gone from the source since the last run (logout, revocation, expiry), deleted on the target (even if written there since); notice published. */
  deleted: number;
  /** Used on the source since the last run: the copy's time to live raised to the source's. */
  extended: number;
  /** The target holds another session under this id, not one this migration copied: left alone. */
  skippedExisting: number;
  /** Written on the target since it was copied (by an app after the switch): the target wins, left alone. */
  changedOnTarget: number;
  /** Ended on the target since it was copied (logout, expiry): never re-created. */
  goneOnTarget: number;
  /** Ended on the source before it could be copied: past its deadline, half-deleted (section 9), or gone since the SCAN. */
  expired: number;
  /** Ended by the source's not-before mark (section 13.2): not copied (and a copy made before it was set is deleted). */
  endedByNotBefore: number;
}

export interface MigrationResult {
  counts: MigrationCounts;
  /** Sessions changed on the source since the last run and written on the target since: left as the target holds them. */
  changedOnBothSides: string[];
  /** Sessions ended on the source since the last run (logout, revocation, expiry) and written on the target since: deleted there all the same. */
  endedOnSourceOnly: string[];
  /** The source's not-before mark (Unix ms, 0: none). */
  notBefore: number;
  /** How many group cache generations (section 13.3) the source holds: not carried over. */
  generations: number;
}

/** One session as the source holds it, read atomically. */
interface SourceSession {
  data: string;
  signature: string | null;
  groups: string[];
  /** PTTL of each key (ms; -1: no expiry, -2: absent). */
  pttl: [number, number, number];
}

/** Reads one v1 session atomically. KEYS: data, signature, groups. */
const SOURCE_READ = `
local data = redis.call('GET', KEYS[1])
if not data then return false end
return {data, redis.call('GET', KEYS[2]), redis.call('SMEMBERS', KEYS[3]),
        redis.call('PTTL', KEYS[1]), redis.call('PTTL', KEYS[2]), redis.call('PTTL', KEYS[3])}`;

/**
 * One session on the target, in its slot, atomically. KEYS: the three
 * cluster-layout keys. ARGV: mode, expected digest, dry ('1' or ''), channel,
 * sid, data, signature, the three PTTLs, then the groups.
 *  - create: only when the target holds no session under this id;
 *  - replace / delete / extend: only while the target holds exactly the
 *    digest the migration copied (`changed` otherwise, `gone` when absent);
 *    replace and delete publish the id (section 7), so nginx forgets what it
 *    decided on the copy.
 * With dry, answers what it would do and writes nothing.
 * The digest: SHA-1 of the SHA-1s of data and signature and the sorted SHA-1s
 * of the groups (hex digests sort alike in any collation).
 */
/**
 * What every target script does once its layout has defined, over KEYS:
 * digest() (of what the target holds), write() (the source's session),
 * remove() (the session's keys) and extend() (each key's time to live raised
 * to the source's, never lowered, never a key re-created; true when one was
 * raised; nothing written when dry).
 */
const TARGET_DISPATCH = `
local exists = redis.call('EXISTS', KEYS[1]) == 1
if mode == 'create' then
  if exists then return {'exists', digest()} end
  if not dry then write() end
  return {'copied'}
end
if not exists then return {'gone'} end
local held = digest()
if mode == 'delete' then
  -- Ended on the source since it was copied: the copy ends too, even when a switched app wrote it since
  -- (a logout is never undone; an end cannot be told from an expiry, and this is the safe side).
  if not dry then remove(); redis.call('PUBLISH', channel, sid) end
  return {'deleted', held}
end
if held ~= expected then return {'changed', held} end
if mode == 'replace' then
  if not dry then write(); redis.call('PUBLISH', channel, sid) end
  return {'updated'}
end
return {extend() and 'extended' or 'unchanged'}`;

/** Lua: raises key's time to live to `want` ms when it is more than a second longer (a second is the copy's own delay, not a use). */
const RAISE_LUA = `
local function raise(key, want)
  local now = redis.call('PTTL', key)
  if now > 0 and want > now + 1000 then
    if not dry then redis.call('PEXPIRE', key, want) end
    return true
  end
  return false
end`;

/**
 * One session on the target, in its slot, atomically. KEYS: the three
 * cluster-layout keys. ARGV: mode, expected digest, dry ('1' or ''), channel,
 * sid, data, signature, the three PTTLs, then the groups.
 *  - create: only when the target holds no session under this id;
 *  - replace / delete / extend: only while the target holds exactly the
 *    digest the migration copied (`changed` otherwise, `gone` when absent);
 *    replace and delete publish the id (section 7), so nginx forgets what it
 *    decided on the copy.
 * With dry, answers what it would do and writes nothing.
 * The digest: SHA-1 of the SHA-1s of data and signature and the sorted SHA-1s
 * of the groups (hex digests sort alike in any collation).
 */
const TARGET_APPLY = `
local mode, expected, dry, channel, sid = ARGV[1], ARGV[2], ARGV[3] == '1', ARGV[4], ARGV[5]
${RAISE_LUA}
local function digest()
  local members = redis.call('SMEMBERS', KEYS[3])
  local hashed = {}
  for i, g in ipairs(members) do hashed[i] = redis.sha1hex(g) end
  table.sort(hashed)
  local signature = redis.call('GET', KEYS[2]) or ''
  return redis.sha1hex(redis.sha1hex(redis.call('GET', KEYS[1])) .. redis.sha1hex(signature) .. table.concat(hashed))
end
local function expire(key, pttl)
  if pttl > 0 then redis.call('PEXPIRE', key, pttl) end
end
local function write()
  redis.call('SET', KEYS[1], ARGV[6])
  expire(KEYS[1], tonumber(ARGV[8]))
  redis.call('DEL', KEYS[2], KEYS[3])
  if ARGV[7] ~= '' then
    redis.call('SET', KEYS[2], ARGV[7])
    expire(KEYS[2], tonumber(ARGV[9]))
  end
  if #ARGV >= 11 then
    redis.call('SADD', KEYS[3], unpack(ARGV, 11))
    expire(KEYS[3], tonumber(ARGV[10]))
  end
end
local function remove()
  redis.call('DEL', KEYS[1], KEYS[2], KEYS[3])
end
local function extend()
  local raised = false
  for i = 1, 3 do
    if raise(KEYS[i], tonumber(ARGV[7 + i])) then raised = true end
  end
  return raised
end
${TARGET_DISPATCH}`;

/**
 * TARGET_APPLY on the compact layout (section 15): the same modes, answers
 * and digest, on the session's one key. KEYS[1]: the key. ARGV: mode,
 * expected digest, dry, channel, sid, the value (signature then data), the
 * source data key's PTTL. The digest is computed from the value: its data,
 * its signature and its groups (the data's, compact-value.ts).
 */
const TARGET_APPLY_COMPACT = `
${COMPACT_LUA}
local mode, expected, dry, channel, sid = ARGV[1], ARGV[2], ARGV[3] == '1', ARGV[4], ARGV[5]
${RAISE_LUA}
local function digest()
  local value = redis.call('GET', KEYS[1])
  local session, hashed = compact_session(value), {}
  if session then
    for i, g in ipairs(compact_groups(session)) do hashed[i] = redis.sha1hex(g) end
  end
  table.sort(hashed)
  return redis.sha1hex(redis.sha1hex(string.sub(value, ${SIGNATURE_LENGTH + 1})) .. redis.sha1hex(string.sub(value, 1, ${SIGNATURE_LENGTH})) .. table.concat(hashed))
end
local function write()
  redis.call('SET', KEYS[1], ARGV[6])
  if tonumber(ARGV[7]) > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[7]) end
end
local function remove()
  redis.call('DEL', KEYS[1])
end
local function extend()
  return raise(KEYS[1], tonumber(ARGV[7]))
end
${TARGET_DISPATCH}`;

/** The digest TARGET_APPLY computes, of what the source holds. */
export function sessionDigest(data: string, signature: string | null, groups: string[]): string {
  const sha1 = (s: string) => createHash('sha1').update(s, 'utf8').digest('hex');
  const hashed = groups.map(sha1).sort();
  return sha1(sha1(data) + sha1(signature ?? '') + hashed.join(''));
}

/** A session id (PROTOCOL.md section 1), so that a key of another prefix that the SCAN pattern matches is left alone. */
const SESSION_ID = /^[A-Za-z0-9_-]{16,128}$/;

/** Sessions read and applied this many at a time. */
const BATCH = 200;

export function emptyCounts(): MigrationCounts {
  return {
    copied: 0,
    unchanged: 0,
    updated: 0,
    deleted: 0,
    extended: 0,
    skippedExisting: 0,
    changedOnTarget: 0,
    goneOnTarget: 0,
    expired: 0,
    endedByNotBefore: 0,
  };
}

interface Scripts {
  sharedSessionMigrationRead(
    data: string,
    signature: string,
    groups: string,
  ): Promise<[string, string | null, string[], number, number, number] | null>;
  sharedSessionMigrationApply(data: string, signature: string, groups: string, ...args: (string | number)[]): Promise<string[]>;
  sharedSessionMigrationApplyCompact(key: string, ...args: (string | number)[]): Promise<string[]>;
}

/**
 * One run of the migration. Every run is the same reconciliation: the
 * first, with an empty state, copies everything; the next ones carry over
 * what changed on the source since the run before.
 */
export class LayoutMigration {
  private readonly source: Scripts;
  private readonly target: Scripts;

  constructor(
    private readonly sourceClient: Redis,
    targetClient: Redis | Cluster,
    private readonly prefix: string,
    private readonly dryRun = false,
    /** Section 14's layout, or section 15's (whose target may be the source itself: the names differ). */
    private readonly layout: TargetLayout = 'cluster',
  ) {
    sourceClient.defineCommand('sharedSessionMigrationRead', { numberOfKeys: 3, lua: SOURCE_READ });
    targetClient.defineCommand('sharedSessionMigrationApply', { numberOfKeys: 3, lua: TARGET_APPLY });
    targetClient.defineCommand('sharedSessionMigrationApplyCompact', { numberOfKeys: 1, lua: TARGET_APPLY_COMPACT });
    this.source = sourceClient as unknown as Scripts;
    this.target = targetClient as unknown as Scripts;
  }

  /** Brings the target in line with the source, as far as PROTOCOL.md section 14 allows; `state` follows (not in a dry run). */
  async run(state: MigrationState): Promise<MigrationResult> {
    const result: MigrationResult = { counts: emptyCounts(), changedOnBothSides: [], endedOnSourceOnly: [], ...(await this.section13()) };
    const seen = new Set<string>();
    await this.eachSourceBatch(async (sids) => {
      const read = await Promise.all(sids.map((sid) => this.read(sid)));
      await Promise.all(
        sids.map((sid, i) => {
          seen.add(sid);
          return this.reconcile(sid, read[i], state, result);
        }),
      );
    });
    // Copied before, and the source no longer has it (logged out, revoked, expired): the copy ends too.
    const gone = Object.keys(state.sessions).filter((sid) => !seen.has(sid) && state.sessions[sid] !== ENDED);
    for (let i = 0; i < gone.length; i += BATCH) {
      await Promise.all(gone.slice(i, i + BATCH).map((sid) => this.reconcile(sid, null, state, result)));
    }
    return result;
  }

  private async reconcile(sid: string, session: SourceSession | null, state: MigrationState, result: MigrationResult): Promise<void> {
    const { counts } = result;
    const copied = state.sessions[sid];
    // Why a session was not copied is counted once; the end of a copy is counted by what happens to it.
    const live = this.live(sid, session, result, copied === undefined);
    if (copied === ENDED) {
      // A logout must never be undone: not even by a v1 writer that re-creates the session on the source.
      if (live) counts.goneOnTarget += 1;
      return;
    }
    if (copied === undefined) {
      if (!live) return;
      const digest = this.digest(session);
      const [outcome, held] = await this.apply('create', sid, '', session);
      if (outcome === 'copied') counts.copied += 1;
      else if (held === digest)
        counts.unchanged += 1; // copied by an earlier run that stopped before saving its state
      else counts.skippedExisting += 1;
      if (outcome === 'copied' || held === digest) this.remember(state, sid, digest);
      return;
    }
    if (!live) {
      // Ended on the source since it was copied: the copy ends too, with a notice, even if a switched app wrote it
      // since (a logout is never undone); those are named, as the one case where the target's writes lose.
      const [outcome, held] = await this.apply('delete', sid, copied, null);
      if (outcome === 'deleted') {
        counts.deleted += 1;
        if (held !== copied) result.endedOnSourceOnly.push(sid);
      } else counts.goneOnTarget += 1;
      this.end(state, sid);
      return;
    }
    const digest = this.digest(session);
    const [outcome, held] = await this.apply(digest === copied ? 'extend' : 'replace', sid, copied, session);
    if (outcome === 'updated') counts.updated += 1;
    else if (outcome === 'extended') counts.extended += 1;
    else if (outcome === 'unchanged') counts.unchanged += 1;
    else if (outcome === 'gone') counts.goneOnTarget += 1;
    else if (held === digest)
      counts.unchanged += 1; // updated by an earlier run that stopped before saving its state
    else {
      counts.changedOnTarget += 1;
      if (digest !== copied) result.changedOnBothSides.push(sid);
      return;
    }
    if (outcome === 'gone') this.end(state, sid);
    else this.remember(state, sid, digest);
  }

  /**
   * The digest of what the target holds once the session is copied: on the
   * compact layout (section 15) its groups are its data's, which section 3
   * makes the same set as the source's groups key.
   */
  private digest(session: SourceSession): string {
    const groups = this.layout === 'compact' ? (parseCompactValue(this.compactValue(session))?.groups ?? []) : session.groups;
    return sessionDigest(session.data, session.signature, groups);
  }

  /** Section 15: the session's value on the compact layout. */
  private compactValue(session: SourceSession): string {
    return compactValue(session.signature ?? '', session.data);
  }

  private remember(state: MigrationState, sid: string, digest: string): void {
    if (!this.dryRun) state.sessions[sid] = digest;
  }

  private end(state: MigrationState, sid: string): void {
    if (!this.dryRun) state.sessions[sid] = ENDED;
  }

  /** The not-before mark and the number of group generations (section 13): neither is copied. */
  private async section13(): Promise<Pick<MigrationResult, 'notBefore' | 'generations'>> {
    const notBefore = Number((await this.sourceClient.get(`${this.prefix}:not-before`)) ?? 0) || 0;
    let generations = 0;
    let cursor = '0';
    do {
      const [next, keys] = await this.sourceClient.scan(cursor, 'MATCH', `${this.prefix}:group-generation:*`, 'COUNT', 1000);
      cursor = next;
      generations += keys.length;
    } while (cursor !== '0');
    return { notBefore, generations };
  }

  private async eachSourceBatch(each: (sids: string[]) => Promise<void>): Promise<void> {
    const dataPrefix = `${this.prefix}:data:`;
    const seen = new Set<string>();
    let cursor = '0';
    let pending: string[] = [];
    do {
      const [next, keys] = await this.sourceClient.scan(cursor, 'MATCH', `${dataPrefix}*`, 'COUNT', 1000);
      cursor = next;
      for (const key of keys) {
        const sid = key.slice(dataPrefix.length);
        // SCAN may return a key twice.
        if (!SESSION_ID.test(sid) || seen.has(sid)) continue;
        seen.add(sid);
        pending.push(sid);
      }
      while (pending.length >= BATCH || (cursor === '0' && pending.length > 0)) {
        await each(pending.slice(0, BATCH));
        pending = pending.slice(BATCH);
      }
    } while (cursor !== '0');
  }

  private async read(sid: string): Promise<SourceSession | null> {
    const k = v1Keys(this.prefix, sid);
    const reply = await this.source.sharedSessionMigrationRead(k.data, k.signature, k.groups);
    if (!reply) return null;
    const [data, signature, groups, ...pttl] = reply;
    return { data, signature, groups, pttl: pttl as [number, number, number] };
  }

  /** True for a session that is one on the source; else (when `counted`) counts why not. */
  private live(sid: string, session: SourceSession | null, result: MigrationResult, counted: boolean): session is SourceSession {
    if (session && refusedByNotBefore(sid, result.notBefore)) {
      if (counted) result.counts.endedByNotBefore += 1;
      return false;
    }
    // Gone since the SCAN, half-deleted (section 9: no signature; data not a JSON object, which the compact
    // layout cannot hold, section 15), or past its deadline (section 11).
    const malformed = session !== null && this.layout === 'compact' && parseCompactValue(this.compactValue(session)) === null;
    if (!session || session.signature === null || malformed || sessionIdExpired(sid)) {
      if (counted) result.counts.expired += 1;
      return false;
    }
    return true;
  }

  private apply(mode: string, sid: string, expected: string, session: SourceSession | null): Promise<string[]> {
    if (this.layout === 'compact') {
      // Section 15: one key, the value built from the source's signature and data, with its data key's PTTL.
      return this.target.sharedSessionMigrationApplyCompact(
        compactKey(this.prefix, sid),
        mode,
        expected,
        this.dryRun ? '1' : '',
        `${this.prefix}:invalidate`,
        sid,
        session ? this.compactValue(session) : '',
        session?.pttl[0] ?? -1,
      );
    }
    const k = clusterKeys(this.prefix, sid);
    return this.target.sharedSessionMigrationApply(
      k.data,
      k.signature,
      k.groups,
      mode,
      expected,
      this.dryRun ? '1' : '',
      `${this.prefix}:invalidate`,
      sid,
      session?.data ?? '',
      session?.signature ?? '',
      ...(session?.pttl ?? [-1, -1, -1]),
      ...(session?.groups ?? []),
    );
  }
}

function v1Keys(p: string, sid: string) {
  return { data: `${p}:data:${sid}`, signature: `${p}:signature:${sid}`, groups: `${p}:groups:${sid}` };
}

function clusterKeys(p: string, sid: string) {
  return { data: `${p}:{${sid}}:data`, signature: `${p}:{${sid}}:signature`, groups: `${p}:{${sid}}:groups` };
}

import type { Cluster, Redis } from 'ioredis';
import { createSessionLayout } from './layouts/create-session-layout';
import type { CopiedSession, CopyMode, SessionLayout } from './layouts/session-layout';
import { defineScript } from './redis-scripts';
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

/**
 * One run of the migration. Every run is the same reconciliation: the
 * first, with an empty state, copies everything; the next ones carry over
 * what changed on the source since the run before.
 */
export class LayoutMigration {
  /** The source's sessions, on the v1 layout (section 3). */
  private readonly source: SessionLayout;
  /** The target's, on section 14's or section 15's layout. */
  private readonly target: SessionLayout;
  private readonly readCommand = 'sharedSession:migrate-read:3';

  constructor(
    private readonly sourceClient: Redis,
    targetClient: Redis | Cluster,
    prefix: string,
    private readonly dryRun = false,
    /** Section 14's layout, or section 15's (whose target may be the source itself: the names differ). */
    layout: TargetLayout = 'cluster',
  ) {
    // The migration writes no session of its own: no user field, no limit, nothing to log.
    const quiet = { error: () => undefined, warn: () => undefined, log: () => undefined };
    const context = { prefix, userIdField: '', maxSessionsPerUser: 0, logger: quiet };
    this.source = createSessionLayout('v1', { ...context, client: sourceClient });
    this.target = createSessionLayout(layout, { ...context, client: targetClient });
    defineScript(sourceClient, this.readCommand, 'migrate-read', 3);
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

  private async reconcile(sid: string, session: CopiedSession | null, state: MigrationState, result: MigrationResult): Promise<void> {
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
      const digest = this.target.copyDigest(session);
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
    const digest = this.target.copyDigest(session);
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

  private remember(state: MigrationState, sid: string, digest: string): void {
    if (!this.dryRun) state.sessions[sid] = digest;
  }

  private end(state: MigrationState, sid: string): void {
    if (!this.dryRun) state.sessions[sid] = ENDED;
  }

  /** The not-before mark and the number of group generations (section 13): neither is copied. */
  private async section13(): Promise<Pick<MigrationResult, 'notBefore' | 'generations'>> {
    const notBefore = Number((await this.sourceClient.get(this.source.notBeforeKey)) ?? 0) || 0;
    let generations = 0;
    let cursor = '0';
    do {
      const [next, keys] = await this.sourceClient.scan(cursor, 'MATCH', this.source.generationKey('*'), 'COUNT', 1000);
      cursor = next;
      generations += keys.length;
    } while (cursor !== '0');
    return { notBefore, generations };
  }

  private async eachSourceBatch(each: (sids: string[]) => Promise<void>): Promise<void> {
    await this.source.scanSessionIds(async (sids) => {
      for (let i = 0; i < sids.length; i += BATCH) await each(sids.slice(i, i + BATCH));
    });
  }

  private async read(sid: string): Promise<CopiedSession | null> {
    const k = this.source.keys(sid);
    const read = (this.sourceClient as unknown as Record<string, (...keys: string[]) => Promise<unknown>>)[this.readCommand];
    const reply = (await read.call(this.sourceClient, k.data, k.signature, k.groups)) as
      [string, string | null, string[], number, number, number] | null;
    if (!reply) return null;
    const [data, signature, groups, ...pttl] = reply;
    return { data, signature, groups, pttl: pttl as [number, number, number] };
  }

  /** True for a session that is one on the source; else (when `counted`) counts why not. */
  private live(sid: string, session: CopiedSession | null, result: MigrationResult, counted: boolean): session is CopiedSession {
    if (session && refusedByNotBefore(sid, result.notBefore)) {
      if (counted) result.counts.endedByNotBefore += 1;
      return false;
    }
    // Gone since the SCAN, half-deleted (section 9: no signature; data not a JSON object, which the compact
    // layout cannot hold, section 15), or past its deadline (section 11).
    const malformed = session !== null && !this.target.canHold(session);
    if (!session || session.signature === null || malformed || sessionIdExpired(sid)) {
      if (counted) result.counts.expired += 1;
      return false;
    }
    return true;
  }

  private apply(mode: CopyMode, sid: string, expected: string, session: CopiedSession | null): Promise<string[]> {
    return this.target.applyCopy(mode, sid, expected, this.dryRun, session);
  }
}

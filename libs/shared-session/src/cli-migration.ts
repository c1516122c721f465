import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { MigrationCounts, MigrationResult, MigrationState, STATE_FORMAT, TargetLayout } from './layout-migration';
import { GlobalOptions, UsageError } from './cli-usage';

/** `migrate-layout`'s flags, its state file between runs, and its report (cli.ts runs it). */

export interface MigrateFlags {
  toCluster?: string;
  /** Section 15: true (the source Redis itself), a redis:// URL, or a Redis Cluster's host:port,... */
  toCompact?: string | true;
  state: string;
  finish?: boolean;
  dryRun?: boolean;
  /** Print the run's `migration_step` event (PROTOCOL.md section 16) as one JSON line on stderr. */
  events?: boolean;
}

/** Where a migration writes: the layout, and the target as given (`source`: the source Redis itself). */
export function migrationTarget(flags: MigrateFlags, toClusterFromCli: boolean): { layout: TargetLayout; target: string; flag: string } {
  if (flags.toCompact === undefined) {
    if (flags.toCluster === undefined) throw new UsageError('give --to-cluster <nodes> or --to-compact [target]');
    return { layout: 'cluster', target: flags.toCluster, flag: '--to-cluster' };
  }
  // REDIS_CLUSTER_NODES may be there for --cluster or --to-cluster: only --to-cluster itself is a contradiction.
  if (toClusterFromCli) throw new UsageError('give --to-cluster or --to-compact, not both');
  return { layout: 'compact', target: flags.toCompact === true ? 'source' : flags.toCompact, flag: '--to-compact' };
}

/** The state file: none before the first run, the first run's after it (`--finish`), and for the same prefix and layout. */
export function loadState(flags: MigrateFlags, prefix: string, layout: TargetLayout, target: string): MigrationState {
  const exists = existsSync(flags.state);
  if (!flags.finish) {
    if (exists) throw new UsageError(`${flags.state} exists: a later run takes --finish (or give another --state for a new migration)`);
    return { format: STATE_FORMAT, prefix, target, layout, sessions: {} };
  }
  if (!exists) throw new UsageError(`--finish: no state file ${flags.state} (the first run, without --finish, makes it)`);
  let state: MigrationState;
  try {
    state = JSON.parse(readFileSync(flags.state, 'utf8')) as MigrationState;
  } catch (err) {
    throw new UsageError(`${flags.state}: not a state file of migrate-layout (${(err as Error).message})`);
  }
  if (state?.format !== STATE_FORMAT || typeof state.sessions !== 'object') {
    throw new UsageError(`${flags.state}: not a state file of migrate-layout`);
  }
  if (state.prefix !== prefix) throw new UsageError(`${flags.state} is the state of prefix ${state.prefix}, not ${prefix}`);
  // The digests of one layout mean nothing to the other.
  if ((state.layout ?? 'cluster') !== layout)
    throw new UsageError(`${flags.state} is the state of a migration to the ${state.layout ?? 'cluster'} layout, not ${layout}`);
  return state;
}

/** Written whole, then renamed: a crash leaves the old state or the new one, never half of one. */
export function saveState(file: string, state: MigrationState): void {
  writeFileSync(`${file}.tmp`, JSON.stringify(state));
  renameSync(`${file}.tmp`, file);
}

const COUNT_NAMES: [keyof MigrationCounts, string][] = [
  ['copied', 'copied'],
  ['unchanged', 'unchanged'],
  ['updated', 'updated'],
  ['deleted', 'deleted'],
  ['extended', 'time to live extended'],
  ['skippedExisting', 'skipped (another session on the target)'],
  ['changedOnTarget', 'kept (written on the target since)'],
  ['goneOnTarget', 'not re-created (ended on the target)'],
  ['expired', 'expired meanwhile'],
  ['endedByNotBefore', 'ended by the not-before mark'],
];

export function printMigration(
  options: GlobalOptions,
  flags: MigrateFlags,
  result: MigrationResult,
  kept: number,
  sameRedis: boolean,
): void {
  if (options.json) {
    console.log(JSON.stringify({ dryRun: !!flags.dryRun, ...result, stateSessions: kept }));
    return;
  }
  const verb = flags.dryRun ? 'would be ' : '';
  console.log(`${flags.dryRun ? 'dry run: ' : ''}${COUNT_NAMES.map(([k, name]) => `${verb}${name} ${result.counts[k]}`).join(', ')}`);
  if (result.notBefore > 0 && sameRedis) {
    console.log(
      `note: the not-before mark (${new Date(result.notBefore).toISOString()}) is the target's too (the same Redis), and the sessions it ends were not copied (PROTOCOL.md section 15)`,
    );
  } else if (result.notBefore > 0) {
    console.log(
      `note: the source's not-before mark (${new Date(result.notBefore).toISOString()}) was not copied, and neither were the sessions it ends (PROTOCOL.md section 14)`,
    );
  }
  // On the same Redis the group generations are the target's too: nothing starts again.
  if (result.generations > 0 && !sameRedis) {
    console.log(
      `note: ${result.generations} group cache generation(s) on the source are not copied: on the target they start again from 0 (PROTOCOL.md section 14.2); clear nginx's proxy cache at the switch, or copies cached before a purge may be served again`,
    );
  }
  if (result.changedOnBothSides.length > 0) {
    console.log(
      `note: changed on the source and written on the target since the last run, left as the target holds them: ${result.changedOnBothSides.join(' ')}`,
    );
  }
  if (result.endedOnSourceOnly.length > 0) {
    console.log(
      `note: ended on the source since the last run (a logout, a revocation or an expiry) and written on the target since, deleted there all the same (a logout is never undone): ${result.endedOnSourceOnly.join(' ')}`,
    );
  }
  if (!flags.dryRun) console.log(`state: ${flags.state} (${kept} session(s) copied)`);
}

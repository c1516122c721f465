#!/usr/bin/env node
/**
 * The operator's tool (`npx nest-resty-shared-session <command>`): control
 * from outside the request (PROTOCOL.md section 13) without the app, and the
 * move from the v1 layout to the cluster layout on a Redis Cluster (section
 * 14) or to the compact layout (section 15: `migrate-layout`). Redis
 * and the key prefix come from flags or the environment. Exit codes: 0 done,
 * 1 failed (Redis unreachable or erroring), 2 bad usage or argument, 3 done
 * but not every nginx acknowledged in time (`--wait`).
 */
import { Command, CommanderError, Option } from 'commander';
import Redis, { Cluster } from 'ioredis';
import { sessionRepository } from './flask-redis-session.store';
import { isKeyLayout, layoutOptionProblem } from './layouts/create-session-layout';
import type { KeyLayout } from './layouts/session-layout';
import { ENDED, LayoutMigration } from './layout-migration';
import { migrationStepEvent } from './shared-session.events';
import { GlobalOptions, UsageError } from './cli-usage';
import { addThrottleCommands } from './cli-throttle';
import { loadState, MigrateFlags, migrationTarget, printMigration, saveState } from './cli-migration';
import { REDIS_CLIENT_DEFAULTS, SharedSessionRedis, whenReady } from './redis-client';
import { ControlOptions, ControlResult, SessionControl, UserSession } from './session-control';
import { userIdOf } from './session-control.keys';
import type { SessionRepository } from './session-repository';
import {
  DEFAULT_KEY_PREFIX,
  DEFAULT_REDIS_URL,
  DEFAULT_TTL_SECONDS,
  DEFAULT_USER_ID_FIELD,
  KEY_PREFIX_PATTERN,
} from './shared-session.constants';

/** The URL without its password, for messages. */
function shown(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '(not a URL)';
  }
}

/** The client of `--redis`, ready, or an error that says which Redis could not be reached. */
async function openRedis(options: GlobalOptions): Promise<Redis> {
  if (!/^rediss?:\/\//.test(options.redis))
    throw new UsageError(`--redis must be a redis:// or rediss:// URL, not ${shown(options.redis)}`);
  if (!KEY_PREFIX_PATTERN.test(options.prefix)) throw new UsageError('--prefix must be 1 to 64 characters of A-Z a-z 0-9 _ . : { } -');
  const client = new Redis(options.redis, { ...REDIS_CLIENT_DEFAULTS, retryStrategy: () => null });
  client.on('error', () => undefined); // reported below, once
  if (!(await whenReady(client, 3000))) {
    client.disconnect();
    throw new Error(`cannot reach Redis at ${shown(options.redis)}`);
  }
  return client;
}

async function connect(
  options: GlobalOptions,
): Promise<{ client: SharedSessionRedis; control: SessionControl; sessions: SessionRepository }> {
  const ttlSeconds = Number(options.ttl);
  if (!Number.isInteger(ttlSeconds) || ttlSeconds <= 0) throw new UsageError('--ttl must be a positive whole number of seconds');
  const layout = keyLayout(options);
  const client = options.cluster !== undefined ? await openCluster(clusterNodes(options.cluster, '--cluster')) : await openRedis(options);
  const quiet = { error: () => undefined, warn: () => undefined, log: () => undefined };
  const sessions = sessionRepository({
    client,
    keyPrefix: options.prefix,
    keyLayout: layout,
    logger: quiet,
    userIdField: options.userField,
  });
  return { client, sessions, control: new SessionControl({ sessions, client, ttlSeconds }) };
}

/** `--layout`, checked: by default the cluster layout on --cluster, v1 on --redis; never one the layout refuses. */
function keyLayout(options: GlobalOptions): KeyLayout {
  const layout = options.layout ?? (options.cluster !== undefined ? 'cluster' : 'v1');
  if (!isKeyLayout(layout)) throw new UsageError('--layout must be v1, cluster or compact');
  checkLayout(layout, options.cluster !== undefined, options.prefix);
  return layout;
}

/** What the layout itself refuses: a Redis Cluster (v1), a prefix that would be the hash tag (the others). */
function checkLayout(layout: KeyLayout, cluster: boolean, prefix: string): void {
  const problem = layoutOptionProblem(layout, { cluster, prefix });
  if (problem?.option === 'layout') throw new UsageError(`--layout ${layout} is not for a Redis Cluster (${problem.reason})`);
  if (problem) throw new UsageError(`--prefix must hold no { or } for the ${layout} layout (${problem.reason})`);
}

/** Runs `action` with a connection, closes it, and turns the outcome into output and an exit code. */
async function run(
  program: Command,
  action: (c: Awaited<ReturnType<typeof connect>>, options: GlobalOptions) => Promise<number>,
): Promise<void> {
  const options = program.opts<GlobalOptions>();
  if (options.cluster !== undefined && program.getOptionValueSource('redis') !== 'default') {
    throw new UsageError('give --redis (REDIS_URL) or --cluster (REDIS_CLUSTER_NODES), not both');
  }
  const connection = await connect(options);
  try {
    process.exitCode = await action(connection, options);
  } finally {
    await connection.control.close();
    connection.client.disconnect();
  }
}

function printResult(options: GlobalOptions, what: string, result: ControlResult & Record<string, unknown>): number {
  if (options.json) console.log(JSON.stringify(result));
  else {
    console.log(what);
    const c = result.confirmation;
    if (c) console.log(`acknowledged by ${c.acknowledged} of ${c.expected} nginx subscriber(s)${c.timedOut ? ' (timed out)' : ''}`);
  }
  return result.confirmation?.timedOut ? 3 : 0;
}

function printSessions(options: GlobalOptions, userId: string, sessions: UserSession[], untracked: string[]): number {
  if (options.json) {
    console.log(JSON.stringify({ userId, sessions, ...(untracked.length ? { untracked } : {}) }));
    return 0;
  }
  if (sessions.length === 0 && untracked.length === 0) console.log(`no live session for ${userId}`);
  for (const s of sessions) {
    const from = [s.ip, s.userAgent].filter(Boolean).join(' ');
    console.log(
      `${s.sessionId}  created ${s.createdAt?.toISOString() ?? 'unknown'}  last seen ${s.lastSeenAt.toISOString()}  groups ${s.groups.join(',') || '-'}${from ? `  ${from}` : ''}`,
    );
  }
  for (const sid of untracked) console.log(`${sid}  (not in the index: written by a v1 writer)`);
  return 0;
}

/** PROTOCOL.md section 13.6: sessions no index knows (v1 writers), by SCAN over every session (where the layout can). */
async function scanUntracked(sessions: SessionRepository, options: GlobalOptions, userId: string, tracked: Set<string>): Promise<string[]> {
  const found: string[] = [];
  await sessions.scanSessionIds(async (sids) => {
    const read = await Promise.all(sids.filter((sid) => !tracked.has(sid)).map((sid) => sessions.readJson(sid)));
    for (const session of read) {
      if (session === null) continue;
      try {
        const data: unknown = JSON.parse(session.json);
        if (data && typeof data === 'object' && userIdOf(data as Record<string, unknown>, options.userField) === userId)
          found.push(session.sid);
      } catch {
        // not a session of anyone's
      }
    }
  });
  return found;
}

function waitOptions(o: { wait?: boolean; timeout?: string }): ControlOptions {
  if (!o.wait) return { wait: false };
  const timeoutMs = Number(o.timeout ?? 1000);
  if (!(timeoutMs > 0)) throw new UsageError('--timeout must be a positive number of milliseconds');
  return { wait: true, timeoutMs };
}

function parseDate(text: string): Date {
  const date = text === 'now' ? new Date() : new Date(text);
  if (Number.isNaN(date.getTime())) throw new UsageError(`not a date: ${text} (use ISO 8601, e.g. 2026-11-29T21:00:00Z, or "now")`);
  return date;
}

/** `host:port,host:port`: Redis Cluster startup nodes. */
function clusterNodes(text: string, flag = '--to-cluster'): { host: string; port: number }[] {
  const nodes = text
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
    .map((node) => {
      const colon = node.lastIndexOf(':');
      const host = node.slice(0, colon).replace(/^\[(.*)\]$/, '$1');
      const port = Number(node.slice(colon + 1));
      if (colon <= 0 || !host || !Number.isInteger(port) || port < 1 || port > 65535) {
        throw new UsageError(`${flag}: not host:port: ${node}`);
      }
      return { host, port };
    });
  if (nodes.length === 0) throw new UsageError(`${flag} needs at least one host:port`);
  return nodes;
}

/** A Redis Cluster (to work on, or to migrate to), ready, or an error that says so. */
async function openCluster(nodes: { host: string; port: number }[]): Promise<Cluster> {
  const cluster = new Cluster(nodes, {
    lazyConnect: true,
    clusterRetryStrategy: (attempt: number) => (attempt > 3 ? null : 300),
    redisOptions: { connectTimeout: 2000, commandTimeout: 10_000, maxRetriesPerRequest: 2 },
  });
  cluster.on('error', () => undefined); // reported below, once
  try {
    await cluster.connect();
  } catch {
    cluster.disconnect();
    throw new Error(`cannot reach the Redis Cluster at ${nodes.map((n) => `${n.host}:${n.port}`).join(',')}`);
  }
  return cluster;
}

export function buildProgram(): Command {
  const program = new Command('nest-resty-shared-session')
    .description(
      'Operate on shared sessions in Redis (PROTOCOL.md section 13): list, revoke, purge a group cache at nginx, list and lift login bans; move them to a Redis Cluster (section 14)',
    )
    .addOption(new Option('--redis <url>', 'Redis URL').env('REDIS_URL').default(DEFAULT_REDIS_URL))
    .addOption(
      new Option(
        '--cluster <nodes>',
        'a Redis Cluster (the cluster layout, unless --layout compact) instead of --redis: host:port,host:port,... (not --scan, clear-not-before)',
      ).env('REDIS_CLUSTER_NODES'),
    )
    .addOption(
      new Option(
        '--layout <layout>',
        'the key layout: v1, cluster or compact (PROTOCOL.md sections 3, 14, 15; default: cluster on --cluster, else v1)',
      ).env('SESSION_KEY_LAYOUT'),
    )
    .addOption(new Option('--prefix <prefix>', 'Redis key prefix').env('SESSION_KEY_PREFIX').default(DEFAULT_KEY_PREFIX))
    .addOption(
      new Option('--user-field <field>', 'session field that names the user').env('SESSION_USER_ID_FIELD').default(DEFAULT_USER_ID_FIELD),
    )
    .addOption(
      new Option('--ttl <seconds>', 'the app\'s ttlSeconds (for "last seen")')
        .env('SESSION_TTL_SECONDS')
        .default(String(DEFAULT_TTL_SECONDS)),
    )
    .option('--json', 'print JSON')
    .showHelpAfterError();
  const waitFlags = (c: Command) =>
    c
      .option('--wait', 'return once every subscribed nginx acknowledged (exit 3 if not in time)')
      .option('--timeout <ms>', 'longest wait', '1000');

  program
    .command('sessions')
    .description("list a user's live sessions")
    .argument('<userId>', 'the user id (e.g. the username)')
    .option('--scan', 'also find sessions no index knows (v1 writers such as Flask): SCAN over every session')
    .action((userId: string, o: { scan?: boolean }) =>
      run(program, async ({ control, sessions }, options) => {
        const listed = await control.listSessions(userId);
        const untracked = o.scan ? await scanUntracked(sessions, options, userId, new Set(listed.map((s) => s.sessionId))) : [];
        return printSessions(options, userId, listed, untracked);
      }),
    );

  waitFlags(
    program
      .command('revoke-user')
      .description('end every live session of a user (log out everywhere)')
      .argument('<userId>')
      .option('--except <sessionId...>', 'sessions to keep')
      .option('--scan', 'also end sessions no index knows (v1 writers): SCAN over every session'),
  ).action((userId: string, o: { except?: string[]; scan?: boolean; wait?: boolean; timeout?: string }) =>
    run(program, async ({ control, sessions }, options) => {
      const wait = waitOptions(o);
      const result = await control.revokeUser(userId, { ...wait, except: o.except });
      let ended = result.sessions;
      if (o.scan) {
        for (const sid of await scanUntracked(sessions, options, userId, new Set(o.except ?? []))) if (await sessions.end(sid)) ended += 1;
      }
      return printResult(options, `ended ${ended} session(s) of ${userId}`, { ...result, sessions: ended });
    }),
  );

  waitFlags(program.command('revoke-session').description('end one session').argument('<sessionId>')).action(
    (sid: string, o: { wait?: boolean; timeout?: string }) =>
      run(program, async ({ control }, options) => {
        const result = await control.revokeSession(sid, waitOptions(o));
        return printResult(options, result.sessions ? `ended session ${sid}` : `no session ${sid}`, { ...result });
      }),
  );

  waitFlags(
    program
      .command('revoke-before')
      .description('set the not-before mark: every session issued before <date> ends, at nginx too (untimed v1 sessions too)')
      .argument('<date>', 'ISO 8601 date, or "now"'),
  ).action((text: string, o: { wait?: boolean; timeout?: string }) =>
    run(program, async ({ control }, options) => {
      const result = await control.revokeIssuedBefore(parseDate(text), waitOptions(o));
      return printResult(options, `not-before mark: ${result.notBefore.toISOString()}`, { ...result });
    }),
  );

  program
    .command('clear-not-before')
    .description('lift the not-before mark (v1 sessions work again)')
    .action(() =>
      run(program, async ({ sessions }, options) => {
        // Section 13.2 on v1; on the other layouts the mark only moves forward (sections 14.3 and 15): the layout says so.
        await sessions.liftNotBefore();
        return printResult(options, 'not-before mark lifted', { sessions: 0 });
      }),
    );

  waitFlags(
    program
      .command('purge-group')
      .description('new cache generation for a group: nginx stops serving what it cached for it')
      .argument('<group>'),
  ).action((group: string, o: { wait?: boolean; timeout?: string }) =>
    run(program, async ({ control }, options) => {
      const result = await control.invalidateGroupCache(group, waitOptions(o));
      return printResult(options, `group ${group}: cache generation ${result.generation}`, { ...result });
    }),
  );
  addThrottleCommands(program, run);
  program
    .command('migrate-layout')
    .description(
      'copy the sessions of --redis (v1 layout) to a Redis Cluster (cluster layout, --to-cluster) or to the compact layout (--to-compact: on the same Redis, another, or a Redis Cluster) without logging anyone out: run once, switch the apps and nginx, run again with --finish (PROTOCOL.md sections 14 and 15)',
    )
    .addOption(new Option('--to-cluster <nodes>', 'the Redis Cluster: host:port,host:port,...').env('REDIS_CLUSTER_NODES'))
    .addOption(
      new Option(
        '--to-compact [target]',
        'the compact layout (PROTOCOL.md section 15): on the source Redis itself (no value), a redis:// URL, or a Redis Cluster (host:port,...)',
      ),
    )
    .requiredOption('--state <file>', 'what was copied, kept between the runs (made by the first run)')
    .option('--finish', 'a later run (after the switch; again at will): carries over what changed on the source since the run before')
    .option('--dry-run', 'say what would be done; write nothing')
    .option('--events', "print the run's migration_step event (PROTOCOL.md section 16) as one JSON line on stderr")
    .action(async (flags: MigrateFlags, command: Command) => {
      const options = program.opts<GlobalOptions>();
      const { layout, target: named, flag } = migrationTarget(flags, command.getOptionValueSource('toCluster') === 'cli');
      checkLayout(layout, false, options.prefix);
      const sameRedis = named === 'source';
      const url = /^rediss?:\/\//.test(named) ? named : undefined;
      const nodes = sameRedis || url ? undefined : clusterNodes(named, flag);
      const state = loadState(flags, options.prefix, layout, named);
      const source = await openRedis(options);
      let target: Redis | Cluster | undefined;
      try {
        target = sameRedis ? source : nodes ? await openCluster(nodes) : await openRedis({ ...options, redis: url! });
        const result = await new LayoutMigration(source, target, options.prefix, flags.dryRun, layout).run(state);
        if (!flags.dryRun) saveState(flags.state, state);
        if (flags.events && !flags.dryRun) {
          const { copied, updated, deleted } = result.counts;
          console.error(JSON.stringify(migrationStepEvent('migrate-layout', copied + updated + deleted)));
        }
        printMigration(options, flags, result, Object.values(state.sessions).filter((d) => d !== ENDED).length, sameRedis);
        process.exitCode = 0;
      } finally {
        if (target !== source) target?.disconnect();
        source.disconnect();
      }
    });
  return program;
}

async function main(): Promise<void> {
  const program = buildProgram().exitOverride();
  try {
    await program.parseAsync(process.argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      // Help and version exit 0; commander already printed what was wrong.
      process.exitCode = err.exitCode === 0 ? 0 : 2;
      return;
    }
    const usage = err instanceof UsageError || err instanceof TypeError;
    console.error(`nest-resty-shared-session: ${(err as Error).message}`);
    process.exitCode = usage ? 2 : 1;
  }
}

if (require.main === module) void main();

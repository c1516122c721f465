import type { Command } from 'commander';
import { GlobalOptions, UsageError } from './cli-usage';
import { LoginBan, RedisLoginThrottleStorage } from './login-throttle.storage';
import type { SharedSessionRedis } from './redis-connection';
import type { SessionRepository } from './session-repository';

/** How cli.ts runs a command: with a connection, its exit code from `action`. */
export type RunCommand = (
  program: Command,
  action: (c: { client: SharedSessionRedis; sessions: SessionRepository }, options: GlobalOptions) => Promise<number>,
) => Promise<void>;

function banLine(b: LoginBan): string {
  const who = b.user === undefined ? `address ${b.address}` : `${b.user} at ${b.address}`;
  return `${who}  until ${b.until.toISOString()}`;
}

/** Login throttling's commands: `bans` lists the bans that run, `lift-ban <user|address>` lifts them. */
export function addThrottleCommands(program: Command, run: RunCommand): void {
  program
    .command('bans')
    .description('list the login bans that run (login throttling): a user at an address, or an address alone')
    .action(() =>
      run(program, async ({ client, sessions }, options) => {
        const bans = await new RedisLoginThrottleStorage(client, sessions).bans();
        if (options.json) console.log(JSON.stringify({ bans }));
        else if (bans.length === 0) console.log('no ban');
        else for (const b of bans) console.log(banLine(b));
        return 0;
      }),
    );

  program
    .command('lift-ban')
    .description("lift the login bans of a user (at every address) or of a client address, and forget the address's failures")
    .argument('<subject>', 'a user id or a client address')
    .action((subject: string) => {
      if (subject.length === 0) throw new UsageError('lift-ban: give a user id or a client address');
      return run(program, async ({ client, sessions }, options) => {
        const lifted = await new RedisLoginThrottleStorage(client, sessions).liftBans(subject);
        if (options.json) console.log(JSON.stringify({ lifted }));
        else {
          console.log(`lifted ${lifted.length} ban(s) of ${subject}`);
          for (const b of lifted) console.log(banLine(b));
        }
        return 0;
      });
    });
}

import { randomUUID } from 'node:crypto';
import type { SharedSessionRedis } from './redis-connection';
import { defineScript } from './redis-scripts';
import type { SessionRepository } from './session-repository';

/** Injection token of the LoginThrottleStorage that LoginThrottle uses (Redis by default). */
export const LOGIN_THROTTLE_STORAGE = Symbol('LOGIN_THROTTLE_STORAGE');

/** A ban that runs: a user at a client address, or (no `user`) an address alone. */
export interface LoginBan {
  user?: string;
  address: string;
  /** When the ban ends. */
  until: Date;
}

/** A subject's limit: this many failures within `windowMs` ban it for `banMs`. */
export interface ThrottleLimit {
  max: number;
  windowMs: number;
  banMs: number;
}

/**
 * Where login failures are counted and bans kept. A subject is a user at a
 * client address, or (no user) an address alone. Every method rejects when
 * the store cannot answer.
 */
export interface LoginThrottleStorage {
  /** Milliseconds left of the subject's ban; 0 when it has none. */
  banned(address: string, user?: string): Promise<number>;
  /** One failure of the subject; the milliseconds of its ban when this failure started one (or one runs), else 0. */
  failed(address: string, user: string | undefined, limit: ThrottleLimit): Promise<number>;
  /** The user logged in from the address: its failures there are forgotten. */
  succeeded(address: string, user: string): Promise<void>;
  /** Every ban that runs, the one ending last first. */
  bans(): Promise<LoginBan[]>;
  /** Lifts every ban whose user or address is `subject` (and an address's failures); answers the bans lifted. */
  liftBans(subject: string): Promise<LoginBan[]>;
}

type Command = (...args: (string | number)[]) => Promise<unknown>;

/**
 * The storage in Redis: per subject a sliding window of failures and a ban,
 * in one slot (one script per operation, resty/lib/resty/shared_session/scripts/throttle-*.lua),
 * and an index of the bans that run (a key of its own slot, written after
 * the ban: a failure in between leaves a ban that runs its course unlisted).
 */
export class RedisLoginThrottleStorage implements LoginThrottleStorage {
  private readonly commands: Record<'check' | 'failed' | 'lift', Command>;

  constructor(
    private readonly client: SharedSessionRedis,
    private readonly sessions: SessionRepository,
  ) {
    const named = client as unknown as Record<string, Command>;
    const command = (name: 'throttle-check' | 'throttle-failed' | 'throttle-lift', keys: number): Command => {
      const id = `sharedSession:${name}:${keys}`;
      if (typeof named[id] !== 'function') defineScript(client, id, name, keys);
      return named[id].bind(client);
    };
    this.commands = { check: command('throttle-check', 1), failed: command('throttle-failed', 2), lift: command('throttle-lift', 2) };
  }

  async banned(address: string, user?: string): Promise<number> {
    return Number(await this.commands.check(this.sessions.throttleKeys(address, user).ban));
  }

  async failed(address: string, user: string | undefined, limit: ThrottleLimit): Promise<number> {
    const k = this.sessions.throttleKeys(address, user);
    const [fresh, ms] = (await this.commands.failed(k.failures, k.ban, limit.windowMs, limit.max, limit.banMs, randomUUID())) as number[];
    if (fresh === 1) {
      const now = Date.now();
      await this.client
        .multi()
        .zremrangebyscore(this.sessions.throttleBansKey, '-inf', now)
        .zadd(this.sessions.throttleBansKey, now + ms, banMember(address, user))
        .exec();
    }
    return Number(ms);
  }

  async succeeded(address: string, user: string): Promise<void> {
    await this.client.del(this.sessions.throttleKeys(address, user).failures);
  }

  async bans(): Promise<LoginBan[]> {
    const flat = await this.client.zrangebyscore(this.sessions.throttleBansKey, Date.now(), '+inf', 'WITHSCORES');
    const listed: LoginBan[] = [];
    for (let i = 0; i < flat.length; i += 2) {
      const [address, user] = JSON.parse(flat[i]) as [string, string?];
      listed.push({ address, ...(user === undefined ? {} : { user }), until: new Date(Number(flat[i + 1])) });
    }
    // The ban's own key has the last word (a ban lifted by hand, or the index written late).
    const left = await Promise.all(listed.map((b) => this.banned(b.address, b.user)));
    return listed.filter((_, i) => left[i] > 0).reverse();
  }

  async liftBans(subject: string): Promise<LoginBan[]> {
    const lifted = (await this.bans()).filter((b) => b.user === subject || b.address === subject);
    for (const b of lifted) {
      const k = this.sessions.throttleKeys(b.address, b.user);
      await this.commands.lift(k.failures, k.ban);
      await this.client.zrem(this.sessions.throttleBansKey, banMember(b.address, b.user));
    }
    // An address's failures are forgotten even when it is not banned (yet).
    const k = this.sessions.throttleKeys(subject);
    await this.commands.lift(k.failures, k.ban);
    return lifted;
  }
}

function banMember(address: string, user: string | undefined): string {
  return JSON.stringify(user === undefined ? [address] : [address, user]);
}

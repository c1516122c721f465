import { Inject, Injectable } from '@nestjs/common';
import { redisReachable, type SharedSessionRedis } from './redis-client';
import { SessionControl } from './session-control';
import { SHARED_SESSION_CONFIG, SHARED_SESSION_REDIS } from './shared-session.constants';
import type { SharedSessionConfig } from './shared-session.options';

/** What `isHealthy(key)` answers: terminus's HealthIndicatorResult, `{ [key]: { status, ...details } }`. */
export type SharedSessionHealthResult<Key extends string = string> = Record<
  Key,
  { status: 'up' | 'down'; redis: 'up' | 'down'; acknowledgements?: 'up' | 'down' | 'idle' }
>;

interface TerminusSession {
  up(data: object): unknown;
  down(data: object): unknown;
}
interface TerminusIndicators {
  check(key: string): TerminusSession;
}

const PING_TIMEOUT_MS = 1000;

/**
 * A @nestjs/terminus health indicator (terminus is an optional peer
 * dependency: loaded on the first check): up when Redis answers PING (on a
 * cluster, every primary) and, when synchronous revocation is used
 * (`revocation.wait`, `revocation.barrierIntervalMs`, or a call that waited),
 * the acknowledgement subscriber is subscribed. In a HealthController:
 * `this.health.check([() => this.sharedSession.isHealthy('shared_session')])`.
 */
@Injectable()
export class SharedSessionHealthIndicator {
  private indicators?: TerminusIndicators;

  constructor(
    @Inject(SHARED_SESSION_REDIS) private readonly client: SharedSessionRedis,
    @Inject(SHARED_SESSION_CONFIG) private readonly config: SharedSessionConfig,
    private readonly control: SessionControl,
  ) {}

  async isHealthy<const Key extends string>(key: Key): Promise<SharedSessionHealthResult<Key>> {
    const indicator = this.terminus().check(key);
    const [redis, acknowledgements] = await Promise.all([this.redis(), this.acknowledgements()]);
    const details = { redis, ...(acknowledgements === undefined ? {} : { acknowledgements }) };
    const up = redis === 'up' && acknowledgements !== 'down';
    return (up ? indicator.up(details) : indicator.down(details)) as SharedSessionHealthResult<Key>;
  }

  /** PING on the client's connection, or on every primary of a cluster; a client not connected is down at once. */
  private async redis(): Promise<'up' | 'down'> {
    return (await redisReachable(this.client, PING_TIMEOUT_MS)) ? 'up' : 'down';
  }

  /** undefined: synchronous revocation not used, the subscriber does not matter. */
  private async acknowledgements(): Promise<'up' | 'down' | 'idle' | undefined> {
    const configured = this.config.revocation.wait || this.config.revocation.barrierIntervalMs > 0;
    const state = this.control.acknowledgementSubscriber;
    if (state !== 'idle') return state;
    if (!configured) return undefined;
    // Opened on first use: a check before any revocation opens it, so that the first revocation does not find it broken.
    return this.control.prepareSynchronousRevocation().then(
      () => 'up' as const,
      () => 'down' as const,
    );
  }

  private terminus(): TerminusIndicators {
    if (this.indicators) return this.indicators;
    let terminus: { HealthIndicatorService: new () => TerminusIndicators };
    try {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      terminus = require('@nestjs/terminus');
    } catch (err) {
      throw new Error(
        `SharedSessionHealthIndicator needs @nestjs/terminus (${(err as Error)?.message ?? err}): install it beside the module (npm install @nestjs/terminus)`,
        { cause: err },
      );
    }
    this.indicators = new terminus.HealthIndicatorService();
    return this.indicators;
  }
}

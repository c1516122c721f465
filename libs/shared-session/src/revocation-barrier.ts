import { Inject, Injectable, Logger, OnApplicationBootstrap, OnApplicationShutdown } from '@nestjs/common';
import { SessionControl } from './session-control';
import { SHARED_SESSION_CONFIG } from './shared-session.constants';
import type { SharedSessionConfig } from './shared-session.options';

/**
 * The periodic barrier of `revocation.barrierIntervalMs`: every interval, a
 * `!ack <id>` notice alone (PROTOCOL.md section 13.4) and the wait for its
 * acknowledgements, so that the revocation lag metric has figures between
 * revocations. One barrier at a time (a slow one is not overlapped); a
 * failure (Redis down) is logged once per outage and retried at the next
 * tick. Off (no timer) by default.
 */
@Injectable()
export class RevocationBarrier implements OnApplicationBootstrap, OnApplicationShutdown {
  private readonly logger = new Logger('SharedSession');
  private timer?: NodeJS.Timeout;
  private running = false;
  private failing = false;

  constructor(
    @Inject(SHARED_SESSION_CONFIG) private readonly config: SharedSessionConfig,
    private readonly control: SessionControl,
  ) {}

  onApplicationBootstrap(): void {
    const interval = this.config.revocation.barrierIntervalMs;
    if (interval <= 0) return;
    this.timer = setInterval(() => void this.tick(), interval);
    this.timer.unref();
  }

  onApplicationShutdown(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  private async tick(): Promise<void> {
    if (this.running) return;
    this.running = true;
    try {
      await this.control.barrier();
      if (this.failing) this.logger.log('revocation barrier: published again');
      this.failing = false;
    } catch (err) {
      if (!this.failing) this.logger.warn(`revocation barrier not published (${(err as Error)?.message ?? err}); retried every interval`);
      this.failing = true;
    } finally {
      this.running = false;
    }
  }
}

import { randomBytes } from 'node:crypto';
import { type SharedSessionRedis as Redis, whenReady } from './redis-client';

import { ackNotice } from './session-control.keys';
import { NO_METRICS, SessionMetrics } from './shared-session.metrics';

/** What a synchronous change learnt from the readers (PROTOCOL.md section 13.4). */
export interface RevocationConfirmation {
  /** Readers that acknowledged before the call returned. */
  acknowledged: number;
  /** Readers subscribed to `<prefix>:invalidate` when the barrier was published (PUBLISH's answer). */
  expected: number;
  /** True when the wait ended before every reader acknowledged. */
  timedOut: boolean;
}

interface Waiter {
  count: number;
  /** When each acknowledgement came, from performance.now() (metrics on only). */
  arrivals: number[];
  done?: () => void;
}

/**
 * Synchronous revocation: a barrier notice `!ack <id>` published after a
 * change's own notices, and the wait for as many `<id>` on `<prefix>:ack` as
 * PUBLISH said readers received it. Readers apply notices in order, so each
 * acknowledgement means that reader has applied the change (with nginx, in
 * the shared dict that every worker reads). One subscriber connection,
 * opened on first use and kept.
 */
export class RevocationAcknowledgements {
  private subscriber?: Redis;
  private subscribing?: Promise<void>;
  private readonly waiters = new Map<string, Waiter>();

  constructor(
    private readonly client: Redis,
    private readonly invalidationChannel: string,
    private readonly ackChannel: string,
    private readonly metrics: SessionMetrics = NO_METRICS,
  ) {}

  /**
   * The acknowledgement subscriber: `idle` before its first use, `up` while
   * subscribed, `down` while its connection is lost (ioredis reconnects and
   * subscribes again by itself).
   */
  get subscriberState(): 'idle' | 'up' | 'down' {
    if (!this.subscribing) return 'idle';
    return this.subscriber?.status === 'ready' ? 'up' : 'down';
  }

  /** Subscribes to the acknowledgement channel (once); throws when Redis cannot be reached. */
  async ready(): Promise<void> {
    if (!this.subscribing) {
      this.subscribing = this.subscribe().catch((err: unknown) => {
        this.subscribing = undefined;
        this.subscriber?.disconnect();
        this.subscriber = undefined;
        throw err;
      });
    }
    return this.subscribing;
  }

  private async subscribe(): Promise<void> {
    const subscriber = this.client.duplicate();
    this.subscriber = subscriber;
    subscriber.on('error', () => undefined); // the main client reports outages
    subscriber.on('message', (_channel: string, id: string) => {
      const waiter = this.waiters.get(id);
      if (!waiter) return;
      waiter.count += 1;
      if (this.metrics.enabled) waiter.arrivals.push(performance.now());
      waiter.done?.();
    });
    if (subscriber.status === 'wait') await subscriber.connect();
    if (!(await whenReady(subscriber, 1000))) throw new Error('acknowledgement channel: Redis not reachable');
    await subscriber.subscribe(this.ackChannel);
  }

  /** Publishes the barrier (call after the change) and waits for the readers, at most `timeoutMs`. */
  async confirm(timeoutMs: number): Promise<RevocationConfirmation> {
    await this.ready();
    const id = randomBytes(12).toString('base64url');
    const waiter: Waiter = { count: 0, arrivals: [] };
    this.waiters.set(id, waiter);
    // Before the PUBLISH: a reader may acknowledge before its answer comes back.
    const published = this.metrics.enabled ? performance.now() : 0;
    try {
      const expected = await this.client.publish(this.invalidationChannel, ackNotice(id));
      const timedOut =
        waiter.count < expected &&
        (await new Promise<boolean>((resolve) => {
          const timer = setTimeout(() => resolve(true), timeoutMs);
          waiter.done = () => {
            if (waiter.count < expected) return;
            clearTimeout(timer);
            resolve(false);
          };
        }));
      const acknowledged = Math.min(waiter.count, expected);
      this.measured(published, waiter, expected, acknowledged);
      return { acknowledged, expected, timedOut };
    } finally {
      this.waiters.delete(id);
    }
  }

  /** The revocation lag of each acknowledgement counted (as many as `acknowledged`), and the wait's counts. */
  private measured(published: number, waiter: Waiter, expected: number, acknowledged: number): void {
    if (!this.metrics.enabled) return;
    for (const at of waiter.arrivals.slice(0, acknowledged)) this.metrics.revocationLag(Math.max(0, at - published) / 1000);
    this.metrics.acknowledgements(expected, acknowledged, expected - acknowledged);
  }

  async close(): Promise<void> {
    const subscriber = this.subscriber;
    this.subscriber = undefined;
    this.subscribing = undefined;
    if (subscriber) await subscriber.quit().catch(() => subscriber.disconnect());
  }
}

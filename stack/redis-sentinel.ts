import { ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Redis from 'ioredis';
import { freePort } from './ports';
import { waitFor } from './wait';
import { RedisServer } from './redis-server';

/**
 * A Sentinel-managed Redis on 127.0.0.1: a primary, a replica and three
 * sentinels (quorum 2), each on a free port in a temporary folder, each
 * stopped by PID. Failover is quick (1 s to notice, 3 s timeout) for tests.
 */
export class RedisSentinelCluster {
  readonly masterName = 'mymaster';
  private readonly dir = mkdtempSync(join(tmpdir(), 'rss-sentinel-'));
  private readonly sentinels: ChildProcess[] = [];

  private constructor(
    readonly primary: RedisServer,
    readonly replica: RedisServer,
    readonly sentinelPorts: number[],
  ) {}

  static async start(): Promise<RedisSentinelCluster> {
    const primary = await RedisServer.start();
    const replica = await RedisServer.start({ args: ['--replicaof', '127.0.0.1', String(primary.port)] });
    const ports = [await freePort(), await freePort(), await freePort()];
    const cluster = new RedisSentinelCluster(primary, replica, ports);
    try {
      for (const port of ports) cluster.startSentinel(port);
      const probe = new Redis(replica.url);
      try {
        await waitFor('the replica to sync', async () => /master_link_status:up/.test(await probe.info('replication')), 10_000);
      } finally {
        probe.disconnect();
      }
      await waitFor(
        'sentinels to see both servers',
        async () => {
          const probe = new Redis({ port: ports[0], host: '127.0.0.1' });
          try {
            const replicas = (await probe.call('SENTINEL', 'REPLICAS', cluster.masterName)) as unknown[];
            const sentinels = (await probe.call('SENTINEL', 'SENTINELS', cluster.masterName)) as unknown[];
            return replicas.length === 1 && sentinels.length === 2;
          } finally {
            probe.disconnect();
          }
        },
        15_000,
      );
    } catch (error) {
      await cluster.dispose();
      throw error;
    }
    return cluster;
  }

  /** What ioredis needs: `new Redis({ sentinels, name })`. */
  get sentinelAddresses(): { host: string; port: number }[] {
    return this.sentinelPorts.map((port) => ({ host: '127.0.0.1', port }));
  }

  /** The port of the server the sentinels currently call primary. */
  async currentPrimaryPort(): Promise<number> {
    const probe = new Redis({ port: this.sentinelPorts[0], host: '127.0.0.1' });
    try {
      const [, port] = (await probe.call('SENTINEL', 'GET-MASTER-ADDR-BY-NAME', this.masterName)) as [string, string];
      return Number(port);
    } finally {
      probe.disconnect();
    }
  }

  async dispose(): Promise<void> {
    await Promise.all(
      this.sentinels.map(
        (child) =>
          new Promise<void>((resolve) => {
            if (child.exitCode !== null || child.signalCode !== null) return resolve();
            child.once('exit', () => resolve());
            child.kill('SIGKILL');
          }),
      ),
    );
    await this.primary.dispose();
    await this.replica.dispose();
    rmSync(this.dir, { recursive: true, force: true });
  }

  private startSentinel(port: number): void {
    const conf = join(this.dir, `sentinel-${port}.conf`);
    writeFileSync(
      conf,
      [
        `port ${port}`,
        'bind 127.0.0.1',
        `dir ${this.dir}`,
        `sentinel monitor ${this.masterName} 127.0.0.1 ${this.primary.port} 2`,
        `sentinel down-after-milliseconds ${this.masterName} 1000`,
        `sentinel failover-timeout ${this.masterName} 3000`,
        `sentinel parallel-syncs ${this.masterName} 1`,
        '',
      ].join('\n'),
    );
    this.sentinels.push(spawn('redis-server', [conf, '--sentinel'], { stdio: 'ignore' }));
  }
}

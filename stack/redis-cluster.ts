import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import Redis, { Cluster } from 'ioredis';
import { freePort } from './ports';
import { RedisServer } from './redis-server';
import { waitFor } from './wait';

const run = promisify(execFile);

async function createWithRedisCli(addresses: string[]): Promise<void> {
  await run('redis-cli', ['--cluster', 'create', ...addresses, '--cluster-replicas', '1', '--cluster-yes']);
}

/**
 * A Redis Cluster on 127.0.0.1: `primaries` primaries with one replica each
 * (6 redis-server processes by default), built by `redis-cli --cluster
 * create`, each on free ports (its own cluster bus port too) in a temporary
 * folder, each stopped by PID. Failover is quick for tests
 * (cluster-node-timeout 1000 ms).
 */
export class RedisClusterStack {
  private constructor(readonly nodes: RedisServer[]) {}

  /**
   * `create` makes the cluster of the nodes' `host:port` addresses (default:
   * `redis-cli --cluster create … --cluster-replicas 1 --cluster-yes`).
   */
  static async start(primaries = 3, create: (addresses: string[]) => Promise<void> = createWithRedisCli): Promise<RedisClusterStack> {
    const nodes: RedisServer[] = [];
    try {
      for (let i = 0; i < primaries * 2; i++) {
        const busPort = await freePort();
        nodes.push(
          await RedisServer.start({
            args: [
              '--cluster-enabled',
              'yes',
              '--cluster-port',
              String(busPort),
              '--cluster-node-timeout',
              '1000',
              '--cluster-config-file',
              `nodes-${i}.conf`,
              '--repl-diskless-sync-delay',
              '0',
            ],
          }),
        );
      }
      const stack = new RedisClusterStack(nodes);
      await create(nodes.map((n) => `127.0.0.1:${n.port}`));
      await waitFor('the cluster to be ok on every node', () => stack.allOk(), 20_000);
      // A replica can take over only once it has synced with its primary.
      await waitFor('every replica to sync', () => stack.replicasSynced(), 20_000);
      return stack;
    } catch (error) {
      for (const node of nodes) await node.dispose();
      throw error;
    }
  }

  /** `{ host, port }` of every node, as ioredis' Cluster and the rock's `redis.cluster.nodes` take them. */
  get startupNodes(): { host: string; port: number }[] {
    return this.nodes.map((n) => ({ host: '127.0.0.1', port: n.port }));
  }

  /** A cluster client (ioredis), for tests. */
  client(): Cluster {
    return new Cluster(this.startupNodes, { redisOptions: { maxRetriesPerRequest: 1 } });
  }

  /** The node that is the primary of `slot` now, asked of any live node. */
  async primaryOf(slot: number): Promise<RedisServer> {
    for (const node of this.nodes) {
      if (!node.pid) continue;
      const probe = new Redis(node.port, '127.0.0.1', { lazyConnect: true, maxRetriesPerRequest: 0 });
      try {
        await probe.connect();
        const ranges = (await probe.call('CLUSTER', 'SLOTS')) as [number, number, [string, number]][];
        const range = ranges.find(([from, to]) => slot >= from && slot <= to);
        const port = range?.[2][1];
        const primary = this.nodes.find((n) => n.port === port);
        if (primary) return primary;
      } catch {
        // ask the next node
      } finally {
        probe.disconnect();
      }
    }
    throw new Error(`no primary known for slot ${slot}`);
  }

  /** Resolves once `key`, written on `primary`, is on its replica too (replication is asynchronous). */
  async waitReplicated(primary: RedisServer, key: string): Promise<void> {
    for (const node of this.nodes) {
      if (node === primary || !node.pid) continue;
      const probe = new Redis(node.port, '127.0.0.1');
      try {
        const info = await probe.info('replication');
        if (!new RegExp(`master_port:${primary.port}\\b`).test(info)) continue;
        await probe.call('READONLY');
        await waitFor(`${key} on the replica`, async () => (await probe.exists(key)) === 1, 5000);
        return;
      } finally {
        probe.disconnect();
      }
    }
    throw new Error(`no replica of ${primary.port}`);
  }

  private async allOk(): Promise<boolean> {
    for (const node of this.nodes) {
      if (!node.pid) continue;
      const probe = new Redis(node.port, '127.0.0.1');
      try {
        if (!/cluster_state:ok/.test((await probe.call('CLUSTER', 'INFO')) as string)) return false;
      } finally {
        probe.disconnect();
      }
    }
    return true;
  }

  private async replicasSynced(): Promise<boolean> {
    for (const node of this.nodes) {
      const probe = new Redis(node.port, '127.0.0.1');
      try {
        const info = await probe.info('replication');
        if (/role:slave/.test(info) && !/master_link_status:up/.test(info)) return false;
      } finally {
        probe.disconnect();
      }
    }
    return true;
  }

  async dispose(): Promise<void> {
    for (const node of this.nodes) await node.dispose();
  }
}

import type { ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { NginxServer } from './nginx-server';
import { ServerProcess, ServerStartError } from './server-process';
import { freePort } from './ports';
import type { RedisClusterStack } from './redis-cluster';
import { RedisServer } from './redis-server';
import { debianLuaPackagePath, debianPlatformLines, redisLua, renderNginxConf, REPO_ROOT, sessionValuesFromEnv } from './nginx-conf';

export interface DemoStackOptions {
  /** Ports; a free one is picked for each that is not given. */
  nginxPort?: number;
  appPort?: number;
  redisPort?: number;
  /** Settings for the app and nginx (SESSION_SECRET, CACHE_SECONDS, ...); default: process.env. */
  env?: NodeJS.ProcessEnv;
  /** Where the app's output goes (default: discarded). */
  appOutput?: 'inherit' | 'ignore' | 'pipe';
  /** Start the app so that `appProcess.memoryAfterGc()` can measure it (the memory checks). */
  heapProbe?: boolean;
  /**
   * Run on this Redis Cluster (the caller's: left running at stop()) with the
   * cluster layout (PROTOCOL.md section 14), instead of a redis-server of its own.
   */
  cluster?: RedisClusterStack;
}

/** Redis, the demo app and nginx on 127.0.0.1: what `npm run demo` runs and the end-to-end tests use. */
export class DemoStack {
  private constructor(
    /** Its own redis-server; none on a Redis Cluster. */
    private readonly ownRedis: RedisServer | undefined,
    readonly appProcess: ServerProcess,
    readonly appPort: number,
    readonly nginx: NginxServer,
    readonly env: NodeJS.ProcessEnv,
  ) {}

  /** The stack's own redis-server (not on a Redis Cluster: `options.cluster`). */
  get redis(): RedisServer {
    if (!this.ownRedis) throw new Error('this demo stack runs on a Redis Cluster: it has no redis-server of its own');
    return this.ownRedis;
  }

  /** The app's child process. */
  get app(): ChildProcess {
    return this.appProcess.child;
  }

  /** What the app printed so far. */
  get appLog(): string {
    return this.appProcess.output;
  }

  /** The demo's address through nginx. */
  get url(): string {
    return `http://127.0.0.1:${this.nginx.port}`;
  }

  /** The app's own address (behind nginx). */
  get appUrl(): string {
    return `http://127.0.0.1:${this.appPort}`;
  }

  static async start(options: DemoStackOptions = {}): Promise<DemoStack> {
    // `npm run demo` and the tests are development runs: the demo app accepts its published secret only then.
    const cluster = options.cluster;
    const env: NodeJS.ProcessEnv = {
      SESSION_SECRET: 'demo-secret-change-me',
      DEMO_DEV_MODE: '1',
      ...(options.env ?? process.env),
      // The app and nginx read where Redis is from the same variables as in docker-compose.
      ...(cluster ? { REDIS_URL: '', REDIS_CLUSTER_NODES: cluster.startupNodes.map((n) => `${n.host}:${n.port}`).join(',') } : {}),
    };
    const session = sessionValuesFromEnv(env);
    const redis = cluster ? undefined : await RedisServer.start({ port: options.redisPort });
    let app: ServerProcess | undefined;
    try {
      const main = join(REPO_ROOT, 'apps/demo/dist/main.js');
      // On a free port, again on another when some other process took it before the app could (three tries).
      let appPort = 0;
      for (let attempt = 1; !app; attempt++) {
        appPort = options.appPort ?? (await freePort());
        const appEnv = { ...env, APP_HOST: '127.0.0.1', APP_PORT: String(appPort), ...(redis ? { REDIS_URL: redis.url } : {}) };
        try {
          app = await ServerProcess.node(main, appEnv, { port: appPort, path: '/app' }, options.appOutput, {
            heapProbe: options.heapProbe,
          });
        } catch (error) {
          if (options.appPort !== undefined || attempt === 3 || !(error instanceof ServerStartError && error.portTaken)) throw error;
        }
      }

      const nginx = await NginxServer.start({
        port: options.nginxPort,
        env: { SESSION_SECRET: env.SESSION_SECRET ?? '', SESSION_SECRET_FALLBACKS: env.SESSION_SECRET_FALLBACKS ?? '' },
        conf: (ctx) =>
          renderNginxConf({
            PLATFORM: debianPlatformLines(),
            WORKERS: env.NGINX_WORKERS || '1',
            RUN_DIR: ctx.runDir,
            ERROR_LOG: `${join(ctx.runDir, 'logs', 'error.log')} warn`,
            ACCESS_LOG: join(ctx.runDir, 'logs', 'access.log'),
            LUA_PACKAGE_PATH: debianLuaPackagePath(),
            NGINX_LISTEN: `127.0.0.1:${ctx.port}`,
            APP_UPSTREAM: `127.0.0.1:${appPort}`,
            RESOLVER: '',
            REDIS: redisLua(redis ? { host: '127.0.0.1', port: redis.port } : { cluster: cluster!.startupNodes }),
            ...session,
          }),
      });
      return new DemoStack(redis, app, appPort, nginx, env);
    } catch (error) {
      await app?.stop();
      await redis?.dispose();
      throw error;
    }
  }

  /** Stops nginx, the app and its own Redis, each by PID, and removes their folders. */
  async stop(): Promise<void> {
    await this.nginx.dispose();
    await this.appProcess.stop();
    await this.ownRedis?.dispose();
  }
}

import type { ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { NginxServer } from './nginx-server';
import { ServerProcess, ServerStartError } from './server-process';
import { freePort } from './ports';
import type { RedisClusterStack } from './redis-cluster';
import { ALERT_RULES, PrometheusServer } from './prometheus-server';
import { RedisServer } from './redis-server';
import { waitFor } from './wait';
import { debianLuaPackagePath, debianPlatformLines, redisLua, renderNginxConf, REPO_ROOT, sessionValuesFromEnv } from './nginx-conf';

/** The Nest HTTP platforms the demo app runs on (DEMO_ADAPTER). */
export const DEMO_ADAPTERS = ['express', 'fastify'] as const;
export type DemoAdapter = (typeof DEMO_ADAPTERS)[number];

export interface DemoStackOptions {
  /**
   * The app's HTTP platform (its DEMO_ADAPTER); default Express, whatever
   * the environment says: a suite runs on the platform it names.
   */
  adapter?: DemoAdapter;
  /** Ports; a free one is picked for each that is not given. */
  nginxPort?: number;
  appPort?: number;
  redisPort?: number;
  /** The operations ports (/metrics, /health) of nginx and of the app; free ones when not given. */
  nginxAdminPort?: number;
  appAdminPort?: number;
  /**
   * Start a Prometheus (Debian's `prometheus`: see prometheusBinary()) that
   * scrapes both doors: job `nginx` and job `app`, with the project's
   * alerting rules (prometheus-alerts.yml). The app's status panel queries
   * it. Off when not given.
   */
  prometheus?: { port?: number; scrapeIntervalSeconds?: number };
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
    /** The app's operations port: /metrics and /health (apps/demo/src/operations-server.ts). */
    readonly appAdminPort: number,
    /** nginx's operations port: /metrics and /health (resty/conf/nginx.conf.template). */
    readonly nginxAdminPort: number,
    /** The Prometheus that scrapes both, when `options.prometheus` asked for one. */
    readonly prometheus: PrometheusServer | undefined,
    /** The app's HTTP platform. */
    readonly adapter: DemoAdapter,
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

  /** nginx's operations address (/metrics, /health). */
  get nginxAdminUrl(): string {
    return `http://127.0.0.1:${this.nginxAdminPort}`;
  }

  /** The app's operations address (/metrics, /health). */
  get appAdminUrl(): string {
    return `http://127.0.0.1:${this.appAdminPort}`;
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
    const adapter = options.adapter ?? 'express';
    const session = sessionValuesFromEnv(env);
    const redis = cluster ? undefined : await RedisServer.start({ port: options.redisPort });
    let app: ServerProcess | undefined;
    let nginx: NginxServer | undefined;
    try {
      // Picked before the app starts: the app's status panel queries Prometheus there.
      const prometheusPort = options.prometheus ? (options.prometheus.port ?? (await freePort())) : undefined;

      const main = join(REPO_ROOT, 'apps/demo/dist/main.js');
      // On a free port, again on another when some other process took it before the app could (three tries).
      let appPort = 0;
      let appAdminPort = 0;
      for (let attempt = 1; !app; attempt++) {
        appPort = options.appPort ?? (await freePort());
        appAdminPort = options.appAdminPort ?? (await freePort());
        const appEnv = {
          ...env,
          APP_HOST: '127.0.0.1',
          APP_PORT: String(appPort),
          APP_ADMIN_PORT: String(appAdminPort),
          DEMO_ADAPTER: adapter,
          ...(prometheusPort ? { PROMETHEUS_URL: `http://127.0.0.1:${prometheusPort}` } : {}),
          ...(redis ? { REDIS_URL: redis.url } : {}),
        };
        try {
          app = await ServerProcess.node(main, appEnv, { port: appPort, path: '/app' }, options.appOutput, {
            heapProbe: options.heapProbe,
          });
        } catch (error) {
          const portsGiven = options.appPort !== undefined && options.appAdminPort !== undefined;
          if (portsGiven || attempt === 3 || !(error instanceof ServerStartError && error.portTaken)) throw error;
        }
      }
      // The app runs on the platform asked for, as its start-up line says (when its output is kept), or the stack does not start.
      const started = app;
      if ((options.appOutput ?? 'pipe') === 'pipe')
        await waitFor(`the demo app to say it runs on ${adapter}`, async () => started.output.includes(`/app (${adapter})`), 5000);

      const nginxAdminPort = options.nginxAdminPort;
      nginx = await NginxServer.start({
        port: options.nginxPort,
        // The operations port, when not given: a free one, picked again with the public one on a retry.
        extraPorts: nginxAdminPort === undefined ? 1 : undefined,
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
            ADMIN_LISTEN: `127.0.0.1:${nginxAdminPort ?? ctx.extraPorts[0]}`,
            APP_UPSTREAM: `127.0.0.1:${appPort}`,
            RESOLVER: '',
            REDIS: redisLua(redis ? { host: '127.0.0.1', port: redis.port } : { cluster: cluster!.startupNodes }),
            ...session,
          }),
      });
      const nginxAdmin = nginxAdminPort ?? nginx.extraPorts[0];
      const prometheus = prometheusPort
        ? await PrometheusServer.start({
            port: prometheusPort,
            scrapeIntervalSeconds: options.prometheus?.scrapeIntervalSeconds,
            ruleFiles: [ALERT_RULES],
            jobs: [
              { job: 'nginx', targets: [`127.0.0.1:${nginxAdmin}`] },
              { job: 'app', targets: [`127.0.0.1:${appAdminPort}`] },
            ],
          })
        : undefined;
      return new DemoStack(redis, app, appPort, nginx, env, appAdminPort, nginxAdmin, prometheus, adapter);
    } catch (error) {
      await nginx?.dispose();
      await app?.stop();
      await redis?.dispose();
      throw error;
    }
  }

  /** Stops Prometheus, nginx, the app and its own Redis, each by PID, and removes their folders. */
  async stop(): Promise<void> {
    await this.prometheus?.dispose();
    await this.nginx.dispose();
    await this.appProcess.stop();
    await this.ownRedis?.dispose();
  }
}

import { ChildProcess, spawn } from 'node:child_process';
import { join } from 'node:path';
import { NginxServer } from './nginx-server';
import { freePort, waitFor } from './ports';
import { RedisServer } from './redis-server';
import { debianLuaPackagePath, debianPlatformLines, renderNginxConf, REPO_ROOT, sessionValuesFromEnv } from './nginx-conf';

export interface DemoStackOptions {
  /** Ports; a free one is picked for each that is not given. */
  nginxPort?: number;
  appPort?: number;
  redisPort?: number;
  /** Settings for the app and nginx (SESSION_SECRET, CACHE_SECONDS, ...); default: process.env. */
  env?: NodeJS.ProcessEnv;
  /** Where the app's output goes (default: discarded). */
  appOutput?: 'inherit' | 'ignore' | 'pipe';
}

/** Redis, the demo app and nginx on 127.0.0.1: what `npm run demo` runs and the end-to-end tests use. */
export class DemoStack {
  appLog = '';

  private constructor(
    readonly redis: RedisServer,
    readonly app: ChildProcess,
    readonly appPort: number,
    readonly nginx: NginxServer,
    readonly env: NodeJS.ProcessEnv,
  ) {}

  /** The demo's address through nginx. */
  get url(): string {
    return `http://127.0.0.1:${this.nginx.port}`;
  }

  /** The app's own address (behind nginx). */
  get appUrl(): string {
    return `http://127.0.0.1:${this.appPort}`;
  }

  static async start(options: DemoStackOptions = {}): Promise<DemoStack> {
    const env: NodeJS.ProcessEnv = { SESSION_SECRET: 'demo-secret-change-me', ...(options.env ?? process.env) };
    const session = sessionValuesFromEnv(env);
    const appPort = options.appPort ?? (await freePort());
    const redis = await RedisServer.start({ port: options.redisPort });
    let app: ChildProcess | undefined;
    try {
      const appEnv = { ...env, APP_HOST: '127.0.0.1', APP_PORT: String(appPort), REDIS_URL: redis.url };
      app = spawn(process.execPath, [join(REPO_ROOT, 'apps/demo/dist/main.js')], {
        env: appEnv,
        stdio: ['ignore', options.appOutput ?? 'pipe', options.appOutput ?? 'pipe'],
      });
      const child = app;
      let appLog = '';
      child.stdout?.on('data', (d: Buffer) => (appLog += d.toString()));
      child.stderr?.on('data', (d: Buffer) => (appLog += d.toString()));
      let appExit: number | null | undefined;
      child.once('exit', (code) => (appExit = code));
      await waitFor('the demo app', async () => {
        if (appExit !== undefined) throw new Error(`the demo app exited (${appExit}):\n${appLog}`);
        return (await fetch(`http://127.0.0.1:${appPort}/app`).catch(() => undefined))?.ok;
      }, 20_000);

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
            REDIS_HOST: '127.0.0.1',
            REDIS_PORT: String(redis.port),
            REDIS_DB: '0',
            ...session,
          }),
      });
      const stack = new DemoStack(redis, child, appPort, nginx, env);
      stack.appLog = appLog;
      child.stdout?.on('data', (d: Buffer) => (stack.appLog += d.toString()));
      child.stderr?.on('data', (d: Buffer) => (stack.appLog += d.toString()));
      return stack;
    } catch (error) {
      app?.kill('SIGKILL');
      await redis.dispose();
      throw error;
    }
  }

  /** Stops nginx, the app and Redis, each by PID, and removes their folders. */
  async stop(): Promise<void> {
    await this.nginx.dispose();
    if (this.app.exitCode === null && this.app.signalCode === null) {
      const exited = new Promise((resolve) => this.app.once('exit', resolve));
      this.app.kill('SIGTERM');
      const timer = setTimeout(() => this.app.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    }
    await this.redis.dispose();
  }
}

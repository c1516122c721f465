import { ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { debianLuaPackagePath, debianPlatformLines, REPO_ROOT } from './nginx-platform';
import { freePort, listensOn, PORT_TAKEN } from './ports';
import { waitFor } from './wait';

/** What a configuration template gets to build nginx.conf. */
export interface NginxConfContext {
  /** Absolute path of the temporary run folder (holds nginx.conf, logs/, tmp/). */
  runDir: string;
  /** A free port on 127.0.0.1 for the first `listen`. */
  port: number;
  /** More free ports, as many as `extraPorts` asked for. */
  extraPorts: number[];
  /** The repository root, for paths into the project. */
  repoRoot: string;
  /** Main-context lines: load_module (absolute), daemon off, worker_processes, pid, error_log. */
  preamble: string;
  /** http-context lines: temp paths under runDir, access_log, lua_package_path. */
  httpPreamble: string;
}

export interface NginxStartOptions {
  /** Builds nginx.conf. Must contain an `events {}` block and listen on ctx.port. */
  conf: (ctx: NginxConfContext) => string;
  /** Worker processes (default 1). */
  workers?: number;
  /** error_log level in the preamble (default `warn`). */
  errorLogLevel?: 'debug' | 'info' | 'notice' | 'warn' | 'error' | 'crit';
  /** Write an access log to logs/access.log instead of `access_log off` (default false). */
  accessLog?: boolean;
  /** The port for ctx.port (default: a free one). */
  port?: number;
  /** Extra environment for nginx (what its `env` directives pass to Lua). */
  env?: Record<string, string>;
  /** How many free ports besides ctx.port to reserve (default 0). */
  extraPorts?: number;
  /** Milliseconds to wait for the port to answer (default 10 s). */
  startTimeoutMs?: number;
  /** The nginx binary (default $NGINX_BIN or `nginx`). */
  nginxBin?: string;
  /** Folder of the dynamic modules (default $NGINX_MODULES_DIR or Debian's). */
  modulesDir?: string;
}

/** Raised when `nginx -t` rejects the configuration or nginx dies while starting. */
export class NginxStartError extends Error {
  constructor(
    message: string,
    readonly output: string,
    readonly runDir: string,
  ) {
    super(`${message}\n${output}`);
    this.name = 'NginxStartError';
  }
}

const DEFAULT_MODULES_DIR = '/usr/lib/nginx/modules';

const running = new Set<NginxServer>();
process.once('exit', () => {
  // Last resort if a test run dies without dispose(): kill our own process groups.
  for (const server of running) server.killGroupSync();
});

/**
 * A real nginx (with the Lua module) run from a temporary folder on a free
 * 127.0.0.1 port, in the foreground (`daemon off`) as a child process, and
 * stopped by PID.
 */
export class NginxServer {
  private child?: ChildProcess;
  private stderr = '';
  private exited?: Promise<void>;

  private constructor(
    readonly runDir: string,
    readonly port: number,
    readonly extraPorts: number[],
    private readonly nginxBin: string,
    private readonly env: NodeJS.ProcessEnv,
  ) {}

  get pid(): number | undefined {
    return this.child?.pid;
  }

  get confPath(): string {
    return join(this.runDir, 'nginx.conf');
  }

  get errorLogPath(): string {
    return join(this.runDir, 'logs', 'error.log');
  }

  /** `http://127.0.0.1:<port><path>` */
  url(path = '/'): string {
    return `http://127.0.0.1:${this.port}${path}`;
  }

  /**
   * Starts nginx; on free ports (those not given), again on others when
   * another process takes one of them before nginx binds it (three tries).
   */
  static async start(options: NginxStartOptions): Promise<NginxServer> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await NginxServer.startOnce(options);
      } catch (error) {
        const portsGiven = options.port !== undefined && !options.extraPorts;
        if (portsGiven || attempt === 3 || !(error instanceof NginxStartError) || !PORT_TAKEN.test(error.output)) throw error;
      }
    }
  }

  private static async startOnce(options: NginxStartOptions): Promise<NginxServer> {
    const runDir = mkdtempSync(join(tmpdir(), 'rss-nginx-'));
    for (const sub of ['logs', 'tmp', 'tmp/body', 'tmp/proxy', 'tmp/fastcgi', 'tmp/uwsgi', 'tmp/scgi']) {
      mkdirSync(join(runDir, sub), { recursive: true });
    }
    const port = options.port ?? (await freePort());
    const extraPorts: number[] = [];
    for (let i = 0; i < (options.extraPorts ?? 0); i++) {
      let p = await freePort();
      while (p === port || extraPorts.includes(p)) p = await freePort();
      extraPorts.push(p);
    }
    const modulesDir = options.modulesDir ?? process.env.NGINX_MODULES_DIR ?? DEFAULT_MODULES_DIR;
    const ctx: NginxConfContext = {
      runDir,
      port,
      extraPorts,
      repoRoot: REPO_ROOT,
      preamble: mainPreamble(runDir, modulesDir, options),
      httpPreamble: httpPreamble(runDir, options),
    };
    writeFileSync(join(runDir, 'nginx.conf'), options.conf(ctx));

    const server = new NginxServer(runDir, port, extraPorts, options.nginxBin ?? process.env.NGINX_BIN ?? 'nginx', {
      ...process.env,
      ...options.env,
    });
    try {
      server.test();
      await server.launch(options.startTimeoutMs ?? 10_000);
    } catch (error) {
      await server.dispose();
      throw error;
    }
    return server;
  }

  /** The error log so far ('' if there is none yet). */
  errorLog(): string {
    return existsSync(this.errorLogPath) ? readFileSync(this.errorLogPath, 'utf8') : '';
  }

  /** Stops nginx by PID (SIGQUIT, then SIGKILL to its process group after 5 s) and waits for it. */
  async stop(): Promise<void> {
    const child = this.child;
    if (!child || !this.exited) return;
    try {
      process.kill(child.pid!, 'SIGQUIT');
    } catch {
      // already gone
    }
    const timer = setTimeout(() => this.killGroupSync(), 5_000);
    await this.exited;
    clearTimeout(timer);
    this.child = undefined;
    running.delete(this);
  }

  /** stop(), then removes the run folder. */
  async dispose(): Promise<void> {
    await this.stop();
    // NGINX_KEEP=1 keeps the run folder (its conf and error log), for looking into a failure by hand.
    if (!process.env.NGINX_KEEP) rmSync(this.runDir, { recursive: true, force: true });
  }

  /** SIGKILL to the process group nginx leads (master and its workers). */
  killGroupSync(): void {
    const pid = this.child?.pid;
    if (!pid) return;
    try {
      process.kill(-pid, 'SIGKILL');
    } catch {
      // no such group: already gone
    }
  }

  private args(): string[] {
    return ['-p', this.runDir, '-c', this.confPath];
  }

  private test(): void {
    const result = spawnSync(this.nginxBin, ['-t', ...this.args()], { encoding: 'utf8', env: this.env });
    if (result.error) throw result.error;
    if (result.status !== 0) {
      throw new NginxStartError('nginx -t failed', `${result.stderr}${result.stdout}`, this.runDir);
    }
  }

  private async launch(timeoutMs: number): Promise<void> {
    // detached: nginx leads its own process group, so the group can be killed
    // without touching anything else.
    const child = spawn(this.nginxBin, this.args(), { detached: true, stdio: ['ignore', 'ignore', 'pipe'], env: this.env });
    this.child = child;
    running.add(this);
    child.stderr!.on('data', (chunk: Buffer) => {
      this.stderr += chunk.toString();
    });
    let exited = false;
    this.exited = new Promise((resolveExit) => {
      child.once('exit', () => {
        exited = true;
        resolveExit();
      });
    });
    try {
      // Either the port answers and nginx holds it, or nginx dies (bad config,
      // init_by_lua error, a port another process took: nginx tries to bind
      // it for 2.5 s, while that process answers). One poll that ends on
      // either: a race against the exit would leave the poll's timers running
      // until timeoutMs after a failed start.
      const ready = async () => (await portAnswers(this.port)) && listensOn(child.pid, this.port) !== false;
      await waitFor(`nginx on port ${this.port}`, async () => exited || (await ready()), timeoutMs);
      if (exited) throw new Error('nginx exited while starting');
    } catch (error) {
      await this.stop();
      throw new NginxStartError(String((error as Error).message), `${this.stderr}${this.errorLog()}`, this.runDir);
    }
  }
}

function mainPreamble(runDir: string, modulesDir: string, options: NginxStartOptions): string {
  return (
    [
      debianPlatformLines(modulesDir),
      'daemon off;',
      'master_process on;',
      `worker_processes ${options.workers ?? 1};`,
      `pid ${join(runDir, 'nginx.pid')};`,
      `error_log ${join(runDir, 'logs', 'error.log')} ${options.errorLogLevel ?? 'warn'};`,
    ].join('\n') + '\n'
  );
}

function httpPreamble(runDir: string, options: NginxStartOptions): string {
  const tmp = (name: string) => join(runDir, 'tmp', name);
  return (
    [
      options.accessLog ? `access_log ${join(runDir, 'logs', 'access.log')};` : 'access_log off;',
      `client_body_temp_path ${tmp('body')};`,
      `proxy_temp_path ${tmp('proxy')};`,
      `fastcgi_temp_path ${tmp('fastcgi')};`,
      `uwsgi_temp_path ${tmp('uwsgi')};`,
      `scgi_temp_path ${tmp('scgi')};`,
      `lua_package_path "${debianLuaPackagePath()}";`,
    ].join('\n') + '\n'
  );
}

function portAnswers(port: number): Promise<boolean> {
  return new Promise((resolvePort) => {
    const socket = connect(port, '127.0.0.1');
    socket.setTimeout(500);
    socket.once('connect', () => {
      socket.destroy();
      resolvePort(true);
    });
    socket.once('error', () => resolvePort(false));
    socket.once('timeout', () => {
      socket.destroy();
      resolvePort(false);
    });
  });
}

import { ChildProcess, spawn } from 'node:child_process';
import { join } from 'node:path';
import { REPO_ROOT } from './nginx-platform';
import { freePort, waitFor } from './ports';

/**
 * Debian's interpreter, which sees python3-flask, python3-redis and
 * python3-itsdangerous (a pyenv or venv python3 earlier on PATH does not).
 */
export const DEBIAN_PYTHON = '/usr/bin/python3';

/** The Flask app of the interop tests, written from PROTOCOL.md. */
export const FLASK_APP = join(REPO_ROOT, 'e2e', 'flask', 'app.py');

/** The variables the app shares with the demo app and nginx; an unset one takes the protocol's default. */
const SESSION_SETTINGS = ['SESSION_SECRET', 'SESSION_SALT', 'SESSION_KEY_PREFIX', 'SESSION_COOKIE_NAME'] as const;

export interface FlaskAppOptions {
  /** The Redis the sessions live in. */
  redisUrl: string;
  /** Where SESSION_SETTINGS are read from (default: process.env). */
  env?: NodeJS.ProcessEnv;
  /** A free one when not given. */
  port?: number;
}

/** e2e/flask/app.py on 127.0.0.1 under Flask's own server, ready once it answers; stopped by PID. */
export class FlaskApp {
  output = '';

  private constructor(readonly child: ChildProcess, readonly port: number) {
    child.stdout?.on('data', (d: Buffer) => (this.output += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (this.output += d.toString()));
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  static async start(options: FlaskAppOptions): Promise<FlaskApp> {
    const port = options.port ?? (await freePort());
    const source = options.env ?? process.env;
    // What the app reads, and PATH: no PYTHON* variable of the caller reaches it (-I ignores them too).
    const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, LANG: 'C.UTF-8', REDIS_URL: options.redisUrl, FLASK_PORT: String(port) };
    for (const name of SESSION_SETTINGS) if (source[name]) env[name] = source[name];
    const app = new FlaskApp(spawn(DEBIAN_PYTHON, ['-I', '-u', FLASK_APP], { env, stdio: ['ignore', 'pipe', 'pipe'] }), port);
    let exit: number | null | undefined;
    app.child.once('exit', (code) => (exit = code));
    app.child.once('error', () => (exit = null)); // no interpreter at that path
    try {
      // Stops polling as soon as the process exits (a missing python3-flask, a port taken).
      await waitFor(`Flask on port ${port}`, async () => exit !== undefined || (await fetch(`${app.url}/healthz`).catch(() => undefined))?.ok, 20_000);
      if (exit !== undefined) throw new Error(`${DEBIAN_PYTHON} ${FLASK_APP} exited (${exit}):\n${app.output}`);
    } catch (error) {
      await app.stop();
      throw error;
    }
    return app;
  }

  /** SIGTERM, then SIGKILL after 5 s; resolves when it has exited. */
  async stop(): Promise<void> {
    const child = this.child;
    if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
  }
}

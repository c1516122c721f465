import { join } from 'node:path';
import { REPO_ROOT } from './nginx-platform';
import { freePort } from './ports';
import { ServerProcess } from './server-process';

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
  private constructor(
    readonly process: ServerProcess,
    readonly port: number,
  ) {}

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** What the app printed so far. */
  get output(): string {
    return this.process.output;
  }

  static async start(options: FlaskAppOptions): Promise<FlaskApp> {
    const port = options.port ?? (await freePort());
    const source = options.env ?? process.env;
    // What the app reads, and PATH: no PYTHON* variable of the caller reaches it (-I ignores them too).
    const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, LANG: 'C.UTF-8', REDIS_URL: options.redisUrl, FLASK_PORT: String(port) };
    for (const name of SESSION_SETTINGS) if (source[name]) env[name] = source[name];
    return new FlaskApp(await ServerProcess.start(DEBIAN_PYTHON, ['-I', '-u', FLASK_APP], env, { port, path: '/healthz' }), port);
  }

  /** SIGTERM, then SIGKILL after 5 s; resolves when it has exited. */
  stop(): Promise<void> {
    return this.process.stop();
  }
}

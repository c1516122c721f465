import { ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import type { TestCertificates } from './redis-tls';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './ports';
import { waitFor } from './wait';

/**
 * A real redis-server on 127.0.0.1, on a free high port, in a temporary
 * folder, with nothing persisted. Stopped by PID.
 */
export class RedisServer {
  private child?: ChildProcess;
  private readonly dir = mkdtempSync(join(tmpdir(), 'rss-redis-'));

  private constructor(
    readonly port: number,
    private readonly extraArgs: string[],
    /** TLS only (no plain port), with these certificates. */
    readonly tls?: TestCertificates,
  ) {}

  get url(): string {
    return `${this.tls ? 'rediss' : 'redis'}://127.0.0.1:${this.port}`;
  }

  /** The path of its Unix socket (always there, mode 777: tests only). */
  get socketPath(): string {
    return join(this.dir, 'redis.sock');
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  static async start(options: { port?: number; args?: string[]; tls?: TestCertificates } = {}): Promise<RedisServer> {
    const server = new RedisServer(options.port ?? (await freePort()), options.args ?? [], options.tls);
    await server.resume();
    return server;
  }

  /** Starts the process (again, after stop(), on the same port). */
  async resume(): Promise<void> {
    if (this.child) return;
    const tls = this.tls;
    const listen = tls
      ? [
          '--port',
          '0',
          '--tls-port',
          String(this.port),
          '--tls-cert-file',
          tls.certFile,
          '--tls-key-file',
          tls.keyFile,
          '--tls-ca-cert-file',
          tls.caFile,
          '--tls-auth-clients',
          'no',
        ]
      : ['--port', String(this.port)];
    const child = spawn(
      'redis-server',
      [
        ...listen,
        '--bind',
        '127.0.0.1',
        '--unixsocket',
        this.socketPath,
        '--unixsocketperm',
        '777',
        '--save',
        '',
        '--appendonly',
        'no',
        '--dir',
        this.dir,
        ...this.extraArgs,
      ],
      { stdio: 'ignore' },
    );
    this.child = child;
    child.on('exit', () => {
      if (this.child === child) this.child = undefined;
    });
    await waitFor(`redis-server on port ${this.port}`, () => this.ping());
  }

  /** Stops the process by PID and waits until the port refuses connections. */
  async stop(): Promise<void> {
    const child = this.child;
    if (!child) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGKILL');
    await exited;
    this.child = undefined;
  }

  async dispose(): Promise<void> {
    await this.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }

  /** Sends PING over a raw socket: true when the server answers it. */
  ping(): Promise<boolean> {
    return new Promise((resolve) => {
      const socket = this.tls ? tlsConnect({ port: this.port, host: '127.0.0.1', ca: this.tls.ca }) : connect(this.port, '127.0.0.1');
      socket.setTimeout(500);
      socket.on(this.tls ? 'secureConnect' : 'connect', () => socket.write('PING\r\n'));
      socket.on('data', (data) => {
        socket.destroy();
        // NOAUTH: a server with requirepass is up too.
        resolve(/^(\+PONG|-NOAUTH)/.test(data.toString()));
      });
      socket.on('error', () => resolve(false));
      socket.on('timeout', () => {
        socket.destroy();
        resolve(false);
      });
    });
  }
}

import { ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import type { TestCertificates } from './redis-tls';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, listensOn, PORT_TAKEN } from './ports';
import { sleep, waitFor } from './wait';

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

  /**
   * On `port`, or on a free one: then, when another process takes that port
   * before redis-server binds it, again on another (three tries).
   */
  static async start(options: { port?: number; args?: string[]; tls?: TestCertificates } = {}): Promise<RedisServer> {
    for (let attempt = 1; ; attempt++) {
      const server = new RedisServer(options.port ?? (await freePort()), options.args ?? [], options.tls);
      try {
        await server.resume();
        return server;
      } catch (error) {
        await server.dispose();
        if (options.port !== undefined || attempt === 3 || !PORT_TAKEN.test((error as Error).message)) throw error;
      }
    }
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
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    this.child = child;
    // What it says while starting, for the error when it does not start (a taken port, a bad argument).
    let output = '';
    const collect = (d: Buffer) => (output = (output + d.toString()).slice(-8192));
    child.stdout!.on('data', collect);
    child.stderr!.on('data', collect);
    const closed = new Promise((resolve) => child.once('close', resolve));
    let exited = false;
    child.on('exit', () => {
      exited = true;
      if (this.child === child) this.child = undefined;
    });
    try {
      // Ready once it answers PING on a port it holds itself: another
      // process's Redis there would answer too, while this one exits.
      await waitFor(
        `redis-server on port ${this.port}`,
        async () => exited || ((await this.ping()) && listensOn(child.pid, this.port) !== false),
      );
      if (exited) throw new Error(`redis-server on port ${this.port} exited while starting`);
    } catch (error) {
      await this.stop();
      await Promise.race([closed, sleep(1_000)]); // its last words may come after the exit
      throw new Error(`${(error as Error).message}\n${output || '(no output)'}`, { cause: error });
    } finally {
      // Once it runs, its log is not needed: stop reading it (the pipe is drained, never full).
      child.stdout!.off('data', collect);
      child.stderr!.off('data', collect);
      child.stdout!.resume();
      child.stderr!.resume();
    }
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

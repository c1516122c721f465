import { ChildProcess, spawn } from 'node:child_process';
import { request } from './http-client';
import { waitFor } from './wait';

type Output = 'inherit' | 'ignore' | 'pipe';

/** Where a program answers once it is ready: GET `path` on 127.0.0.1:`port`, any 2xx. */
export interface ReadyCheck {
  port: number;
  path: string;
}

/** A server program run as a child process (the demo app, the Flask app), ready once its `ready` check answers 2xx; stopped by PID. */
export class ServerProcess {
  output = '';

  private constructor(readonly child: ChildProcess) {
    child.stdout?.on('data', (d: Buffer) => (this.output += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (this.output += d.toString()));
  }

  /** A Node program, run with this process's Node. */
  static node(script: string, env: NodeJS.ProcessEnv, ready: ReadyCheck, output: Output = 'pipe'): Promise<ServerProcess> {
    return ServerProcess.start(process.execPath, [script], env, ready, output);
  }

  static async start(command: string, args: string[], env: NodeJS.ProcessEnv, ready: ReadyCheck, output: Output = 'pipe'): Promise<ServerProcess> {
    const proc = new ServerProcess(spawn(command, args, { env, stdio: ['ignore', output, output] }));
    let exit: number | null | undefined;
    proc.child.once('exit', (code) => (exit = code));
    proc.child.once('error', () => (exit = null)); // no such program
    const answers = async () => {
      const status = (await request(ready.port, ready.path, { timeoutMs: 2_000 }).catch(() => undefined))?.status ?? 0;
      return status >= 200 && status < 300;
    };
    try {
      // Stops polling as soon as the program exits, instead of waiting out the timeout.
      await waitFor(`${command} ${args.join(' ')}`, async () => exit !== undefined || (await answers()), 20_000);
      if (exit !== undefined) throw new Error(`${command} ${args.join(' ')} exited (${exit}):\n${proc.output}`);
    } catch (error) {
      await proc.stop();
      throw error;
    }
    return proc;
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

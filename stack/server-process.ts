import { ChildProcess, spawn, StdioOptions } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { request } from './http-client';
import { REPO_ROOT } from './nginx-platform';
import { listensOn, PORT_TAKEN } from './ports';
import { sleep, waitFor } from './wait';

type Output = 'inherit' | 'ignore' | 'pipe';

/** stack/heap-probe.ts as `npm run build` compiles it: Node preloads JavaScript only. */
const HEAP_PROBE = join(REPO_ROOT, 'stack', 'dist', 'stack', 'heap-probe.js');

/** Where a program answers once it is ready: GET `path` on 127.0.0.1:`port`, any 2xx. */
export interface ReadyCheck {
  port: number;
  path: string;
}

/** Raised when a program exits while starting or does not answer in time; the message ends with what it printed. */
export class ServerStartError extends Error {
  constructor(
    message: string,
    readonly output: string,
  ) {
    super(`${message}:\n${output || '(no output)'}`);
    this.name = 'ServerStartError';
  }

  /** It could not bind its port: another process took it after freePort() picked it. */
  get portTaken(): boolean {
    return PORT_TAKEN.test(this.output);
  }
}

/** A server program run as a child process (the demo app, the Flask app), ready once its `ready` check answers 2xx; stopped by PID. */
export class ServerProcess {
  output = '';

  private constructor(readonly child: ChildProcess) {
    child.stdout?.on('data', (d: Buffer) => (this.output += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (this.output += d.toString()));
  }

  /**
   * A Node program, run with this process's Node. `heapProbe`: with
   * stack/heap-probe.ts preloaded, so that memoryAfterGc() can ask it.
   */
  static node(
    script: string,
    env: NodeJS.ProcessEnv,
    ready: ReadyCheck,
    output: Output = 'pipe',
    options: { heapProbe?: boolean } = {},
  ): Promise<ServerProcess> {
    if (!options.heapProbe) return ServerProcess.start(process.execPath, [script], env, ready, output);
    if (!existsSync(HEAP_PROBE)) throw new Error(`${HEAP_PROBE} is missing: run \`npm run build\``);
    return ServerProcess.start(process.execPath, ['--expose-gc', '--require', HEAP_PROBE, script], env, ready, output, true);
  }

  static async start(
    command: string,
    args: string[],
    env: NodeJS.ProcessEnv,
    ready: ReadyCheck,
    output: Output = 'pipe',
    ipc = false,
  ): Promise<ServerProcess> {
    const stdio: StdioOptions = ipc ? ['ignore', output, output, 'ipc'] : ['ignore', output, output];
    const proc = new ServerProcess(spawn(command, args, { env, stdio }));
    let exit: number | null | undefined;
    proc.child.once('exit', (code) => (exit = code));
    proc.child.once('error', () => (exit = null)); // no such program
    const closed = new Promise((resolve) => proc.child.once('close', resolve));
    // Ready once the port answers and is held by this program: a server that
    // took the port after freePort() picked it would answer too, while ours
    // fails to bind and exits.
    const answers = async () => {
      const status = (await request(ready.port, ready.path, { timeoutMs: 2_000 }).catch(() => undefined))?.status ?? 0;
      return status >= 200 && status < 300 && listensOn(proc.child.pid, ready.port) !== false;
    };
    const what = `${command} ${args.join(' ')} (port ${ready.port})`;
    try {
      // Stops polling as soon as the program exits, instead of waiting out the timeout.
      await waitFor(what, async () => exit !== undefined || (await answers()), 20_000);
    } catch (error) {
      await proc.stop();
      throw new ServerStartError((error as Error).message, proc.output);
    }
    if (exit !== undefined) {
      await proc.stop();
      await Promise.race([closed, sleep(1_000)]); // its last words may come after the exit
      throw new ServerStartError(`${what} exited (${exit})`, proc.output);
    }
    return proc;
  }

  /** The program's memory right after a full garbage collection (started with `heapProbe`). */
  memoryAfterGc(timeoutMs = 10_000): Promise<NodeJS.MemoryUsage> {
    const child = this.child;
    if (!child.send) return Promise.reject(new Error('memoryAfterGc: the program was not started with heapProbe'));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => done(new Error('memoryAfterGc: no answer from the heap probe')), timeoutMs);
      const onMessage = (message: { memory?: NodeJS.MemoryUsage }) => message.memory && done(undefined, message.memory);
      const done = (error?: Error, memory?: NodeJS.MemoryUsage) => {
        clearTimeout(timer);
        child.off('message', onMessage);
        if (error) reject(error);
        else resolve(memory!);
      };
      child.on('message', onMessage);
      child.send('memory');
    });
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

import { spawn } from 'node:child_process';
import { resolve } from 'node:path';

/** The built operator tool (scripts/test.sh builds first; so must you). */
const CLI = resolve(__dirname, '../dist/cli.js');

export interface Outcome {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** The operator CLI as a user runs it: a child process with `env` alone (and PATH); its exit code and output. */
export function cli(args: string[], env: Record<string, string> = {}): Promise<Outcome> {
  return new Promise((done) => {
    const child = spawn(process.execPath, [CLI, ...args], { env: { PATH: process.env.PATH ?? '', ...env } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('exit', (status) => done({ status, stdout, stderr }));
  });
}

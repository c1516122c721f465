import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { load } from 'js-yaml';
import { REPO_ROOT } from './nginx-platform';

/**
 * docker-compose.yml as Compose reads it, for the tests that check it where
 * no Docker engine runs: parsed (YAML merge keys included), with `${VAR}`,
 * `${VAR:-default}`, `${VAR:?error}` and `$$` interpolated from `env`.
 */

export const COMPOSE_FILE = join(REPO_ROOT, 'docker-compose.yml');

export interface ComposeService {
  image?: string;
  build?: { context: string; dockerfile: string };
  profiles?: string[];
  command?: string[];
  environment?: Record<string, string>;
  depends_on?: string[] | Record<string, { condition: string }>;
  volumes?: string[];
  ports?: string[];
}

export function composeServices(env: Record<string, string | undefined>): Record<string, ComposeService> {
  const text = readFileSync(COMPOSE_FILE, 'utf8');
  const file = load(text) as { services: Record<string, ComposeService> };
  return interpolate(file.services, env) as Record<string, ComposeService>;
}

function interpolate(value: unknown, env: Record<string, string | undefined>): unknown {
  if (typeof value === 'string') {
    return value.replace(/\$\$|\$\{(\w+)(?:(:-|:\?)([^}]*))?\}/g, (match, name?: string, op?: string, arg?: string) => {
      if (match === '$$') return '$';
      const set = env[name!];
      if (op === ':?' && !set) throw new Error(`docker-compose.yml: ${arg}`);
      return set || (op === ':-' ? arg! : '');
    });
  }
  if (Array.isArray(value)) return value.map((v) => interpolate(v, env));
  if (value && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, interpolate(v, env)]));
  }
  return value;
}

/** The service's environment, every value a string (as Compose passes it). */
export function composeEnvironment(service: ComposeService): Record<string, string> {
  return Object.fromEntries(Object.entries(service.environment ?? {}).map(([k, v]) => [k, String(v)]));
}

/**
 * Runs the cluster profile's one-shot `redis-cluster-init` command (a shell
 * script) here, on the nodes at `addresses` (`host:port`) instead of the
 * six services: what the container would do.
 */
export async function runComposeClusterInit(addresses: string[]): Promise<string> {
  const init = composeServices({ SESSION_SECRET: 'unused' })['redis-cluster-init'];
  const [shell, flag, script] = init.command ?? [];
  const { stdout } = await promisify(execFile)(shell, [flag, script], {
    env: { PATH: process.env.PATH ?? '', REDIS_CLUSTER_NODES: addresses.join(',') },
    timeout: 60_000,
  });
  return stdout;
}

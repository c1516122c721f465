import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * A throwaway certificate authority and a server certificate it signed for
 * `localhost` and 127.0.0.1, made with openssl in a temporary folder: what a
 * TLS-only redis-server and its clients need in tests. Nothing is reused
 * between runs; `dispose()` removes the keys.
 */
export class TestCertificates {
  readonly dir: string;

  private constructor(dir: string) {
    this.dir = dir;
  }

  static create(name = 'rss test CA'): TestCertificates {
    const dir = mkdtempSync(join(tmpdir(), 'rss-tls-'));
    const openssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
    openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '2', '-subj', `/CN=${name}`);
    openssl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=localhost');
    writeFileSync(join(dir, 'san.cnf'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\n');
    openssl(
      'x509',
      '-req',
      '-in',
      'server.csr',
      '-CA',
      'ca.crt',
      '-CAkey',
      'ca.key',
      '-CAcreateserial',
      '-out',
      'server.crt',
      '-days',
      '2',
      '-extfile',
      'san.cnf',
    );
    return new TestCertificates(dir);
  }

  get caFile(): string {
    return join(this.dir, 'ca.crt');
  }
  get certFile(): string {
    return join(this.dir, 'server.crt');
  }
  get keyFile(): string {
    return join(this.dir, 'server.key');
  }
  get ca(): Buffer {
    return readFileSync(this.caFile);
  }

  dispose(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/**
 * The least-privilege ACL users of README.md ("Managed Redis: TLS and ACL
 * users"), for key prefix `prefix`, as redis-server arguments: the app may
 * read and write the session keys and publish notices; nginx may only read
 * them and subscribe. The default user is switched off.
 */
export function leastPrivilegeUsers(prefix: string, passwords: { app: string; nginx: string }): string[] {
  return [
    '--user',
    'default',
    'off',
    '--user',
    'app',
    'on',
    `>${passwords.app}`,
    `~${prefix}:*`,
    `&${prefix}:invalidate`,
    `&${prefix}:ack`,
    ...APP_COMMANDS,
    '--user',
    'nginx',
    'on',
    `>${passwords.nginx}`,
    `~${prefix}:*`,
    `&${prefix}:invalidate`,
    ...NGINX_COMMANDS,
    nginxAckSelector(prefix),
  ];
}

/** What the NestJS module runs (its scripts included: commands inside EVAL are checked too). */
export const APP_COMMANDS = [
  '+ping',
  '+info',
  '+multi',
  '+exec',
  '+discard',
  '+evalsha',
  '+eval',
  '+get',
  '+set',
  '+del',
  '+exists',
  '+expire',
  '+pexpire',
  '+pexpireat',
  '+pttl',
  '+incr',
  '+sadd',
  '+smembers',
  '+zadd',
  '+zrem',
  '+zrange',
  '+zremrangebyscore',
  '+zcard',
  '+scan',
  '+publish',
  '+subscribe',
  '+unsubscribe',
];

/** What nginx runs with `refresh = false`: reads and the subscription (and, by nginxAckSelector, acknowledgements); no write to a key. */
export const NGINX_COMMANDS = ['+ping', '+get', '+sismember', '+smembers', '+pttl', '+subscribe', '+unsubscribe'];

/** A selector (Redis 7): PUBLISH on the acknowledgement channel only, never on the revocation channel. */
export function nginxAckSelector(prefix: string): string {
  return `(&${prefix}:ack +publish)`;
}

/** What nginx's refresh (on by default, PROTOCOL.md section 12) adds: its script, which only shortens or extends the keys' time to live. */
export const NGINX_REFRESH_COMMANDS = ['+evalsha', '+eval', '+pexpire', '+zadd'];

// `npm run demo`: Redis, the demo app and nginx on 127.0.0.1 until Ctrl-C or SIGTERM.
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { FIXTURE_USERS } from '../apps/demo/src/users';
import { DEMO_ADAPTERS, DemoAdapter, DemoStack } from './demo-stack';
import { REPO_ROOT } from './nginx-conf';
import { prometheusBinary } from './prometheus-server';

const LOCK = join(REPO_ROOT, '.run', 'demo.pid');

function port(name: string, fallback: number): number {
  const value = process.env[name];
  const n = value ? Number(value) : fallback;
  if (!Number.isInteger(n) || n < 1 || n > 65535) {
    console.error(`${name} must be a port number, not "${value}"`);
    process.exit(2);
  }
  return n;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function main(): Promise<void> {
  if (existsSync(LOCK)) {
    const pid = Number(readFileSync(LOCK, 'utf8'));
    if (pid && alive(pid)) {
      console.error(`The demo is already running (pid ${pid}). Stop it with Ctrl-C in its terminal, or: kill ${pid}`);
      process.exit(1);
    }
  }
  mkdirSync(join(REPO_ROOT, '.run'), { recursive: true });
  writeFileSync(LOCK, String(process.pid));

  const nginxPort = port('NGINX_PORT', 8089);
  const appPort = port('APP_PORT', 5017);
  const redisPort = port('REDIS_PORT', 6389);
  const nginxAdminPort = port('NGINX_ADMIN_PORT', 9145);
  const appAdminPort = port('APP_ADMIN_PORT', 9464);
  const prometheusPort = port('PROMETHEUS_PORT', 9090);
  const adapter = (process.env.DEMO_ADAPTER || 'express') as DemoAdapter;
  if (!DEMO_ADAPTERS.includes(adapter)) {
    rmSync(LOCK, { force: true });
    console.error(`DEMO_ADAPTER must be express or fastify, not "${adapter}"`);
    process.exit(2);
  }
  // Debian's prometheus (scripts/install.sh installs it): scraping both doors every 5 s, when it is there.
  const prometheus = prometheusBinary() ? { port: prometheusPort, scrapeIntervalSeconds: 5 } : undefined;
  let stack: DemoStack;
  try {
    stack = await DemoStack.start({
      adapter,
      nginxPort,
      appPort,
      redisPort,
      nginxAdminPort,
      appAdminPort,
      prometheus,
      appOutput: 'inherit',
    });
  } catch (error) {
    rmSync(LOCK, { force: true });
    const message = (error as Error).message;
    console.error(`The demo could not start: ${message}`);
    if (/EADDRINUSE|Address already in use|timed out/.test(message)) {
      const ports = [
        `${nginxPort} (NGINX_PORT)`,
        `${appPort} (APP_PORT)`,
        `${redisPort} (REDIS_PORT)`,
        `${nginxAdminPort} (NGINX_ADMIN_PORT)`,
        `${appAdminPort} (APP_ADMIN_PORT)`,
        ...(prometheus ? [`${prometheusPort} (PROMETHEUS_PORT)`] : []),
      ];
      console.error(`Is something else using port ${ports.join(', ')}? Set other ports in those variables.`);
    }
    process.exit(1);
  }

  console.log(`
  The demo is up: ${stack.url}/app   (nginx → the app on ${stack.adapter} at ${stack.appUrl}, Redis on 127.0.0.1:${stack.redis.port})

  Log in as one of:
${FIXTURE_USERS.map((u) => `    ${u.email.padEnd(22)} password ${u.password.padEnd(12)} groups: ${u.groups.join(', ') || '(none)'}`).join('\n')}

  Then open ${stack.url}/app/api/v1/group/one/cacheable/report twice: the second answer comes from nginx's cache
  (X-Cache-Status: HIT) for every member of group one; others get 403. As admin@example.com, ${stack.url}/app/admin
  lists every user's sessions and removes a user from a group, logs a user out everywhere or purges a group's cache,
  at nginx too. Ctrl-C stops everything.

  Operations (local only, never through the public port):
    nginx   ${stack.nginxAdminUrl}/metrics   ${stack.nginxAdminUrl}/health
    app     ${stack.appAdminUrl}/metrics   ${stack.appAdminUrl}/health
${
  stack.prometheus
    ? `    Prometheus ${stack.prometheus.url} scrapes both every 5 s (jobs "nginx" and "app"); the admin page's status panel reads it.`
    : '    Prometheus: not installed (Debian\'s "prometheus" package; scripts/install.sh installs it), so no status panel.'
}
`);

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    console.log(`\n${signal}: stopping ${stack.prometheus ? 'Prometheus, ' : ''}nginx, the app and Redis...`);
    await stack.stop();
    rmSync(LOCK, { force: true });
    process.exit(0);
  };
  process.on('SIGINT', () => void stop('SIGINT'));
  process.on('SIGTERM', () => void stop('SIGTERM'));
  stack.app.once('exit', (code) => {
    if (stopping) return;
    console.error(`The app exited (${code}); stopping the demo.`);
    void stop('app exit');
  });
}

void main();

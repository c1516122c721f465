import { ChildProcess, spawn } from 'node:child_process';
import { resolve } from 'node:path';
import { RedisServer } from '../../../stack/redis-server';
import { request } from '../../../stack/http-client';
import { PROTOCOL_DEFAULTS } from '../../../protocol/testkit';

/**
 * A Fastify app that also uses @fastify/cookie for cookies of its own, as
 * Fastify users do (it parses theirs and writes them with reply.setCookie),
 * beside the module, which reads its cookie by PROTOCOL.md section 10 and
 * writes its Set-Cookie itself: neither gets in the other's way. The built
 * library in a plain Node process (scripts/test.sh builds first; so must
 * you): @fastify/cookie loads the `cookie` package with import(), which
 * jest's CommonJS runtime refuses.
 */

const DIST = resolve(__dirname, '../dist');
const NAME = PROTOCOL_DEFAULTS.cookieName;
const SECRET = 'fastify-cookie-secret-fastify-cookie';

function startApp(redisUrl: string): Promise<{ child: ChildProcess; port: number }> {
  const script = `
    require('reflect-metadata');
    const { Module } = require('@nestjs/common');
    const { NestFactory } = require('@nestjs/core');
    const { FastifyAdapter } = require('@nestjs/platform-fastify');
    const { SharedSessionModule, SharedSessionService } = require(${JSON.stringify(DIST)});
    (async () => {
      class AppModule {}
      Module({ imports: [SharedSessionModule.forRoot({ secret: ${JSON.stringify(SECRET)}, redis: ${JSON.stringify(redisUrl)} })] })(AppModule);
      const app = await NestFactory.create(AppModule, new FastifyAdapter(), { logger: false, abortOnError: false });
      const fastify = app.getHttpAdapter().getInstance();
      await fastify.register(require('@fastify/cookie'));
      const sessions = app.get(SharedSessionService);
      fastify.post('/login', async (req, reply) => {
        reply.setCookie('theme', 'dark', { path: '/' });
        await sessions.login(req, { username: 'joe', groups: ['one'] });
        reply.code(204).send();
      });
      fastify.get('/whoami', async (req) => ({ user: req.session ? req.session.username ?? null : null, theme: req.cookies.theme ?? null }));
      await app.listen(0, '127.0.0.1');
      console.log(JSON.stringify({ port: app.getHttpServer().address().port }));
      process.on('SIGTERM', () => app.close().then(() => process.exit(0)));
    })().catch((err) => { console.error(err); process.exit(1); });
  `;
  return new Promise((done, fail) => {
    const child = spawn(process.execPath, ['-e', script], { cwd: resolve(__dirname, '../../..') });
    let stdout = '';
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
      if (stdout.includes('\n')) done({ child, port: JSON.parse(stdout.split('\n')[0]).port });
    });
    child.on('exit', (code) => fail(new Error(`the app exited ${code}: ${stderr}`)));
  });
}

describe('on Fastify with @fastify/cookie registered by the app (the built library)', () => {
  let server: RedisServer;
  let app: { child: ChildProcess; port: number };
  const setCookies = (headers: Record<string, string[]>) => (headers['set-cookie'] ?? []).map((l) => l.split(';')[0]);

  beforeAll(async () => {
    server = await RedisServer.start();
    app = await startApp(server.url);
  });
  afterAll(async () => {
    if (app && app.child.exitCode === null) {
      const exited = new Promise((resolve) => app.child.once('exit', resolve));
      app.child.kill('SIGTERM');
      await exited;
    }
    await server?.dispose();
  });

  it("the app's cookie and the session cookie both arrive, and each is read back by its own reader", async () => {
    const login = await request(app.port, '/login', { method: 'POST', body: '' });
    expect(login.status).toBe(204);
    const lines = setCookies(login.headers);
    expect(lines).toContain('theme=dark');
    const session = lines.find((l) => l.startsWith(`${NAME}=`))!;
    expect(session).toMatch(new RegExp(`^${NAME}=[^.]+\\.[A-Za-z0-9_-]+$`));
    const back = await request(app.port, '/whoami', { headers: { Cookie: `theme=dark; ${session}` } });
    expect(JSON.parse(back.body)).toEqual({ user: 'joe', theme: 'dark' });
  });

  it("@fastify/cookie's reading of our cookie never counts: two different session values are no session", async () => {
    const login = await request(app.port, '/login', { method: 'POST', body: '' });
    const session = setCookies(login.headers).find((l) => l.startsWith(`${NAME}=`))!;
    const back = await request(app.port, '/whoami', { headers: { Cookie: `${session}; ${NAME}=forged; theme=light` } });
    expect(JSON.parse(back.body)).toEqual({ user: null, theme: 'light' });
  });
});

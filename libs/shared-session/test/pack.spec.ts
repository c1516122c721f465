import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { freePort } from '../../../stack/ports';
import { waitFor } from '../../../stack/wait';
import { RedisServer } from '../../../stack/redis-server';
import { cookieValue, PROTOCOL_DEFAULTS } from '../../../protocol/testkit';

const LIBRARY = resolve(__dirname, '..');
const ROOT = resolve(LIBRARY, '../..');

/** The versions the repository tests with: the fresh app gets the same ones. */
function installedVersion(name: string): string {
  return JSON.parse(readFileSync(join(ROOT, 'node_modules', name, 'package.json'), 'utf8')).version;
}

/** Runs a command; on failure the error carries what it printed. */
function run(command: string, args: string[], cwd: string): void {
  const result = spawnSync(command, args, { cwd, encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`${command} ${args.join(' ')} failed:\n${result.stdout}\n${result.stderr}`);
}

const MAIN_TS = `
import 'reflect-metadata';
import { Body, Controller, Get, HttpCode, Module, Post, Req, UseGuards } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import type { Request } from 'express';
import { GroupGuard, Groups, SharedSessionModule, SharedSessionService } from 'nest-resty-shared-session';

@Controller()
class ReportsController {
  constructor(private readonly sessions: SharedSessionService) {}

  @Post('login')
  @HttpCode(204)
  async login(@Req() req: Request, @Body() body: { user: string }) {
    await this.sessions.login(req, { username: body.user, groups: ['acme'] });
  }

  @Get('groups/:groupId/report')
  @UseGuards(GroupGuard)
  @Groups({ param: 'groupId' })
  report(@Req() req: Request) {
    return { user: req.session.username, group: req.params.groupId };
  }
}

@Module({
  imports: [SharedSessionModule.forRoot({ secret: 'packed-secret', redis: process.env.REDIS_URL })],
  controllers: [ReportsController],
})
class AppModule {}

NestFactory.create(AppModule, { logger: ['error'] }).then((app) => app.listen(Number(process.env.PORT), '127.0.0.1'));
`;

describe('the npm package, as a user installs it', () => {
  let dir: string;
  let redis: RedisServer;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'rss-pack-'));
    redis = await RedisServer.start();
  });
  afterAll(async () => {
    await redis.dispose();
    rmSync(dir, { recursive: true, force: true });
  });

  it('packs, installs into a fresh Nest app, compiles, and serves a guarded request', async () => {
    run('npm', ['pack', '--pack-destination', dir, '--silent'], LIBRARY);
    const tarball = readdirSync(dir).find((f) => f.endsWith('.tgz'))!;
    expect(tarball).toMatch(/^nest-resty-shared-session-\d+\.\d+\.\d+\.tgz$/);
    const listing = execFileSync('tar', ['-tzf', join(dir, tarball)], { encoding: 'utf8' });
    expect(listing).toContain('package/dist/index.js');
    expect(listing).toContain('package/dist/index.d.ts');
    expect(listing).not.toMatch(/\.spec\.|package\/src\//);

    const app = join(dir, 'app');
    mkdirSync(join(app, 'src'), { recursive: true });
    const dependencies: Record<string, string> = { 'nest-resty-shared-session': `file:../${tarball}` };
    for (const name of ['@nestjs/common', '@nestjs/core', '@nestjs/platform-express', 'reflect-metadata', 'rxjs']) {
      dependencies[name] = installedVersion(name);
    }
    writeFileSync(
      join(app, 'package.json'),
      JSON.stringify({ name: 'fresh-app', private: true, dependencies, devDependencies: { typescript: installedVersion('typescript'), '@types/node': installedVersion('@types/node'), '@types/express': installedVersion('@types/express') } }),
    );
    writeFileSync(
      join(app, 'tsconfig.json'),
      JSON.stringify({ compilerOptions: { module: 'commonjs', target: 'ES2022', strict: true, experimentalDecorators: true, emitDecoratorMetadata: true, outDir: 'dist', rootDir: 'src', skipLibCheck: false, types: ['node'] } }),
    );
    writeFileSync(join(app, 'src/main.ts'), MAIN_TS);
    run('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', '--loglevel=error'], app);
    run(join(app, 'node_modules/.bin/tsc'), ['-p', 'tsconfig.json'], app);

    const port = await freePort();
    const child = spawn(process.execPath, ['dist/main.js'], { cwd: app, env: { ...process.env, PORT: String(port), REDIS_URL: redis.url }, stdio: 'ignore' });
    try {
      const base = `http://127.0.0.1:${port}`;
      await waitFor('the packed app to listen', async () => (await fetch(`${base}/groups/acme/report`).catch(() => undefined))?.status === 401, 20_000);
      const login = await fetch(`${base}/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ user: 'joe' }) });
      expect(login.status).toBe(204);
      const cookie = login.headers.get('set-cookie')!.split(';')[0];
      // The default cookie name and salt: the protocol's.
      const sid = cookie.slice(PROTOCOL_DEFAULTS.cookieName.length + 1, cookie.indexOf('.'));
      expect(sid).toMatch(/^[0-9a-f-]{36}$/);
      expect(cookie).toBe(`${PROTOCOL_DEFAULTS.cookieName}=${cookieValue(sid, 'packed-secret', PROTOCOL_DEFAULTS.salt)}`);
      const ok = await fetch(`${base}/groups/acme/report`, { headers: { cookie } });
      expect(ok.status).toBe(200);
      expect(await ok.json()).toEqual({ user: 'joe', group: 'acme' });
      expect((await fetch(`${base}/groups/other/report`, { headers: { cookie } })).status).toBe(403);
    } finally {
      child.kill('SIGTERM');
    }
  }, 180_000);
});

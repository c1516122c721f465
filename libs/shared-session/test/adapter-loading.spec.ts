import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { RedisServer } from '../../../stack/redis-server';
import { TEST_ADAPTERS, TestAdapter } from './support';

/**
 * Each app loads only its own platform's packages: the built library in a
 * plain Node process (scripts/test.sh builds first; so must you), an app
 * made with NestFactory on one adapter, and the packages in require.cache
 * once it has started and answered.
 */

const DIST = resolve(__dirname, '../dist');
const WATCHED = ['express', 'express-session', '@nestjs/platform-express', 'fastify', '@fastify/cookie', '@nestjs/platform-fastify'];

/** The watched packages an app on `adapter` has loaded. */
function loadedPackages(adapter: TestAdapter, redisUrl: string): Promise<string[]> {
  const script = `
    require('reflect-metadata');
    const { Module } = require('@nestjs/common');
    const { NestFactory } = require('@nestjs/core');
    const { SharedSessionModule } = require(${JSON.stringify(DIST)});
    (async () => {
      class AppModule {}
      Module({ imports: [SharedSessionModule.forRoot({ secret: 'loading-secret-loading-secret-32', redis: ${JSON.stringify(redisUrl)} })] })(AppModule);
      const options = { logger: false, abortOnError: false };
      const adapter = ${JSON.stringify(adapter)} === 'fastify' ? new (require('@nestjs/platform-fastify').FastifyAdapter)() : undefined;
      const app = adapter ? await NestFactory.create(AppModule, adapter, options) : await NestFactory.create(AppModule, options);
      await app.listen(0, '127.0.0.1');
      const res = await fetch(await app.getUrl() + '/nothing-here');
      const watched = ${JSON.stringify(WATCHED)};
      const loaded = watched.filter((p) => Object.keys(require.cache).some((f) => f.includes('/node_modules/' + p + '/')));
      await app.close();
      console.log(JSON.stringify({ status: res.status, type: app.getHttpAdapter().getType(), loaded }));
    })().catch((err) => { console.error(err); process.exit(1); });
  `;
  return new Promise((done, fail) => {
    const child = spawn(process.execPath, ['-e', script], { cwd: resolve(__dirname, '../../..') });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('exit', (code) => {
      if (code !== 0) return fail(new Error(`the ${adapter} app exited ${code}: ${stderr}`));
      const { status, type, loaded } = JSON.parse(stdout.trim().split('\n').pop()!);
      expect([status, type]).toEqual([404, adapter]);
      done(loaded);
    });
  });
}

describe("an app loads only its own adapter's packages (the built library)", () => {
  let server: RedisServer;
  beforeAll(async () => {
    server = await RedisServer.start();
  });
  afterAll(() => server?.dispose());

  it.each(TEST_ADAPTERS)('on %s', async (adapter) => {
    const loaded = await loadedPackages(adapter, server.url);
    const own =
      adapter === 'express' ? ['express', 'express-session', '@nestjs/platform-express'] : ['fastify', '@nestjs/platform-fastify'];
    expect(loaded.sort()).toEqual(own.sort());
  });
});

describe('the package manifest: each platform is an optional peer, so that a user installs only theirs', () => {
  const manifest = JSON.parse(readFileSync(resolve(__dirname, '../package.json'), 'utf8'));

  it.each(['@nestjs/platform-express', '@nestjs/platform-fastify', 'fastify'])('%s', (peer) => {
    expect([peer, manifest.peerDependencies[peer] !== undefined, manifest.peerDependenciesMeta?.[peer]]).toEqual([
      peer,
      true,
      { optional: true },
    ]);
  });

  it('no Fastify package is a dependency', () => {
    expect(
      Object.keys(manifest.dependencies).filter((d) => d === 'fastify' || d.startsWith('@fastify/') || d.includes('platform-')),
    ).toEqual([]);
  });
});

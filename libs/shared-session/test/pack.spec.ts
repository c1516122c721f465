import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve, sep } from 'node:path';
import { request } from '../../../stack/http-client';
import { nodeBinaries } from '../../../stack/node-binaries';
import { freePort } from '../../../stack/ports';
import { waitFor } from '../../../stack/wait';
import { RedisServer } from '../../../stack/redis-server';
import { cookieValue, PROTOCOL_DEFAULTS, timedSessionId } from '../../../protocol/testkit';

/**
 * The package as a user gets it: `npm pack`, installed into fresh Nest apps of
 * each supported major and module system, compiled with tsc, and run on every
 * Node the tests have (this one, and the majors scripts/install.sh puts in
 * .tools/), each driving the guard against a real redis-server.
 *
 * It packs the build that `npm run build` made (scripts/test.sh builds first;
 * so must you before `jest --selectProjects unit`): rebuilding here would pull
 * dist/ from under the end-to-end specs that run beside it. The exact file
 * list below fails on a stale build.
 *
 * The apps live in .run/pack-apps/ and keep their node_modules between runs;
 * each run writes their package.json afresh and installs the new tarball.
 */
const LIBRARY = resolve(__dirname, '..');
const ROOT = resolve(LIBRARY, '../..');
const APPS = join(ROOT, '.run', 'pack-apps');
const TARBALL = 'nest-resty-shared-session.tgz';

/** The versions the repository tests with: the Nest 11 app gets the same ones. */
function installedVersion(name: string): string {
  return JSON.parse(readFileSync(join(ROOT, 'node_modules', name, 'package.json'), 'utf8')).version;
}

/** What `nest new` 12 (@nestjs/schematics 12.0) gives, as tested; bump with the README's compatibility table. */
const NEST_12 = {
  dependencies: { '@nestjs/common': '12.5.1', '@nestjs/core': '12.5.1', '@nestjs/platform-express': '12.5.1' },
  devDependencies: { typescript: '6.0.3', '@types/node': '24.19.4' },
};
/** @nestjs/platform-fastify has no 12.5.1: the release of that minor. */
const NEST_12_FASTIFY = '12.5.0';

/** Runs a command; on failure the error carries what it printed. */
function run(command: string, args: string[], cwd: string, env?: Record<string, string>): string {
  const result = spawnSync(command, args, { cwd, encoding: 'utf8', env: env && { ...process.env, ...env } });
  if (result.status !== 0) throw new Error(`${command} ${args.join(' ')} failed:\n${result.stdout}\n${result.stderr}`);
  return result.stdout;
}

/** The package README's complete example is each app's src/main.ts: what a user copies is what is tested. */
const README = readFileSync(join(LIBRARY, 'README.md'), 'utf8');
const MAIN_TS = /## A complete example[\s\S]*?```ts\n([\s\S]*?)```/.exec(README)![1];
const SECRET = /secret: '([^']+)'/.exec(MAIN_TS)![1];
/** And its Fastify version, for the apps on @nestjs/platform-fastify (same routes, same secret). */
const MAIN_TS_FASTIFY = /### The same on Fastify[\s\S]*?```ts\n([\s\S]*?)```/.exec(README)![1];

/**
 * tsc options every app shares: the decorators Nest needs, and skipLibCheck
 * off so that the package's declarations are type-checked too. That checks
 * every .d.ts, the slow part; incremental (as `nest new` sets it), a run after
 * the first checks again only what changed: the package's declarations.
 */
const COMPILER = {
  target: 'ES2023',
  strict: true,
  experimentalDecorators: true,
  emitDecoratorMetadata: true,
  outDir: 'dist',
  rootDir: 'src',
  skipLibCheck: false,
  incremental: true,
  tsBuildInfoFile: 'tsconfig.tsbuildinfo',
  types: ['node'],
};

interface FreshApp {
  name: string;
  /** Where node_modules is (shared by the apps of one Nest major). */
  installDir: string;
  /** Where this app's package.json, tsconfig.json and src/ are. */
  dir: string;
  packageJson: { type?: 'module' | 'commonjs'; dependencies?: Record<string, string>; devDependencies?: Record<string, string> };
  compilerOptions: object;
  /** Its src/main.ts: one of the README's complete examples. */
  main: string;
}

const nest11 = join(APPS, 'nest11');
const nest12 = join(APPS, 'nest12');
const APPS_UNDER_TEST: FreshApp[] = [
  {
    // An app upgraded from Nest 10 keeps `module: commonjs` (node10 resolution: the package's main and types).
    name: 'Nest 11, CommonJS',
    installDir: nest11,
    dir: nest11,
    packageJson: {
      dependencies: Object.fromEntries(
        ['@nestjs/common', '@nestjs/core', '@nestjs/platform-express', 'reflect-metadata', 'rxjs'].map((n) => [n, installedVersion(n)]),
      ),
      devDependencies: Object.fromEntries(['typescript', '@types/node', '@types/express'].map((n) => [n, installedVersion(n)])),
    },
    compilerOptions: { ...COMPILER, module: 'commonjs' },
    main: MAIN_TS,
  },
  {
    // `nest new` 12: "type": "module", nodenext (the package's import condition).
    name: 'Nest 12, ESM',
    installDir: nest12,
    dir: nest12,
    packageJson: {
      type: 'module',
      dependencies: {
        ...NEST_12.dependencies,
        'reflect-metadata': installedVersion('reflect-metadata'),
        rxjs: installedVersion('rxjs'),
        // The optional peer of the `metrics` option (the ESM entry's tests turn it on).
        'prom-client': installedVersion('prom-client'),
      },
      devDependencies: { ...NEST_12.devDependencies, '@types/express': installedVersion('@types/express') },
    },
    compilerOptions: { ...COMPILER, module: 'nodenext', moduleResolution: 'nodenext' },
    main: MAIN_TS,
  },
  {
    // `nest new --type cjs` 12: nodenext without "type": "module" (the require condition; Nest itself through require(esm)).
    name: 'Nest 12, CommonJS',
    installDir: nest12,
    dir: join(nest12, 'cjs'),
    packageJson: { type: 'commonjs' },
    compilerOptions: { ...COMPILER, module: 'nodenext', moduleResolution: 'nodenext' },
    main: MAIN_TS,
  },
  {
    // On Fastify (issue #25): no Express package installed at all.
    name: 'Nest 11, CommonJS, Fastify',
    installDir: join(APPS, 'nest11-fastify'),
    dir: join(APPS, 'nest11-fastify'),
    packageJson: {
      dependencies: Object.fromEntries(
        ['@nestjs/common', '@nestjs/core', '@nestjs/platform-fastify', 'fastify', 'reflect-metadata', 'rxjs'].map((n) => [
          n,
          installedVersion(n),
        ]),
      ),
      devDependencies: Object.fromEntries(['typescript', '@types/node'].map((n) => [n, installedVersion(n)])),
    },
    // As `nest new` sets it: fastify's logger (pino) types default-import a CommonJS module.
    compilerOptions: { ...COMPILER, module: 'commonjs', allowSyntheticDefaultImports: true },
    main: MAIN_TS_FASTIFY,
  },
  {
    name: 'Nest 12, ESM, Fastify',
    installDir: join(APPS, 'nest12-fastify'),
    dir: join(APPS, 'nest12-fastify'),
    packageJson: {
      type: 'module',
      dependencies: {
        '@nestjs/common': NEST_12.dependencies['@nestjs/common'],
        '@nestjs/core': NEST_12.dependencies['@nestjs/core'],
        '@nestjs/platform-fastify': NEST_12_FASTIFY,
        fastify: installedVersion('fastify'),
        'reflect-metadata': installedVersion('reflect-metadata'),
        rxjs: installedVersion('rxjs'),
      },
      devDependencies: NEST_12.devDependencies,
    },
    compilerOptions: { ...COMPILER, module: 'nodenext', moduleResolution: 'nodenext' },
    main: MAIN_TS_FASTIFY,
  },
];
const NODES = nodeBinaries();

/** What the tarball must hold: package.json, README, LICENSE, and for each source module its JavaScript, map and declarations, plus the ESM entry. */
function expectedFiles(): string[] {
  const modules = (readdirSync(join(LIBRARY, 'src'), { recursive: true }) as string[])
    .filter((f) => f.endsWith('.ts') && !f.endsWith('.spec.ts'))
    .map((f) => f.slice(0, -'.ts'.length).split(sep).join('/'));
  const dist = modules.flatMap((m) => [`${m}.js`, `${m}.js.map`, `${m}.d.ts`]).concat('index.mjs', 'index.d.mts');
  return ['LICENSE', 'README.md', 'package.json', ...dist.map((f) => `dist/${f}`)].map((f) => `package/${f}`).sort();
}

describe('the npm package, as a user installs it', () => {
  let work: string;
  let unpacked: string;
  let redis: RedisServer;
  const built = new Set<string>();

  beforeAll(async () => {
    const newest = (dir: string) =>
      Math.max(
        ...readdirSync(dir)
          .filter((f) => !f.endsWith('.spec.ts'))
          .map((f) => statSync(join(dir, f)).mtimeMs),
      );
    if (!existsSync(join(LIBRARY, 'dist')) || newest(join(LIBRARY, 'dist')) < newest(join(LIBRARY, 'src'))) {
      throw new Error('libs/shared-session/dist is missing or older than src/: run `npm run build` first');
    }
    work = mkdtempSync(join(tmpdir(), 'rss-pack-'));
    const name = run('npm', ['pack', '--ignore-scripts', '--pack-destination', work, '--silent'], LIBRARY).trim();
    expect(name).toMatch(/^nest-resty-shared-session-\d+\.\d+\.\d+\.tgz$/);
    mkdirSync(APPS, { recursive: true });
    copyFileSync(join(work, name), join(APPS, TARBALL));
    unpacked = join(work, 'unpacked');
    mkdirSync(unpacked);
    execFileSync('tar', ['-xzf', join(APPS, TARBALL), '-C', unpacked]);
    redis = await RedisServer.start();
  }, 60_000);
  afterAll(async () => {
    await redis?.dispose();
    rmSync(work, { recursive: true, force: true });
  });

  it('ships exactly the build, its declarations and maps, the README and the LICENSE', () => {
    const listing = execFileSync('tar', ['-tzf', join(APPS, TARBALL)], { encoding: 'utf8' })
      .trim()
      .split('\n')
      .sort();
    expect(listing).toEqual(expectedFiles());
    expect(readFileSync(join(unpacked, 'package/LICENSE'), 'utf8')).toBe(readFileSync(join(ROOT, 'LICENSE'), 'utf8'));
  });

  it('carries every Redis script inline, built from its .lua file, and reads no file to find one', () => {
    const dist = join(unpacked, 'package/dist');
    const folder = join(ROOT, 'resty/lib/resty/shared_session/scripts');
    const scripts = readdirSync(folder).filter((f) => f.endsWith('.lua') && !f.startsWith('lib-'));
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { REDIS_SCRIPTS } = require(join(dist, 'redis-scripts.generated.js')) as { REDIS_SCRIPTS: Record<string, string> };
    expect(Object.keys(REDIS_SCRIPTS).sort()).toEqual(scripts.map((f) => f.slice(0, -'.lua'.length)).sort());
    for (const file of scripts) {
      // Each line of code of the file is in its script (the snippets it includes come in between; comments stay out).
      const lines = readFileSync(join(folder, file), 'utf8')
        .split('\n')
        .filter((l) => l && !l.trimStart().startsWith('--'));
      for (const line of lines) expect([file, REDIS_SCRIPTS[file.slice(0, -'.lua'.length)].includes(line)]).toEqual([file, true]);
    }
    for (const js of (readdirSync(dist, { recursive: true }) as string[]).filter((f) => f.endsWith('.js'))) {
      expect([js, /__dirname|\.lua['"`]/.test(readFileSync(join(dist, js), 'utf8'))]).toEqual([js, false]);
    }
  });

  it('maps carry the TypeScript they map to (no src/ shipped, nothing to look up)', () => {
    const dist = join(unpacked, 'package/dist');
    for (const map of readdirSync(dist).filter((f) => f.endsWith('.js.map'))) {
      const { sources, sourcesContent } = JSON.parse(readFileSync(join(dist, map), 'utf8'));
      const contents = (sourcesContent ?? []).filter((s: unknown) => typeof s === 'string' && s.length > 0);
      expect([map, contents.length]).toEqual([map, sources.length]);
    }
  });

  it('declares what it supports: Nest 11 and 12 peers, Node 20.19+, 22.12+, 24; types and code for import and require', () => {
    const manifest = JSON.parse(readFileSync(join(unpacked, 'package/package.json'), 'utf8'));
    for (const peer of ['@nestjs/common', '@nestjs/core', '@nestjs/platform-express', '@nestjs/platform-fastify'])
      expect(manifest.peerDependencies[peer]).toBe('^11.0.0 || ^12.0.0');
    expect(manifest.engines.node).toBe('^20.19.0 || ^22.12.0 || >=24.0.0');
    expect(manifest.exports['.']).toEqual({
      import: { types: './dist/index.d.mts', default: './dist/index.mjs' },
      require: { types: './dist/index.d.ts', default: './dist/index.js' },
    });
    for (const field of ['repository', 'homepage', 'bugs', 'keywords', 'license', 'description']) expect(manifest[field]).toBeTruthy();
    // The operator tool: `npx nest-resty-shared-session`.
    expect(manifest.bin).toEqual({ 'nest-resty-shared-session': 'dist/cli.js' });
    expect(readFileSync(join(unpacked, 'package/dist/cli.js'), 'utf8')).toMatch(/^#!\/usr\/bin\/env node\n/);
  });

  describe.each(APPS_UNDER_TEST)('in a fresh $name app', (app) => {
    it('installs with no peer conflict and compiles with tsc', () => {
      const packageJson = { name: 'fresh-app', private: true, ...app.packageJson };
      if (app.dir === app.installDir) {
        // Other versions than last run's: start from an empty folder, as a new app would.
        const wanted = JSON.stringify(
          { ...packageJson, dependencies: { ...packageJson.dependencies, 'nest-resty-shared-session': `file:../${TARBALL}` } },
          null,
          2,
        );
        const marker = join(app.dir, 'installed-for.json');
        if (!existsSync(marker) || readFileSync(marker, 'utf8') !== wanted) rmSync(app.dir, { recursive: true, force: true });
        mkdirSync(app.dir, { recursive: true });
        writeFileSync(join(app.dir, 'package.json'), wanted);
        // Named on the command line, so that npm installs this tarball even when the last run's had the same version.
        run('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', '--loglevel=error', `../${TARBALL}`], app.dir);
        writeFileSync(marker, wanted);
      } else {
        mkdirSync(app.dir, { recursive: true });
        writeFileSync(join(app.dir, 'package.json'), JSON.stringify(packageJson, null, 2));
      }
      mkdirSync(join(app.dir, 'src'), { recursive: true });
      writeFileSync(join(app.dir, 'src/main.ts'), app.main);
      writeFileSync(join(app.dir, 'tsconfig.json'), JSON.stringify({ compilerOptions: app.compilerOptions, include: ['src'] }, null, 2));
      run(join(app.installDir, 'node_modules/.bin/tsc'), ['-p', 'tsconfig.json'], app.dir);
      built.add(app.name);
    }, 120_000);

    it.each(NODES)(
      'serves a guarded request on Node $version',
      async (node) => {
        if (!built.has(app.name)) throw new Error(`the ${app.name} app did not build`);
        const port = await freePort();
        const child = spawn(node.path, ['dist/main.js'], {
          cwd: app.dir,
          env: { ...process.env, PORT: String(port), REDIS_URL: redis.url },
          stdio: ['ignore', 'ignore', 'pipe'],
        });
        let stderr = '';
        child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
        try {
          const report = (group: string, cookie?: string) =>
            request(port, `/groups/${group}/report`, { headers: cookie ? { Cookie: cookie } : {} });
          await waitFor(
            `the packed app to listen`,
            async () => child.exitCode === null && (await report('acme')).status === 401,
            20_000,
          ).catch((error) => {
            throw new Error(`${error.message}\n${stderr}`);
          });
          const login = await request(port, '/login', {
            method: 'POST',
            headers: { 'Content-Type': 'application/json' },
            body: JSON.stringify({ user: 'joe' }),
          });
          expect(login.status).toBe(204);
          const cookie = login.headers['set-cookie'][0].split(';')[0];
          // The default cookie name and salt: the protocol's.
          const sid = cookie.slice(PROTOCOL_DEFAULTS.cookieName.length + 1, cookie.indexOf('.'));
          expect(timedSessionId(sid)).not.toBeNull(); // a timed id (PROTOCOL.md section 11)
          expect(cookie).toBe(`${PROTOCOL_DEFAULTS.cookieName}=${cookieValue(sid, SECRET, PROTOCOL_DEFAULTS.salt)}`);
          const ok = await report('acme', cookie);
          expect(ok.status).toBe(200);
          expect(JSON.parse(ok.body)).toEqual({ user: 'joe', group: 'acme' });
          expect((await report('other', cookie)).status).toBe(403);
          // The operator tool as `npx nest-resty-shared-session` runs it (the package's bin): joe's session is in his index.
          const cli = spawnSync(
            node.path,
            [join(app.installDir, 'node_modules/.bin/nest-resty-shared-session'), 'sessions', 'joe', '--json'],
            {
              env: { ...process.env, REDIS_URL: redis.url },
              encoding: 'utf8',
            },
          );
          expect([cli.status, cli.stderr]).toEqual([0, '']);
          expect(JSON.parse(cli.stdout).sessions.map((s: { sessionId: string }) => s.sessionId)).toContain(sid);
          // No warning either (an experimental require(esm), a deprecation).
          expect(stderr).toBe('');
        } finally {
          if (child.exitCode === null) {
            const exited = new Promise((resolve) => child.once('exit', resolve));
            child.kill('SIGTERM');
            await exited;
          }
        }
      },
      30_000,
    );
  });

  // After the apps: it runs in the Nest 12 ESM one.
  describe('the ESM entry', () => {
    it('gives an ESM app the same names as a CommonJS one, from one copy of the code', () => {
      const app = APPS_UNDER_TEST[1];
      const script = `
      import { createRequire } from 'node:module';
      const esm = await import('nest-resty-shared-session');
      const cjs = createRequire(import.meta.url)('nest-resty-shared-session');
      const names = Object.keys(esm).sort();
      console.log(JSON.stringify({ same: JSON.stringify(names) === JSON.stringify(Object.keys(cjs).sort()), oneCopy: names.every((n) => esm[n] === cjs[n]), names: names.length }));
    `;
      const out = JSON.parse(run(process.execPath, ['--input-type=module', '-e', script], app.dir));
      expect(out).toEqual({ same: true, oneCopy: true, names: expect.any(Number) });
      expect(out.names).toBeGreaterThan(5);
    });

    it('turns metrics on in an ESM app: the library loads the app’s prom-client and registers in its registry', () => {
      const app = APPS_UNDER_TEST[1];
      const script = `
      import 'reflect-metadata';
      import { Module } from '@nestjs/common';
      import { NestFactory } from '@nestjs/core';
      import { Registry } from 'prom-client';
      import { SharedSessionModule } from 'nest-resty-shared-session';
      const registry = new Registry();
      class AppModule {}
      Module({ imports: [SharedSessionModule.forRoot({ secret: '${SECRET}', redis: process.env.REDIS_URL, metrics: { registry } })] })(AppModule);
      const context = await NestFactory.createApplicationContext(AppModule, { logger: false });
      const text = await registry.metrics();
      await context.close();
      console.log(JSON.stringify(text.split('\\n').filter((l) => l.startsWith('shared_session_decisions_total{'))));
    `;
      const out = JSON.parse(run(process.execPath, ['--input-type=module', '-e', script], app.dir, { REDIS_URL: redis.url }));
      expect(out).toContain('shared_session_decisions_total{result="allowed",reason="none"} 0');
      expect(out).toHaveLength(6);
    });
  });
});

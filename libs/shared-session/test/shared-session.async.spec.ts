import { Controller, Get, Injectable, Logger, Module, UseGuards } from '@nestjs/common';
import { Test } from '@nestjs/testing';
import { FastifyAdapter } from '@nestjs/platform-fastify';
import Redis from 'ioredis';
import request from 'supertest';
import { RedisServer } from '../../../stack/redis-server';
import { cookieValue, PROTOCOL_DEFAULTS, signature, writeSession } from '../../../protocol/testkit';
import { waitFor } from '../../../stack/wait';
import { GroupGuard, InjectSharedSessionRedis, SharedSessionModule, SharedSessionService, SHARED_SESSION_REDIS } from '../src';
import { TEST_ADAPTERS } from './support';
import { startTestApp } from './test-app';

@Injectable()
class FakeConfigService {
  constructor(private readonly values: Record<string, string>) {}
  get(key: string): string | undefined {
    return this.values[key];
  }
}

describe('SharedSessionModule.forRootAsync and start-up errors', () => {
  let server: RedisServer;
  beforeAll(async () => {
    server = await RedisServer.start();
  });
  afterAll(() => server.dispose());

  function configModule(values: Record<string, string>) {
    @Module({ providers: [{ provide: FakeConfigService, useValue: new FakeConfigService(values) }], exports: [FakeConfigService] })
    class ConfigModule {}
    return ConfigModule;
  }

  it.each(TEST_ADAPTERS)(
    'on %s: takes its options from an injected config service, and a shared ioredis client stays open on shutdown',
    async (adapter) => {
      const client = new Redis(server.url);
      @Controller()
      class C {
        @Get('me')
        @UseGuards(GroupGuard)
        me() {
          return 'ok';
        }
      }
      const moduleRef = await Test.createTestingModule({
        imports: [
          SharedSessionModule.forRootAsync({
            imports: [configModule({ SESSION_SECRET: 'from-config', SESSION_COOKIE_NAME: 'sid' })],
            inject: [FakeConfigService],
            useFactory: (config: FakeConfigService) => ({
              secret: config.get('SESSION_SECRET')!,
              cookieName: config.get('SESSION_COOKIE_NAME'),
              redis: client,
            }),
          }),
        ],
        controllers: [C],
      }).compile();
      const app = await startTestApp(moduleRef, adapter);
      const sid = '00000000-0000-4000-8000-000000000000';
      // Salt and prefix left to the defaults: the protocol's.
      const { keyPrefix, salt, cookieName } = PROTOCOL_DEFAULTS;
      await writeSession(client, keyPrefix, sid, { username: 'u' }, { signature: signature(sid, 'from-config', salt), ttl: 60 });
      const cookie = cookieValue(sid, 'from-config', salt);
      await request(app.getHttpServer()).get('/me').set('Cookie', `sid=${cookie}`).expect(200);
      await request(app.getHttpServer()).get('/me').set('Cookie', `${cookieName}=${cookie}`).expect(401);
      await app.close();
      expect(client.status).toBe('ready');
      client.disconnect();
    },
  );

  it('an HTTP adapter whose type it does not know: start-up names the "adapter" option; with it, sessions work', async () => {
    /** A Fastify adapter of the app's own, that says another type. */
    class HouseAdapter extends FastifyAdapter {
      override getType(): string {
        return 'house-fastify';
      }
    }
    @Controller()
    class C {
      @Get('me')
      @UseGuards(GroupGuard)
      me() {
        return 'ok';
      }
    }
    const start = async (adapter?: 'fastify') => {
      const moduleRef = await Test.createTestingModule({
        imports: [SharedSessionModule.forRoot({ secret: 'house-secret', redis: server.url, ...(adapter ? { adapter } : {}) })],
        controllers: [C],
      }).compile();
      const app = moduleRef.createNestApplication(new HouseAdapter(), { logger: false });
      try {
        await app.init();
      } catch (err) {
        await app.close();
        throw err;
      }
      return app;
    };
    await expect(start()).rejects.toThrow(
      'the HTTP adapter "house-fastify" is not supported (Express or Fastify); set the "adapter" option',
    );
    const app = await start('fastify');
    try {
      await app.getHttpAdapter().getInstance().ready();
      const sid = '00000000-0000-4000-8000-0000000000aa';
      const client = new Redis(server.url);
      await writeSession(
        client,
        PROTOCOL_DEFAULTS.keyPrefix,
        sid,
        { username: 'u' },
        {
          signature: signature(sid, 'house-secret', PROTOCOL_DEFAULTS.salt),
          ttl: 60,
        },
      );
      client.disconnect();
      const cookie = `${PROTOCOL_DEFAULTS.cookieName}=${cookieValue(sid, 'house-secret', PROTOCOL_DEFAULTS.salt)}`;
      await request(app.getHttpServer()).get('/me').set('Cookie', cookie).expect(200);
      await request(app.getHttpServer()).get('/me').expect(401);
    } finally {
      await app.close();
    }
  });

  it('@InjectSharedSessionRedis() injects the client the module uses; the one it created is closed at shutdown', async () => {
    @Injectable()
    class Consumer {
      constructor(@InjectSharedSessionRedis() readonly redis: Redis) {}
    }
    const moduleRef = await Test.createTestingModule({
      imports: [SharedSessionModule.forRoot({ secret: 's', redis: server.url })],
      providers: [Consumer],
    }).compile();
    const app = moduleRef.createNestApplication({ logger: false });
    await app.init();
    const { redis } = app.get(Consumer);
    expect(redis).toBe(app.get(SHARED_SESSION_REDIS));
    expect(await redis.ping()).toBe('PONG');
    await app.close();
    await waitFor('the created client to close', async () => redis.status === 'end');
  });

  it('is global by default (other modules inject its service without importing it), and local with isGlobal: false', async () => {
    @Injectable()
    class Consumer {
      constructor(readonly sessions: SharedSessionService) {}
    }
    @Module({ providers: [Consumer] })
    class FeatureModule {}
    // A client of the test's own, closed by the test: a compile that fails closes nothing.
    const client = new Redis(server.url, { lazyConnect: true });
    const compile = (isGlobal?: boolean) =>
      Test.createTestingModule({
        imports: [
          SharedSessionModule.forRoot({ secret: 's', redis: client, ...(isGlobal === undefined ? {} : { isGlobal }) }),
          FeatureModule,
        ],
      }).compile();
    const global = await compile();
    expect(global.get(Consumer).sessions).toBeInstanceOf(SharedSessionService);
    await global.close();
    await expect(compile(false)).rejects.toThrow(/SharedSessionService/);
    client.disconnect();
  });

  it('fails at start-up with a message that names a bad option', async () => {
    const compile = (options: Record<string, unknown>) =>
      Test.createTestingModule({
        imports: [SharedSessionModule.forRootAsync({ useFactory: () => options as never })],
      }).compile();
    await expect(compile({ redis: server.url })).rejects.toThrow(/option "secret"/);
    await expect(compile({ secret: 's', ttlSeconds: 0, redis: server.url })).rejects.toThrow(/option "ttlSeconds"/);
    await expect(compile({ secret: 's', idleTimeoutSeconds: -1, redis: server.url })).rejects.toThrow(/option "idleTimeoutSeconds"/);
    await expect(compile({ secret: 's', idleTimeoutSeconds: 600, absoluteTimeoutSeconds: 60, redis: server.url })).rejects.toThrow(
      /option "absoluteTimeoutSeconds" must be at least idleTimeoutSeconds/,
    );
    await expect(compile({ secret: 's', keyPrefix: 'has space', redis: server.url })).rejects.toThrow(/option "keyPrefix"/);
    await expect(compile({ secret: 's', adapter: 'koa', redis: server.url })).rejects.toThrow(
      /option "adapter" must be 'express' or 'fastify'/,
    );
  });

  /** Starts and stops an app with the module; what it warned about on the way. */
  const warningsAtStartUp = async (redisUrl: string, secret = 's', secretFallbacks: string[] = []) => {
    const warn = jest.spyOn(Logger.prototype, 'warn').mockImplementation(() => undefined);
    const moduleRef = await Test.createTestingModule({
      imports: [SharedSessionModule.forRoot({ secret, secretFallbacks, redis: redisUrl })],
    }).compile();
    const app = moduleRef.createNestApplication({ logger: false });
    await app.init();
    const said = warn.mock.calls.map(([message]) => String(message));
    warn.mockRestore();
    await app.close();
    return said;
  };

  it('warns at start-up about each secret shorter than 32 bytes, naming the option, never the secret, and starts all the same', async () => {
    const short = 'flask-secret-key-2017';
    const long = 'a-secret-of-thirty-two-bytes-ok!';
    const said = await warningsAtStartUp(server.url, short, [long, 'older']);
    const about = said.filter((m) => /bytes long/.test(m));
    expect(about).toEqual([
      expect.stringMatching(/^option "secret" is 21 bytes long/),
      expect.stringMatching(/^option "secretFallbacks\[1\]" is 5 bytes long/),
    ]);
    for (const secret of [short, long, 'older']) expect(said.join('\n')).not.toContain(secret);
    expect((await warningsAtStartUp(server.url, long)).filter((m) => /bytes long/.test(m))).toEqual([]);
  });

  it('warns at start-up when Redis may evict session keys one by one (PROTOCOL.md section 9), and not when it cannot', async () => {
    const start = (redisUrl: string) => warningsAtStartUp(redisUrl);
    const evicting = await RedisServer.start({ args: ['--maxmemory', '64mb', '--maxmemory-policy', 'volatile-lru'] });
    try {
      expect(await start(evicting.url)).toContainEqual(expect.stringMatching(/maxmemory-policy volatile-lru.*noeviction/));
    } finally {
      await evicting.dispose();
    }
    // The test's own server: no memory limit, nothing to say.
    expect((await start(server.url)).filter((m) => /evict/.test(m))).toEqual([]);
  });
});

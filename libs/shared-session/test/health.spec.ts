import { Controller, Get, INestApplication, Module } from '@nestjs/common';
import { HealthCheck, HealthCheckService, TerminusModule } from '@nestjs/terminus';
import { Test } from '@nestjs/testing';
import request from 'supertest';
import { RedisServer } from '../../../stack/redis-server';
import { waitFor } from '../../../stack/wait';
import { SharedSessionHealthIndicator, SharedSessionModule, SharedSessionModuleOptions, SharedSessionService } from '../src';
import { acknowledgingReader, forEachAdapter, TestAdapter } from './support';
import { startTestApp } from './test-app';

/**
 * SharedSessionHealthIndicator in a user's HealthController with
 * @nestjs/terminus, on a real redis-server that is stopped and started
 * again: /health goes 503 within 5 s of Redis stopping, 200 within 5 s of
 * its coming back; on each adapter.
 */

const SECRET = 'health-secret-of-at-least-thirty-two-bytes';
const PREFIX = 'health_prefix';

@Controller('health')
class HealthController {
  constructor(
    private readonly health: HealthCheckService,
    private readonly sharedSession: SharedSessionHealthIndicator,
  ) {}

  @Get()
  @HealthCheck()
  check() {
    return this.health.check([() => this.sharedSession.isHealthy('shared_session')]);
  }
}

async function healthApp(options: SharedSessionModuleOptions, adapter: TestAdapter): Promise<INestApplication> {
  @Module({ imports: [SharedSessionModule.forRoot(options), TerminusModule.forRoot({ logger: false })], controllers: [HealthController] })
  class AppModule {}
  const moduleRef = await Test.createTestingModule({ imports: [AppModule] }).compile();
  return startTestApp(moduleRef, adapter);
}

forEachAdapter((adapter) =>
  describe('SharedSessionHealthIndicator (@nestjs/terminus) on a real redis-server', () => {
    let server: RedisServer;
    const apps: INestApplication[] = [];

    beforeAll(async () => {
      server = await RedisServer.start();
    });
    afterAll(async () => {
      for (const app of apps) await app.close();
      await server.dispose();
    });

    async function start(options: Partial<SharedSessionModuleOptions> = {}) {
      const app = await healthApp({ secret: SECRET, keyPrefix: PREFIX, redis: server.url, ...options }, adapter);
      apps.push(app);
      return Object.assign(() => request(app.getHttpServer()).get('/health'), { app });
    }

    it('is up while Redis answers; down within 5 s of Redis stopping; up within 5 s of it coming back', async () => {
      const health = await start();
      const up = await health().expect(200);
      expect(up.body.details.shared_session).toEqual({ status: 'up', redis: 'up' });

      await server.stop();
      const stopped = Date.now();
      try {
        await waitFor('health down', async () => (await health()).status === 503, 5000);
        expect(Date.now() - stopped).toBeLessThan(5000);
        const down = await health().expect(503);
        expect(down.body.details.shared_session).toEqual({ status: 'down', redis: 'down' });
      } finally {
        await server.resume();
      }
      const resumed = Date.now();
      await waitFor('health up', async () => (await health()).status === 200, 5000);
      expect(Date.now() - resumed).toBeLessThan(5000);
    });

    it('with revocation.wait, also reports the acknowledgement subscriber, down with Redis and up again after', async () => {
      const health = await start({ revocation: { wait: true } });
      const up = await health().expect(200);
      expect(up.body.details.shared_session).toEqual({ status: 'up', redis: 'up', acknowledgements: 'up' });

      await server.stop();
      try {
        await waitFor('health down', async () => (await health()).status === 503, 5000);
        const down = await health().expect(503);
        expect(down.body.details.shared_session).toMatchObject({ status: 'down', acknowledgements: 'down' });
      } finally {
        await server.resume();
      }
      await waitFor('health up', async () => (await health()).status === 200, 5000);
      const again = await health().expect(200);
      expect(again.body.details.shared_session.acknowledgements).toBe('up');
      // The subscriber subscribed again by itself: a barrier reaches a reader, and its acknowledgement comes back.
      const reader = await acknowledgingReader(server.url, PREFIX, 0);
      try {
        const result = await health.app.get(SharedSessionService).revokeUser('nobody', { wait: true });
        expect(result.confirmation).toEqual({ acknowledged: 1, expected: 1, timedOut: false });
      } finally {
        reader.close();
      }
    });
  }),
);

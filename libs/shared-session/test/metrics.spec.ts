import { Controller, Get, INestApplication, Injectable, Module, UseGuards } from '@nestjs/common';
import { Reflector } from '@nestjs/core';
import { Test } from '@nestjs/testing';
import { Gauge, Registry } from 'prom-client';
import request from 'supertest';
import { PROTOCOL_DEFAULTS } from '../../../protocol/testkit';
import { waitFor } from '../../../stack/wait';
import type { SharedSessionModuleOptions } from '../src';
import { GroupGuard, SharedSessionModule, SharedSessionService } from '../src';
import { acknowledgingReader, login as loginAs, useRedisServer } from './support';
import { createTestApp } from './test-app';

/**
 * The `metrics` option on a real redis-server: known traffic through a Nest
 * app, and the exact values in the prom-client registry afterwards
 * (issue 22's vocabulary). Each test has its own registry.
 */

const SECRET = 'metrics-secret-of-at-least-thirty-two-bytes';
const PREFIX = 'metrics_prefix';
const NAME = PROTOCOL_DEFAULTS.cookieName;

/** The sum of a metric's series that have these labels; a histogram's by `<name>_count`, `_bucket` or `_sum`. */
async function value(registry: Registry, name: string, labels: Record<string, string> = {}): Promise<number> {
  const metric = registry.getSingleMetric(name) ?? registry.getSingleMetric(name.replace(/_(count|bucket|sum)$/, ''));
  if (!metric) throw new Error(`${name} is not registered`);
  const { values } = await metric.get();
  return values
    .filter((v) => ((v as { metricName?: string }).metricName ?? name) === name)
    .filter((v) => Object.entries(labels).every(([k, want]) => String((v.labels as Record<string, unknown>)[k]) === want))
    .reduce((sum, v) => sum + v.value, 0);
}

describe('metrics (prom-client) on a real redis-server', () => {
  const redis = useRedisServer();

  async function start(options: Partial<SharedSessionModuleOptions> = {}) {
    const registry = new Registry();
    const app = await createTestApp({ secret: SECRET, keyPrefix: PREFIX, redis: redis.server.url, metrics: { registry }, ...options });
    redis.apps.push(app);
    return { app, registry, http: () => request(app.getHttpServer()) };
  }

  const login = async (app: INestApplication, groups = ['staff']) => (await loginAs(app, { username: 'joe', groups })).cookie;

  it('counts every decision by result and reason, logins, logouts and cross-site refusals exactly', async () => {
    const { app, registry, http } = await start();
    const cookie = await login(app);
    for (let i = 0; i < 3; i++) await http().get('/me').set('Cookie', cookie).expect(200);
    await http().get('/admin').set('Cookie', cookie).expect(403);
    await http().get('/me').expect(401);
    await http().post('/count').set('Origin', 'https://evil.example').set('Sec-Fetch-Site', 'cross-site').expect(403);
    await http().post('/logout').set('Cookie', cookie).expect(204);
    await http().get('/me').set('Cookie', cookie).expect(401);

    expect(await value(registry, 'shared_session_decisions_total', { result: 'allowed', reason: 'none' })).toBe(3);
    expect(await value(registry, 'shared_session_decisions_total', { result: 'refused', reason: 'not_member' })).toBe(1);
    expect(await value(registry, 'shared_session_decisions_total', { result: 'refused', reason: 'no_session' })).toBe(1);
    expect(await value(registry, 'shared_session_decisions_total', { result: 'refused', reason: 'session_ended' })).toBe(1);
    expect(await value(registry, 'shared_session_decisions_total', { result: 'unavailable' })).toBe(0);
    expect(await value(registry, 'shared_session_logins_total')).toBe(1);
    expect(await value(registry, 'shared_session_logouts_total')).toBe(1);
    expect(await value(registry, 'shared_session_cross_site_refusals_total')).toBe(1);
    // Every request that carried the cookie read its session: 3 + 1 (admin) + 1 (logout) + 1 (after logout).
    expect(await value(registry, 'shared_session_store_operations_total', { op: 'get', result: 'ok' })).toBe(6);
    expect(await value(registry, 'shared_session_redis_seconds_count', { op: 'get' })).toBe(6);
    expect(await value(registry, 'shared_session_store_operations_total', { result: 'error' })).toBe(0);
    expect(await value(registry, 'shared_session_metrics_errors_total')).toBe(0);
    // Label values from the fixed lists only: nothing of the request's.
    const text = await registry.metrics();
    for (const personal of ['joe', 'staff', cookie.slice(NAME.length + 1, NAME.length + 9)]) expect(text).not.toContain(personal);
  });

  it('counts two different session cookies as two_sessions', async () => {
    const { app, registry, http } = await start();
    const first = await login(app);
    const second = await login(app);
    await http().get('/me').set('Cookie', `${first}; ${second}`).expect(401);
    expect(await value(registry, 'shared_session_decisions_total', { result: 'refused', reason: 'two_sessions' })).toBe(1);
  });

  it('counts the 503 of a session that Redis could not read, and the failed Redis operations', async () => {
    const { app, registry, http } = await start();
    const cookie = await login(app);
    await redis.server.stop();
    try {
      await waitFor('the client sees Redis gone', async () => (await http().get('/me').set('Cookie', cookie)).status === 503);
      const unavailable = await value(registry, 'shared_session_decisions_total', { result: 'unavailable', reason: 'unavailable' });
      expect(unavailable).toBeGreaterThanOrEqual(1);
      await http().get('/me').set('Cookie', cookie).expect(503);
      expect(await value(registry, 'shared_session_decisions_total', { result: 'unavailable', reason: 'unavailable' })).toBe(
        unavailable + 1,
      );
      await expect(app.get(SharedSessionService).revokeUser('joe')).rejects.toMatchObject({ status: 503 });
      expect(await value(registry, 'shared_session_control_operations_total', { op: 'revokeUser', result: 'error' })).toBe(1);
      expect(await value(registry, 'shared_session_redis_errors_total', { op: 'control' })).toBe(1);
    } finally {
      await redis.server.resume();
    }
    // The restarted server has no data: the session is gone, and no longer unavailable.
    await waitFor('Redis back', async () => (await http().get('/me').set('Cookie', cookie)).status === 401);
  });

  it('times each control operation by name', async () => {
    const { app, registry } = await start();
    await login(app);
    const service = app.get(SharedSessionService);
    await service.listSessions('joe');
    await service.revokeUser('joe');
    await service.invalidateGroupCache('staff');
    await expect(service.revokeUser('')).rejects.toThrow(TypeError);
    expect(await value(registry, 'shared_session_control_operations_total', { op: 'listSessions', result: 'ok' })).toBe(1);
    expect(await value(registry, 'shared_session_control_operations_total', { op: 'revokeUser', result: 'ok' })).toBe(1);
    expect(await value(registry, 'shared_session_control_operations_total', { op: 'revokeUser', result: 'error' })).toBe(1);
    expect(await value(registry, 'shared_session_control_operations_total', { op: 'invalidateGroupCache', result: 'ok' })).toBe(1);
    expect(await value(registry, 'shared_session_control_seconds_count', { op: 'revokeUser' })).toBe(2);
    // A bad argument is the caller's mistake, not a Redis error.
    expect(await value(registry, 'shared_session_redis_errors_total')).toBe(0);
  });

  it('counts acknowledgements expected, received and timed out; one revocation lag per acknowledgement received', async () => {
    const { app, registry } = await start({ revocation: { timeoutMs: 300 } });
    const readers = [
      await acknowledgingReader(redis.server.url, PREFIX, 0),
      await acknowledgingReader(redis.server.url, PREFIX, 20),
      await acknowledgingReader(redis.server.url, PREFIX, null),
    ];
    try {
      await login(app);
      const result = await app.get(SharedSessionService).revokeUser('joe', { wait: true });
      expect(result.confirmation).toEqual({ acknowledged: 2, expected: 3, timedOut: true });
      readers.pop()!.close();
      await waitFor('two readers left', async () => (await redis.admin.pubsub('NUMSUB', `${PREFIX}:invalidate`))[1] === 2);
      const second = await app.get(SharedSessionService).revokeUser('joe', { wait: true });
      expect(second.confirmation).toEqual({ acknowledged: 2, expected: 2, timedOut: false });
    } finally {
      for (const reader of readers) reader.close();
    }
    expect(await value(registry, 'shared_session_acknowledgements_total', { outcome: 'expected' })).toBe(5);
    expect(await value(registry, 'shared_session_acknowledgements_total', { outcome: 'received' })).toBe(4);
    expect(await value(registry, 'shared_session_acknowledgements_total', { outcome: 'timed_out' })).toBe(1);
    expect(await value(registry, 'shared_session_revocation_lag_seconds_count')).toBe(4);
    // The 20 ms reader's lag is at least its delay.
    expect(await value(registry, 'shared_session_revocation_lag_seconds_bucket', { le: '0.01' })).toBeLessThanOrEqual(2);
  });

  it('publishes a barrier every revocation.barrierIntervalMs, and measures its lag', async () => {
    const { registry } = await start({ revocation: { barrierIntervalMs: 100 } });
    const reader = await acknowledgingReader(redis.server.url, PREFIX, 0);
    try {
      await waitFor(
        'three barriers acknowledged',
        async () => (await value(registry, 'shared_session_acknowledgements_total', { outcome: 'received' })) >= 3,
      );
    } finally {
      reader.close();
    }
    expect(reader.heard.length).toBeGreaterThanOrEqual(3);
    expect(reader.heard.every((notice) => /^!ack [A-Za-z0-9_-]{1,64}$/.test(notice))).toBe(true);
    const received = await value(registry, 'shared_session_acknowledgements_total', { outcome: 'received' });
    expect(await value(registry, 'shared_session_revocation_lag_seconds_count')).toBe(received);
  });

  it('metrics off (the default): prom-client is never loaded; on without prom-client: a start-up error naming the option', async () => {
    // A jest.doMock outlives isolateModules: undone below for the other tests.
    await jest
      .isolateModulesAsync(async () => {
        const loads: string[] = [];
        jest.doMock('prom-client', () => {
          loads.push('prom-client');
          throw new Error("Cannot find module 'prom-client'");
        });
        const isolated = jest.requireActual<typeof import('./test-app')>('./test-app');
        const off = await isolated.createTestApp({ secret: SECRET, keyPrefix: PREFIX, redis: redis.server.url });
        redis.apps.push(off);
        const cookie = await login(off, ['staff']);
        await request(off.getHttpServer()).get('/me').set('Cookie', cookie).expect(200);
        await request(off.getHttpServer()).get('/admin').set('Cookie', cookie).expect(403);
        expect(loads).toEqual([]);
        await expect(isolated.createTestApp({ secret: SECRET, keyPrefix: PREFIX, redis: redis.server.url, metrics: true })).rejects.toThrow(
          /option "metrics" is on, but prom-client cannot be loaded .*npm install prom-client/,
        );
        expect(loads).toEqual(['prom-client']);
      })
      .finally(() => jest.dontMock('prom-client'));
  });

  it('a GroupGuard subclass with its own constructor counts its decisions too', async () => {
    @Injectable()
    class TenantGuard extends GroupGuard {
      constructor(reflector: Reflector) {
        super(reflector);
      }
    }
    @Controller()
    class TenantController {
      @Get('tenant')
      @UseGuards(TenantGuard)
      tenant() {
        return { ok: true };
      }
    }
    const registry = new Registry();
    @Module({
      imports: [SharedSessionModule.forRoot({ secret: SECRET, keyPrefix: PREFIX, redis: redis.server.url, metrics: { registry } })],
      controllers: [TenantController],
    })
    class AppModule {}
    const app = (await Test.createTestingModule({ imports: [AppModule] }).compile()).createNestApplication({ logger: false });
    await app.init();
    redis.apps.push(app);
    await request(app.getHttpServer()).get('/tenant').expect(401);
    expect(await value(registry, 'shared_session_decisions_total', { result: 'refused', reason: 'no_session' })).toBe(1);
  });

  it('a metrics failure fails no request: counted in shared_session_metrics_errors_total', async () => {
    const registry = new Registry();
    // Another metric of that name, of another kind: the module's counter cannot count there.
    registry.registerMetric(new Gauge({ name: 'shared_session_logins_total', help: 'not ours', registers: [] }));
    const broken = registry.getSingleMetric('shared_session_logins_total') as unknown as { inc: () => void };
    broken.inc = () => {
      throw new Error('broken metric');
    };
    const app = await createTestApp({ secret: SECRET, keyPrefix: PREFIX, redis: redis.server.url, metrics: { registry } });
    redis.apps.push(app);
    const before = await value(registry, 'shared_session_metrics_errors_total');
    await login(app);
    await login(app);
    expect(await value(registry, 'shared_session_metrics_errors_total')).toBe(before + 2);
  });
});

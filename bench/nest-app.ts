// Scenario (f) of the Nest-side comparison: a minimal app built from the
// package README's example (the built library, `forRootAsync`, a route with
// `@UseGuards(GroupGuard)` and `@Groups({ param: 'tenant' })`), with the same
// route as the rival (bench/plain-app.ts, scenario g). The demo's own route
// is the extra row (f_demo). With BENCH_ADAPTER=fastify the same app runs on
// @nestjs/platform-fastify (scenario ff), against the Fastify user's own
// choice (bench/fastify-plain-app.ts, scenario fg).
// BENCH_METRICS=1 turns the module's metrics on (prom-client's default registry,
// served at /app/metrics), for the cost of metrics (bench/nest-cpu.ts).
import 'reflect-metadata';
import { Controller, Get, Header, HttpCode, Module, NotFoundException, Param, Post, Req, UseGuards } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { FastifyAdapter } from '@nestjs/platform-fastify';
import { randomUUID } from 'node:crypto';
import type { Request } from 'express';
import { GroupGuard, Groups, SharedSessionModule, SharedSessionService } from 'nest-resty-shared-session';
import { register } from 'prom-client';

const METRICS = process.env.BENCH_METRICS === '1';

@Controller('app')
class TenantController {
  constructor(private readonly sessions: SharedSessionService) {}

  @Post('login')
  @HttpCode(204)
  async login(@Req() req: Request): Promise<void> {
    await this.sessions.login(req, { username: 'joe@example.com', groups: ['one', 'three'] });
  }

  @Get('healthz')
  healthz(): string {
    return 'ok';
  }

  @Get('metrics')
  @Header('Content-Type', register.contentType)
  metrics(): Promise<string> {
    if (!METRICS) throw new NotFoundException();
    return register.metrics();
  }

  @Get('api/v1/group/:tenant/cacheable/:resourceId')
  @UseGuards(GroupGuard)
  @Groups({ param: 'tenant' })
  resource(@Param('tenant') tenant: string, @Param('resourceId') resourceId: string) {
    return { group_id: tenant, resource_id: resourceId, response_id: randomUUID(), origin_timestamp: Date.now() };
  }
}

@Module({
  imports: [
    SharedSessionModule.forRootAsync({
      useFactory: () => ({ secret: process.env.SESSION_SECRET!, redis: process.env.REDIS_URL, metrics: METRICS }),
    }),
  ],
  controllers: [TenantController],
})
class TenantModule {}

async function main(): Promise<void> {
  const options = { logger: ['error' as const] };
  const app =
    process.env.BENCH_ADAPTER === 'fastify'
      ? await NestFactory.create(TenantModule, new FastifyAdapter(), options)
      : await NestFactory.create(TenantModule, options);
  // Stopped by a signal (bench/profile.sh): Nest closes the module, and `node --cpu-prof` writes its profile.
  app.enableShutdownHooks();
  await app.listen(Number(process.env.APP_PORT), '127.0.0.1');
}

void main();

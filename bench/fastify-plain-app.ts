// The Fastify rival of the Nest-side comparison (scenario fg): what a Nest
// user on @nestjs/platform-fastify would pick instead of this module:
// @fastify/session (with @fastify/cookie) and a Redis store on ioredis
// (connect-redis 7, as @fastify/session's README shows), and a hand-written
// guard doing the same group check. The same route as scenario (ff).
import 'reflect-metadata';
import fastifyCookie from '@fastify/cookie';
import fastifySession from '@fastify/session';
import {
  CanActivate,
  Controller,
  ExecutionContext,
  ForbiddenException,
  Get,
  HttpCode,
  Injectable,
  Module,
  Param,
  Post,
  Req,
  UnauthorizedException,
  UseGuards,
} from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { FastifyAdapter, NestFastifyApplication } from '@nestjs/platform-fastify';
import RedisStore from 'connect-redis';
import type { FastifyRequest } from 'fastify';
import Redis from 'ioredis';
import { randomUUID } from 'node:crypto';

/** @fastify/session's session, as far as this app uses it. */
type BenchSession = { get(key: string): unknown; set(key: string, value: unknown): void };
const sessionOf = (req: FastifyRequest) => (req as unknown as { session: BenchSession }).session;

/** 401 without a logged-in session, 403 unless the session is in the route's group. */
@Injectable()
class GroupParamGuard implements CanActivate {
  canActivate(context: ExecutionContext): boolean {
    const req = context.switchToHttp().getRequest<FastifyRequest<{ Params: { groupId: string } }>>();
    const s = sessionOf(req);
    if (!s?.get('username')) throw new UnauthorizedException();
    const groups = s.get('groups') as string[] | undefined;
    if (!groups?.includes(String(req.params.groupId))) throw new ForbiddenException();
    return true;
  }
}

@Controller('app')
class PlainController {
  @Post('login')
  @HttpCode(204)
  login(@Req() req: FastifyRequest): void {
    const s = sessionOf(req);
    s.set('username', 'joe@example.com');
    s.set('groups', ['one', 'three']);
  }

  @Get('healthz')
  healthz(): string {
    return 'ok';
  }

  @Get('api/v1/group/:groupId/cacheable/:resourceId')
  @UseGuards(GroupParamGuard)
  resource(@Param('groupId') groupId: string, @Param('resourceId') resourceId: string) {
    return { group_id: groupId, resource_id: resourceId, response_id: randomUUID(), origin_timestamp: Date.now() };
  }
}

@Module({ controllers: [PlainController] })
class PlainModule {}

async function main(): Promise<void> {
  const app = await NestFactory.create<NestFastifyApplication>(PlainModule, new FastifyAdapter(), { logger: ['error'] });
  app.enableShutdownHooks();
  const client = new Redis(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379');
  const store = new RedisStore({ client, prefix: 'fplain:' });
  await app.register(fastifyCookie as never);
  await app.register(
    fastifySession as never,
    {
      secret: 'fastify-plain-bench-secret-at-least-32-chars',
      store,
      saveUninitialized: false,
      cookie: { secure: false },
    } as never,
  );
  await app.listen(Number(process.env.APP_PORT), '127.0.0.1');
}

void main();

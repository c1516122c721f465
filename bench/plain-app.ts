// The rival of the Nest-side comparison (scenario g): what a Nest user would
// pick instead of this module: express-session with connect-redis 7 (on
// ioredis) and a hand-written guard doing the same group check. The same
// route as the demo's cacheable group resource. BENCH_FLOOR=1: the same app
// without a session or a guard, what every Nest app on Express pays for the
// route (bench/nest-cpu.ts's floor).
import 'reflect-metadata';
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
import { randomUUID } from 'node:crypto';
import type { Request } from 'express';
import session from 'express-session';
import RedisStore from 'connect-redis';
import Redis from 'ioredis';

const FLOOR = process.env.BENCH_FLOOR === '1';

type BenchSession = { username?: string; groups?: string[] };

/** 401 without a logged-in session, 403 unless the session is in the route's group. */
@Injectable()
class GroupParamGuard implements CanActivate {
  canActivate(context: ExecutionContext): boolean {
    if (FLOOR) return true;
    const req = context.switchToHttp().getRequest<Request>();
    const s = req.session as unknown as BenchSession;
    if (!s?.username) throw new UnauthorizedException();
    if (!s.groups?.includes(String(req.params.groupId))) throw new ForbiddenException();
    return true;
  }
}

@Controller('app')
class PlainController {
  @Post('login')
  @HttpCode(204)
  login(@Req() req: Request): void {
    Object.assign(req.session as unknown as BenchSession, { username: 'joe@example.com', groups: ['one', 'three'] });
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
  const app = await NestFactory.create(PlainModule, { logger: ['error'] });
  // Stopped by a signal (PROFILE_APP=plain bash bench/profile.sh): `node --cpu-prof` writes its profile.
  app.enableShutdownHooks();
  if (!FLOOR) {
    const client = new Redis(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379');
    const store = new RedisStore({ client, prefix: 'plain:' });
    app.use(session({ secret: 'plain-bench-secret', store, resave: false, saveUninitialized: false }));
  }
  await app.listen(Number(process.env.APP_PORT), '127.0.0.1');
}

void main();

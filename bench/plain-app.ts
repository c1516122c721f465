// The baseline of the Nest-side comparison (scenario g): the same route as the
// demo's cacheable group resource, with stock express-session, a plain
// one-key ioredis store, and no guard. Not a pattern to copy: it checks nothing.
import 'reflect-metadata';
import { Controller, Get, HttpCode, Module, Param, Post, Req } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { randomUUID } from 'node:crypto';
import type { Request } from 'express';
import session, { SessionData, Store } from 'express-session';
import Redis from 'ioredis';

class OneKeyRedisStore extends Store {
  constructor(private readonly client: Redis) {
    super();
  }
  get(sid: string, cb: (err: unknown, s?: SessionData | null) => void): void {
    this.client.get(`plain:${sid}`).then((v) => cb(null, v ? JSON.parse(v) : null), cb);
  }
  set(sid: string, s: SessionData, cb?: (err?: unknown) => void): void {
    this.client.set(`plain:${sid}`, JSON.stringify(s), 'EX', 3600).then(() => cb?.(), cb);
  }
  destroy(sid: string, cb?: (err?: unknown) => void): void {
    this.client.del(`plain:${sid}`).then(() => cb?.(), cb);
  }
}

@Controller('app')
class PlainController {
  @Post('login')
  @HttpCode(204)
  login(@Req() req: Request): void {
    (req.session as unknown as { username: string }).username = 'bench@example.com';
  }

  @Get('api/v1/group/:groupId/cacheable/:resourceId')
  resource(@Param('groupId') groupId: string, @Param('resourceId') resourceId: string) {
    return { group_id: groupId, resource_id: resourceId, response_id: randomUUID(), origin_timestamp: Date.now() };
  }
}

@Module({ controllers: [PlainController] })
class PlainModule {}

async function main(): Promise<void> {
  const app = await NestFactory.create(PlainModule, { logger: ['error'] });
  const client = new Redis(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379');
  app.use(session({ secret: 'plain-bench', store: new OneKeyRedisStore(client), resave: false, saveUninitialized: false }));
  await app.listen(Number(process.env.APP_PORT), '127.0.0.1');
}

void main();

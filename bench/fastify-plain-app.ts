// The Fastify rival of the Nest-side comparison (scenario fg): what a Nest
// user on @nestjs/platform-fastify would pick instead of this module:
// @fastify/session (with @fastify/cookie) and a Redis store on ioredis
// (connect-redis 7, as @fastify/session's README shows), and a hand-written
// guard doing the same group check. The same route as scenario (ff).
import 'reflect-metadata';
import fastifyCookie from '@fastify/cookie';
import fastifySession from '@fastify/session';
import { NestFactory } from '@nestjs/core';
import { FastifyAdapter, NestFastifyApplication } from '@nestjs/platform-fastify';
import RedisStore from 'connect-redis';
import Redis from 'ioredis';
import { plainModule } from './plain-module';

/** @fastify/session's session, as far as this app uses it. */
type BenchSession = { get(key: string): unknown; set(key: string, value: unknown): void };
const sessionOf = (req: unknown) => (req as { session: BenchSession }).session;

async function main(): Promise<void> {
  const PlainModule = plainModule({
    get: (req, key) => sessionOf(req)?.get(key),
    set: (req, key, value) => sessionOf(req).set(key, value),
  });
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

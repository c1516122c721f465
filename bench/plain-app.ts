// The rival of the Nest-side comparison (scenario g): what a Nest user would
// pick instead of this module: express-session with connect-redis 7 (on
// ioredis) and a hand-written guard doing the same group check. The same
// route as the demo's cacheable group resource. BENCH_FLOOR=1: the same app
// without a session (the guard's check on constant values), what every Nest
// app on Express pays for the route (bench/nest-cpu.ts's floor).
import 'reflect-metadata';
import { NestFactory } from '@nestjs/core';
import session from 'express-session';
import RedisStore from 'connect-redis';
import Redis from 'ioredis';
import { plainModule } from './plain-module';

/** express-session's session, as far as this app uses it. */
type BenchSession = Record<'username' | 'groups', unknown>;
const sessionOf = (req: unknown) => (req as { session?: BenchSession }).session;

const FLOOR = process.env.BENCH_FLOOR === '1';
const FLOOR_SESSION: BenchSession = { username: 'joe@example.com', groups: ['one', 'three'] };

async function main(): Promise<void> {
  const PlainModule = plainModule(
    FLOOR
      ? { get: (_req, key) => FLOOR_SESSION[key], set: () => undefined }
      : { get: (req, key) => sessionOf(req)?.[key], set: (req, key, value) => (sessionOf(req)![key] = value) },
  );
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

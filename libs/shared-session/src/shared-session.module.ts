import { Inject, Logger, MiddlewareConsumer, Module, NestModule, OnApplicationShutdown, OnModuleInit, RequestMethod } from '@nestjs/common';
import type { Redis } from 'ioredis';
import { GroupGuard } from './group.guard';
import { whenReady } from './redis-client';
import { SessionCookieSigner } from './session-cookie-signer';
import { FlaskRedisSessionStore } from './flask-redis-session.store';
import { SHARED_SESSION_CONFIG, SHARED_SESSION_REDIS } from './shared-session.constants';
import { SharedSessionMiddleware } from './shared-session.middleware';
import { ConfigurableSharedSessionModule } from './shared-session.module-definition';
import { OWNED_REDIS, sharedSessionProviders } from './shared-session.providers';
import { SharedSessionService } from './shared-session.service';

/**
 * Sessions shared with nginx and Flask. `SharedSessionModule.forRoot({ secret, redis })`
 * or `forRootAsync({ imports, useFactory, inject })`; global unless `isGlobal: false`.
 */
@Module({
  providers: [...sharedSessionProviders, SharedSessionMiddleware, SharedSessionService, GroupGuard],
  exports: [SHARED_SESSION_CONFIG, SHARED_SESSION_REDIS, SessionCookieSigner, FlaskRedisSessionStore, SharedSessionService, GroupGuard],
})
export class SharedSessionModule extends ConfigurableSharedSessionModule implements NestModule, OnModuleInit, OnApplicationShutdown {
  private readonly logger = new Logger('SharedSession');

  constructor(@Inject(SHARED_SESSION_REDIS) private readonly redis: Redis) {
    super();
  }

  configure(consumer: MiddlewareConsumer): void {
    consumer.apply(SharedSessionMiddleware).forRoutes({ path: '{*path}', method: RequestMethod.ALL });
  }

  async onModuleInit(): Promise<void> {
    if (!(await whenReady(this.redis, 3000))) {
      this.logger.error('Redis is not reachable yet: logins and guarded routes answer 503 until it is');
    }
  }

  async onApplicationShutdown(): Promise<void> {
    if (!(this.redis as Redis & { [OWNED_REDIS]?: true })[OWNED_REDIS]) return;
    await this.redis.quit().catch(() => this.redis.disconnect());
  }
}

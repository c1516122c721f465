import { MiddlewareConsumer, Module, NestModule, RequestMethod } from '@nestjs/common';
import { APP_GUARD } from '@nestjs/core';
import { CrossSiteRequestGuard } from './cross-site-request.guard';
import { GroupGuard } from './group.guard';
import { SessionCookieSigner } from './session-cookie-signer';
import { FlaskRedisSessionStore } from './flask-redis-session.store';
import { SHARED_SESSION_CONFIG, SHARED_SESSION_REDIS } from './shared-session.constants';
import { SharedSessionMiddleware } from './shared-session.middleware';
import { ConfigurableSharedSessionModule } from './shared-session.module-definition';
import { sharedSessionProviders } from './shared-session.providers';
import { SessionAvailabilityGuard } from './session-availability.guard';
import { SharedSessionService } from './shared-session.service';
import { LoginThrottle } from './login-throttle';
import { LOGIN_THROTTLE_STORAGE } from './login-throttle.storage';
import { SHARED_SESSION_EVENTS } from './shared-session.events';
import { SharedSessionHealthIndicator } from './shared-session.health';
import { RevocationBarrier } from './revocation-barrier';
import { SessionMetrics } from './shared-session.metrics';

/**
 * Sessions shared with nginx and Flask. `SharedSessionModule.forRoot({ secret, redis })`
 * or `forRootAsync({ imports, useFactory, inject })`; global unless `isGlobal: false`.
 * Its middleware and two guards apply to every route of the application: the
 * cross-site request check first, then the 503 for a session Redis could not
 * read (global guards run before a route's own, such as GroupGuard).
 */
@Module({
  providers: [
    ...sharedSessionProviders,
    SharedSessionMiddleware,
    SharedSessionService,
    LoginThrottle,
    GroupGuard,
    RevocationBarrier,
    SharedSessionHealthIndicator,
    { provide: APP_GUARD, useClass: CrossSiteRequestGuard },
    { provide: APP_GUARD, useClass: SessionAvailabilityGuard },
  ],
  exports: [
    SHARED_SESSION_CONFIG,
    SHARED_SESSION_REDIS,
    SessionCookieSigner,
    FlaskRedisSessionStore,
    SharedSessionService,
    GroupGuard,
    LoginThrottle,
    LOGIN_THROTTLE_STORAGE,
    SHARED_SESSION_EVENTS,
    SharedSessionHealthIndicator,
    // For GroupGuard, which @UseGuards() instantiates in the application's modules.
    SessionMetrics,
  ],
})
export class SharedSessionModule extends ConfigurableSharedSessionModule implements NestModule {
  configure(consumer: MiddlewareConsumer): void {
    consumer.apply(SharedSessionMiddleware).forRoutes({ path: '{*path}', method: RequestMethod.ALL });
  }
}

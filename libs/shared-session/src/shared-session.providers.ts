import { Logger, Provider } from '@nestjs/common';
import { FlaskRedisSessionStore, sessionRepository } from './flask-redis-session.store';
import { createRedisClient, RedisClientLifecycle, SharedSessionRedis } from './redis-client';
import { SessionCookieSigner } from './session-cookie-signer';
import { SessionControl } from './session-control';
import { NO_EVENT_LISTENER, SessionEvents, SHARED_SESSION_EVENTS, SharedSessionEventListener } from './shared-session.events';
import { LOGIN_THROTTLE_STORAGE, RedisLoginThrottleStorage } from './login-throttle.storage';
import { SessionRepository } from './session-repository';
import { SHARED_SESSION_CONFIG, SHARED_SESSION_REDIS } from './shared-session.constants';
import { SHARED_SESSION_OPTIONS } from './shared-session.module-definition';
import { createSessionMetrics } from './prometheus-session-metrics';
import { NO_METRICS, SessionMetrics } from './shared-session.metrics';
import { resolveSharedSessionOptions, SharedSessionConfig, SharedSessionModuleOptions, weakSecretWarnings } from './shared-session.options';

export const sharedSessionProviders: Provider[] = [
  {
    provide: SHARED_SESSION_CONFIG,
    useFactory: (options: SharedSessionModuleOptions) => {
      const config = resolveSharedSessionOptions(options);
      const logger = new Logger('SharedSession');
      for (const warning of weakSecretWarnings(config)) logger.warn(warning);
      return config;
    },
    inject: [SHARED_SESSION_OPTIONS],
  },
  {
    // Off: the metrics that count nothing, and prom-client is never loaded.
    provide: SessionMetrics,
    useFactory: (config: SharedSessionConfig) => createSessionMetrics(config.metrics, NO_METRICS),
    inject: [SHARED_SESSION_CONFIG],
  },
  {
    // After the metrics (injected for the order alone): an option that stops
    // start-up (metrics on without prom-client) leaves no client connecting.
    provide: SHARED_SESSION_REDIS,
    useFactory: (config: SharedSessionConfig) => createRedisClient(config.redis),
    inject: [SHARED_SESSION_CONFIG, SessionMetrics],
  },
  RedisClientLifecycle,
  {
    provide: SessionCookieSigner,
    useFactory: (config: SharedSessionConfig) =>
      new SessionCookieSigner({ secret: config.secret, secretFallbacks: config.secretFallbacks, salt: config.salt }),
    inject: [SHARED_SESSION_CONFIG],
  },
  {
    // The key layout, chosen once: the store and the control work on the same one.
    provide: SessionRepository,
    useFactory: (config: SharedSessionConfig, client: SharedSessionRedis) =>
      sessionRepository({
        client,
        keyPrefix: config.keyPrefix,
        keyLayout: config.keyLayout,
        userIdField: config.userIdField,
        maxSessionsPerUser: config.maxSessionsPerUser,
        logger: new Logger('SharedSession'),
      }),
    inject: [SHARED_SESSION_CONFIG, SHARED_SESSION_REDIS],
  },
  {
    provide: FlaskRedisSessionStore,
    useFactory: (
      config: SharedSessionConfig,
      client: SharedSessionRedis,
      signer: SessionCookieSigner,
      sessions: SessionRepository,
      metrics: SessionMetrics,
    ) =>
      new FlaskRedisSessionStore(
        {
          client,
          signer,
          keyPrefix: config.keyPrefix,
          keyLayout: config.keyLayout,
          idleTimeoutSeconds: config.idleTimeoutSeconds,
          touch: config.touch,
          touchAfterSeconds: config.touchAfterSeconds,
          cookie: config.cookie,
          logger: new Logger('SharedSession'),
          userIdField: config.userIdField,
          maxSessionsPerUser: config.maxSessionsPerUser,
          metrics,
        },
        sessions,
      ),
    inject: [SHARED_SESSION_CONFIG, SHARED_SESSION_REDIS, SessionCookieSigner, SessionRepository, SessionMetrics],
  },
  {
    // The events' listener: the `events.listener` option, else one that drops them.
    provide: SHARED_SESSION_EVENTS,
    useFactory: (config: SharedSessionConfig) => config.events.listener ?? NO_EVENT_LISTENER,
    inject: [SHARED_SESSION_CONFIG],
  },
  {
    provide: SessionEvents,
    useFactory: (config: SharedSessionConfig, listener: SharedSessionEventListener) =>
      new SessionEvents(config.secret, config.events, listener),
    inject: [SHARED_SESSION_CONFIG, SHARED_SESSION_EVENTS],
  },
  {
    provide: SessionControl,
    useFactory: (
      config: SharedSessionConfig,
      client: SharedSessionRedis,
      sessions: SessionRepository,
      events: SessionEvents,
      metrics: SessionMetrics,
    ) => new SessionControl({ sessions, client, ttlSeconds: config.ttlSeconds, revocation: config.revocation, events, metrics }),
    inject: [SHARED_SESSION_CONFIG, SHARED_SESSION_REDIS, SessionRepository, SessionEvents, SessionMetrics],
  },
  {
    // Login throttling's counters and bans: in Redis, on the layout's key names.
    provide: LOGIN_THROTTLE_STORAGE,
    useFactory: (client: SharedSessionRedis, sessions: SessionRepository) => new RedisLoginThrottleStorage(client, sessions),
    inject: [SHARED_SESSION_REDIS, SessionRepository],
  },
];

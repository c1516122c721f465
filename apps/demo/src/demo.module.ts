import { Module } from '@nestjs/common';
import { TerminusModule } from '@nestjs/terminus';
import { SharedSessionModule } from 'nest-resty-shared-session';
import { collectDefaultMetrics, Registry } from 'prom-client';
import { AdminController } from './admin.controller';
import { DemoController } from './demo.controller';
import { HealthController } from './health.controller';
import { Replies } from './http';
import { MetricsController } from './metrics.controller';
import { OperationsServer } from './operations-server';
import { OwnSessionsController } from './own-sessions.controller';
import { StatusPanel } from './status-panel';
import { demoConfig, DemoConfig } from './demo.config';
import { DEMO_CONFIG, DEMO_METRICS_REGISTRY } from './demo.tokens';

/** The demo's own prom-client registry (not the global one): the library's metrics and Node's process metrics. */
function metricsRegistry(): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  return registry;
}

@Module({
  providers: [
    { provide: DEMO_CONFIG, useFactory: () => demoConfig() },
    { provide: DEMO_METRICS_REGISTRY, useFactory: metricsRegistry },
  ],
  exports: [DEMO_CONFIG, DEMO_METRICS_REGISTRY],
})
export class DemoConfigModule {}

@Module({
  imports: [
    SharedSessionModule.forRootAsync({
      imports: [DemoConfigModule],
      inject: [DEMO_CONFIG, DEMO_METRICS_REGISTRY],
      useFactory: (config: DemoConfig, registry: Registry) => ({ ...config.session, metrics: { registry } }),
    }),
    DemoConfigModule,
    TerminusModule,
  ],
  controllers: [DemoController, AdminController, OwnSessionsController, MetricsController, HealthController],
  providers: [OperationsServer, StatusPanel, Replies],
})
export class DemoModule {}

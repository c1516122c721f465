import { Module } from '@nestjs/common';
import { SharedSessionModule } from 'nest-resty-shared-session';
import { AdminController } from './admin.controller';
import { DemoController } from './demo.controller';
import { OperationsServer } from './operations-server';
import { OwnSessionsController } from './own-sessions.controller';
import { StatusPanel } from './status-panel';
import { demoConfig, DemoConfig } from './demo.config';
import { DEMO_CONFIG } from './demo.tokens';

@Module({
  providers: [{ provide: DEMO_CONFIG, useFactory: () => demoConfig() }],
  exports: [DEMO_CONFIG],
})
export class DemoConfigModule {}

@Module({
  imports: [
    SharedSessionModule.forRootAsync({
      imports: [DemoConfigModule],
      inject: [DEMO_CONFIG],
      useFactory: (config: DemoConfig) => config.session,
    }),
    DemoConfigModule,
  ],
  controllers: [DemoController, AdminController, OwnSessionsController],
  providers: [OperationsServer, StatusPanel],
})
export class DemoModule {}

import { ConfigurableModuleBuilder } from '@nestjs/common';
import type { SharedSessionModuleOptions } from './shared-session.options';

export const {
  ConfigurableModuleClass: ConfigurableSharedSessionModule,
  MODULE_OPTIONS_TOKEN: SHARED_SESSION_OPTIONS,
  OPTIONS_TYPE,
  ASYNC_OPTIONS_TYPE,
} = new ConfigurableModuleBuilder<SharedSessionModuleOptions>()
  .setClassMethodName('forRoot')
  // Global by default: GroupGuard and SharedSessionService are then injectable in every module.
  .setExtras({ isGlobal: true }, (definition, extras) => ({ ...definition, global: extras.isGlobal }))
  .build();

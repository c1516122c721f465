import { CanActivate, ExecutionContext, Inject, Injectable, NotFoundException } from '@nestjs/common';
import type { DemoConfig } from './demo.config';
import type { DemoRequest } from './http';
import { DEMO_CONFIG } from './demo.tokens';

/**
 * /metrics and /health answer on the operations port only: through nginx's
 * public server (which proxies every other path to the app) or on the app's
 * public port they are a 404, as if they did not exist.
 */
@Injectable()
export class OperationsPortGuard implements CanActivate {
  constructor(@Inject(DEMO_CONFIG) private readonly config: DemoConfig) {}

  canActivate(context: ExecutionContext): boolean {
    const req = context.switchToHttp().getRequest<DemoRequest>();
    if (req.socket.localPort !== this.config.adminPort) throw new NotFoundException();
    return true;
  }
}

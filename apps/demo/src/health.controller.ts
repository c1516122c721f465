import { Controller, Get, Header, UseGuards } from '@nestjs/common';
import { HealthCheck, HealthCheckResult, HealthCheckService } from '@nestjs/terminus';
import { SharedSessionHealthIndicator } from 'nest-resty-shared-session';
import { OperationsPortGuard } from './operations-port.guard';

/**
 * GET /health on the operations port, for a load balancer or an
 * orchestrator's readiness probe: 200 while Redis answers and the
 * acknowledgement subscriber is up, else 503 (terminus's JSON either way).
 */
@Controller('health')
@UseGuards(OperationsPortGuard)
export class HealthController {
  constructor(
    private readonly health: HealthCheckService,
    private readonly sharedSession: SharedSessionHealthIndicator,
  ) {}

  @Get()
  @Header('Cache-Control', 'no-store')
  @HealthCheck()
  check(): Promise<HealthCheckResult> {
    return this.health.check([() => this.sharedSession.isHealthy('shared_session')]);
  }
}

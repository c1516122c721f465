import { Controller, Get, Header, Inject, Res, UseGuards } from '@nestjs/common';
import type { Registry } from 'prom-client';
import { DEMO_METRICS_REGISTRY } from './demo.tokens';
import { DemoResponse, Replies } from './http';
import { OperationsPortGuard } from './operations-port.guard';

/**
 * GET /metrics on the operations port: the demo's prom-client registry, in
 * which the library counts (its `metrics` option) beside Node's process
 * metrics. Prometheus scrapes it as job `app`.
 */
@Controller('metrics')
@UseGuards(OperationsPortGuard)
export class MetricsController {
  constructor(
    @Inject(DEMO_METRICS_REGISTRY) private readonly registry: Registry,
    private readonly replies: Replies,
  ) {}

  @Get()
  @Header('Cache-Control', 'no-store')
  async metrics(@Res() res: DemoResponse): Promise<void> {
    const text = await this.registry.metrics();
    this.replies.send(res, 200, this.registry.contentType, text);
  }
}

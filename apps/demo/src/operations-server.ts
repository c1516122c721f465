import { createServer, IncomingMessage, Server, ServerResponse } from 'node:http';
import { Inject, Injectable, OnApplicationBootstrap, OnApplicationShutdown } from '@nestjs/common';
import { HttpAdapterHost } from '@nestjs/core';
import type { DemoConfig } from './demo.config';
import { DEMO_CONFIG } from './demo.tokens';

/** What the operations port serves: nothing else (every other path is a 404 there). */
export const OPERATIONS_PATHS: readonly string[] = ['/metrics', '/health'];

/**
 * The app's operations port (APP_ADMIN_PORT): /metrics for Prometheus and
 * /health for a load balancer or an orchestrator, on a port of their own
 * that nginx never proxies to. The same Nest application serves it (one
 * set of providers: the metrics registry, the health indicator), but only
 * those two paths; on the public port they are a 404
 * (OperationsPortGuard).
 */
@Injectable()
export class OperationsServer implements OnApplicationBootstrap, OnApplicationShutdown {
  private server?: Server;

  constructor(
    private readonly adapterHost: HttpAdapterHost,
    @Inject(DEMO_CONFIG) private readonly config: DemoConfig,
  ) {}

  async onApplicationBootstrap(): Promise<void> {
    // The public server's request handler (Express's app, Fastify's router): the same on either platform.
    const publicServer = this.adapterHost.httpAdapter.getHttpServer() as Server;
    const app = (req: IncomingMessage, res: ServerResponse) => publicServer.emit('request', req, res);
    const server = createServer((req, res) => {
      const path = (req.url ?? '').split('?')[0];
      if (OPERATIONS_PATHS.includes(path) && (req.method === 'GET' || req.method === 'HEAD')) return void app(req, res);
      res.writeHead(404, { 'Content-Type': 'text/plain' }).end('not found\n');
    });
    // A port another process holds stops the app, naming it (EADDRINUSE), like the public port.
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.config.adminPort, this.config.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    this.server = server;
  }

  async onApplicationShutdown(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (!server) return;
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
}

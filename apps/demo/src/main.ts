import 'reflect-metadata';
import { INestApplication, Logger } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import type { NestExpressApplication } from '@nestjs/platform-express';
import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import { DemoConfig, demoConfig, DEV_SECRET, isDevMode, trustProxyValue } from './demo.config';
import { DemoModule } from './demo.module';

/** No page of the demo may be framed by another site (clickjacking): the login form and the admin page's buttons. */
const FRAMING_HEADERS: [string, string][] = [
  ['Content-Security-Policy', "frame-ancestors 'none'"],
  ['X-Frame-Options', 'DENY'],
];

/**
 * The app on the platform DEMO_ADAPTER names. Each is loaded only when
 * chosen. `req.ip` is the client's address behind nginx (login throttling,
 * the session list), never nginx's: Express's `trust proxy`, Fastify's
 * `trustProxy`, from TRUST_PROXY.
 */
async function createApp(config: DemoConfig): Promise<INestApplication> {
  if (config.adapter === 'fastify') {
    const { FastifyAdapter } = await import('@nestjs/platform-fastify');
    const adapter = new FastifyAdapter({ trustProxy: trustProxyValue(config.trustProxy) });
    adapter.getInstance().addHook('onRequest', async (_req, reply) => {
      for (const [name, value] of FRAMING_HEADERS) reply.header(name, value);
    });
    return NestFactory.create<NestFastifyApplication>(DemoModule, adapter);
  }
  const app = await NestFactory.create<NestExpressApplication>(DemoModule);
  app.disable('x-powered-by');
  app.set('trust proxy', trustProxyValue(config.trustProxy));
  app.use((_req: unknown, res: { setHeader(name: string, value: string): void }, next: () => void) => {
    for (const [name, value] of FRAMING_HEADERS) res.setHeader(name, value);
    next();
  });
  return app;
}

async function bootstrap(): Promise<void> {
  const config = demoConfig();
  const logger = new Logger('Demo');
  if (isDevMode())
    logger.warn(
      `DEMO_DEV_MODE=1: a development run${config.session.secret === DEV_SECRET ? ', signing with the published demo secret' : ''} (never in production)`,
    );
  const app = await createApp(config);
  app.enableShutdownHooks();
  // nginx keeps idle upstream connections open for 60 s (keepalive_timeout in
  // the template's upstream block). Node closes an idle one after 5 s by
  // default, which races with a request nginx sends on it: a POST (a logout)
  // cannot be retried and answers 502. The app must outlive nginx's timeout.
  const server = app.getHttpServer();
  server.keepAliveTimeout = 65_000;
  server.headersTimeout = 66_000;
  await app.listen(config.port, config.host);
  logger.log(`listening on http://${config.host}:${config.port}/app (${config.adapter})`);
}

bootstrap().catch((err: unknown) => {
  // A bad option or a refused secret names itself here; exit so a supervisor sees it.
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});

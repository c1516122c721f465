import 'reflect-metadata';
import { Logger } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import type { NestExpressApplication } from '@nestjs/platform-express';
import { demoConfig, DEV_SECRET, isDevMode } from './demo.config';
import { DemoModule } from './demo.module';

async function bootstrap(): Promise<void> {
  const config = demoConfig();
  const logger = new Logger('Demo');
  if (isDevMode())
    logger.warn(
      `DEMO_DEV_MODE=1: a development run${config.session.secret === DEV_SECRET ? ', signing with the published demo secret' : ''} (never in production)`,
    );
  const app = await NestFactory.create<NestExpressApplication>(DemoModule);
  app.disable('x-powered-by');
  // req.ip is the client's address behind nginx (login throttling, the session list), never nginx's.
  app.set('trust proxy', trustProxyValue(config.trustProxy));
  // No page of the demo may be framed by another site (clickjacking): the login form and the admin page's buttons.
  app.use((_req: unknown, res: { setHeader(name: string, value: string): void }, next: () => void) => {
    res.setHeader('Content-Security-Policy', "frame-ancestors 'none'");
    res.setHeader('X-Frame-Options', 'DENY');
    next();
  });
  app.enableShutdownHooks();
  // nginx keeps idle upstream connections open for 60 s (keepalive_timeout in
  // the template's upstream block). Node closes an idle one after 5 s by
  // default, which races with a request nginx sends on it: a POST (a logout)
  // cannot be retried and answers 502. The app must outlive nginx's timeout.
  const server = app.getHttpServer();
  server.keepAliveTimeout = 65_000;
  server.headersTimeout = 66_000;
  await app.listen(config.port, config.host);
  logger.log(`listening on http://${config.host}:${config.port}/app`);
}

/** TRUST_PROXY as Express takes it: true/false, a number of hops, or addresses and names (`loopback`, `10.0.0.0/8`...). */
function trustProxyValue(text: string): boolean | number | string {
  if (text === 'true' || text === 'false') return text === 'true';
  return /^\d+$/.test(text) ? Number(text) : text;
}

bootstrap().catch((err: unknown) => {
  // A bad option or a refused secret names itself here; exit so a supervisor sees it.
  console.error(err instanceof Error ? err.message : err);
  process.exit(1);
});

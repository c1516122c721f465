import { Inject, Injectable, MiddlewareConsumer, Optional } from '@nestjs/common';
import { HttpAdapterHost } from '@nestjs/core';
import { FlaskRedisSessionStore } from './flask-redis-session.store';
import type { HttpSeam, HttpSeamParts } from './http-seam';
import { HttpAdapterName, isHttpAdapterName } from './http-adapter-name';
import { SessionCookieSigner } from './session-cookie-signer';
import { SHARED_SESSION_CONFIG } from './shared-session.constants';
import type { SharedSessionConfig } from './shared-session.options';

/*
 * Each seam is loaded on first use, so that an application loads only its
 * own platform's packages (express-session's middleware, or nothing of
 * Express on Fastify).
 */
/* eslint-disable @typescript-eslint/no-require-imports */
const SEAMS: Record<HttpAdapterName, (parts: HttpSeamParts) => HttpSeam> = {
  express: (parts) => new (require('./express-http-seam') as typeof import('./express-http-seam')).ExpressHttpSeam(parts),
  fastify: (parts) => new (require('./fastify-http-seam') as typeof import('./fastify-http-seam')).FastifyHttpSeam(parts),
};
/* eslint-enable @typescript-eslint/no-require-imports */

/**
 * The application's HTTP seam, chosen once: the `adapter` option, else the
 * adapter the application was created with (`HttpAdapterHost`, whose
 * `getType()` says 'express' or 'fastify'). Chosen when first asked (when
 * the module installs its middleware or hooks, at `app.init()`), since a
 * testing module makes its providers before it is given an adapter.
 */
@Injectable()
export class SharedSessionHttp {
  private chosen?: HttpSeam;

  constructor(
    @Inject(SHARED_SESSION_CONFIG) private readonly config: SharedSessionConfig,
    private readonly signer: SessionCookieSigner,
    private readonly store: FlaskRedisSessionStore,
    @Optional() private readonly adapterHost?: HttpAdapterHost,
  ) {}

  /** The adapter's name: the option, else the application's; Express when there is no HTTP application at all. */
  get adapter(): HttpAdapterName {
    const name = this.config.adapter ?? this.adapterHost?.httpAdapter?.getType?.() ?? 'express';
    if (!isHttpAdapterName(name)) {
      throw new Error(`SharedSessionModule: the HTTP adapter "${name}" is not supported (Express or Fastify); set the "adapter" option`);
    }
    return name;
  }

  get seam(): HttpSeam {
    this.chosen ??= SEAMS[this.adapter]({ config: this.config, signer: this.signer, store: this.store });
    return this.chosen;
  }

  install(consumer: MiddlewareConsumer): void {
    this.seam.install(consumer, this.adapterHost!.httpAdapter);
  }
}

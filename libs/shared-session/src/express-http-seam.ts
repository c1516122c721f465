import { MiddlewareConsumer, RequestMethod } from '@nestjs/common';
import type { NextFunction, Request, Response } from 'express';
import type { HttpSeam, HttpSeamParts } from './http-seam';
import { setCookieLines } from './session-cookie-bridge';
import type { SharedSessionRequest, SharedSessionResponse } from './session-request';
import { SharedSessionMiddleware } from './shared-session.middleware';

/**
 * Express: express-session, through SharedSessionMiddleware and its cookie
 * bridge, as a Nest middleware on every route.
 */
export class ExpressHttpSeam implements HttpSeam {
  private readonly middleware: SharedSessionMiddleware;

  constructor({ config, signer, store }: HttpSeamParts) {
    this.middleware = new SharedSessionMiddleware(config, signer, store);
  }

  install(consumer: MiddlewareConsumer): void {
    const middleware = this.middleware;
    consumer
      .apply((req: Request, res: Response, next: NextFunction) => middleware.use(req, res, next))
      .forRoutes({ path: '{*path}', method: RequestMethod.ALL });
  }

  responseOf(req: SharedSessionRequest): SharedSessionResponse | undefined {
    return (req as Partial<Request>).res;
  }

  setHeader(res: SharedSessionResponse, name: string, value: string): void {
    (res as Response).setHeader(name, value);
  }

  appendSetCookie(res: SharedSessionResponse, lines: readonly string[]): void {
    const response = res as Response;
    response.setHeader('Set-Cookie', [...setCookieLines(response.getHeader('Set-Cookie')), ...lines]);
  }
}

import { HttpServer, MiddlewareConsumer, RequestMethod } from '@nestjs/common';
import type { NextFunction, Request, Response } from 'express';
import type { HttpSeam, HttpSeamParts } from './http-seam';
import { setCookieLines } from './session-cookie-writer';
import type { SharedSessionRequest, SharedSessionResponse } from './session-request';
import { ExpressSessionHooks } from './express-session-hooks';

/**
 * Express: the library's own middleware (ExpressSessionHooks), on every
 * route; `req.session` is express-session's `Session`.
 */
export class ExpressHttpSeam implements HttpSeam {
  private readonly middleware: ExpressSessionHooks;

  constructor(parts: HttpSeamParts) {
    this.middleware = new ExpressSessionHooks(parts);
  }

  install(consumer: MiddlewareConsumer, httpAdapter?: HttpServer): void {
    const middleware = this.middleware;
    // Express's `app.request` and `app.response`, the prototypes of the application's requests and responses.
    middleware.hookApplication(httpAdapter?.getInstance?.());
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

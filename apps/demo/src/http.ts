import { Injectable } from '@nestjs/common';
import { HttpAdapterHost } from '@nestjs/core';
import type { SharedSessionObject, SharedSessionRequest, SharedSessionResponse } from 'nest-resty-shared-session';

/** A request as the demo reads it, on either platform: an Express `Request` and a `FastifyRequest` both fit. */
export interface DemoRequest extends SharedSessionRequest {
  query: unknown;
  socket: { localPort?: number; remoteAddress?: string };
}

/** A response, on either platform: an Express `Response` or a `FastifyReply`. */
export type DemoResponse = SharedSessionResponse;

/**
 * The request's session, or none (Redis down: the service's `session(req)`
 * would answer 503, also to a visitor who sent no cookie).
 */
export function sessionOf(req: DemoRequest): SharedSessionObject | undefined {
  return (req.session as SharedSessionObject | null | undefined) ?? undefined;
}

/** A query parameter given once, as text; else undefined. */
export function queryText(req: DemoRequest, name: string): string | undefined {
  const value = (req.query as Record<string, unknown> | undefined)?.[name];
  return typeof value === 'string' ? value : undefined;
}

/** The Content-Type of the demo's pages (Fastify's default for a string would be text/plain). */
export const HTML = 'text/html; charset=utf-8';

/**
 * What the controllers write on a response, through Nest's HTTP adapter
 * (Express's and Fastify's responses differ: `res.redirect(303, url)`
 * against `reply.redirect(url, 303)`, `setHeader` against `header`).
 */
@Injectable()
export class Replies {
  constructor(private readonly host: HttpAdapterHost) {}

  /** A body of this type and status, on a response taken with `@Res()`. */
  send(res: DemoResponse, status: number, contentType: string, body: string): void {
    this.host.httpAdapter.setHeader(res, 'Content-Type', contentType);
    this.host.httpAdapter.reply(res, body, status);
  }

  /** A page with this status, on a response taken with `@Res()`. */
  html(res: DemoResponse, status: number, body: string): void {
    this.send(res, status, HTML, body);
  }

  /** 303 See Other: after a form's POST, the browser GETs `url`. */
  redirect(res: DemoResponse, url: string): void {
    this.host.httpAdapter.redirect(res, 303, url);
  }

  /** The status of a response taken with `@Res({ passthrough: true })`. */
  status(res: DemoResponse, status: number): void {
    this.host.httpAdapter.status(res, status);
  }

  setHeader(res: DemoResponse, name: string, value: string): void {
    this.host.httpAdapter.setHeader(res, name, value);
  }
}

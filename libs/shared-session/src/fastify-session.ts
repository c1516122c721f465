import type { SharedSessionObject } from './session-request';

/** What a session needs from its request: the store, and how to put a new session in its place. */
export interface FastifySessionContext {
  /** Reads a session (null: none). */
  load(sid: string, callback: (err?: unknown, data?: Record<string, unknown> | null) => void): void;
  /** Writes the session under its id. */
  write(session: FastifySharedSession, callback: (err?: unknown) => void): void;
  /** Deletes the session's keys. */
  end(sid: string, callback: (err?: unknown) => void): void;
  /** A session with a new id, made the request's session. */
  renew(): FastifySharedSession;
  /** A session read again from the store, made the request's session. */
  replace(sid: string, data: Record<string, unknown>): FastifySharedSession;
  /** The request's session is gone (destroyed). */
  drop(): void;
}

const CONTEXT = Symbol('resty-shared-session:context');
const SAVED = Symbol('resty-shared-session:saved');

/**
 * `req.session` on Fastify: the session's fields are its own properties (read
 * and set them as on Express), and it has the methods of express-session's
 * `Session` that applications use, with the same callbacks: `regenerate`,
 * `destroy`, `save`, `reload`, `touch`. `id` is the session id (also
 * `req.sessionID`). What is saved is its own enumerable properties, as JSON.
 * The hooks save it when the response is sent if it changed, as
 * express-session does.
 */
export class FastifySharedSession implements SharedSessionObject {
  declare readonly id: string;
  declare username?: string;
  declare groups?: string[];
  declare [CONTEXT]: FastifySessionContext;
  /** The JSON last read or written (undefined: never saved: a new id saves even unchanged). */
  declare [SAVED]: string | undefined;
  [field: string]: unknown;

  constructor(context: FastifySessionContext, id: string, data?: Record<string, unknown>, saved?: 'loaded' | 'empty') {
    Object.defineProperty(this, 'id', { value: id, enumerable: false });
    Object.defineProperty(this, CONTEXT, { value: context, enumerable: false });
    Object.defineProperty(this, SAVED, { value: undefined, enumerable: false, writable: true });
    if (data) Object.assign(this, data);
    if (saved) this[SAVED] = sessionJson(this);
  }

  /** A new session id: the old session's keys deleted, an empty session in its place (on req.session). */
  regenerate(callback: (err?: unknown) => void): this {
    this[CONTEXT].end(this.id, (err) => {
      this[CONTEXT].renew();
      callback(err);
    });
    return this;
  }

  /** Deletes the session; the request has none after it. */
  destroy(callback?: (err?: unknown) => void): this {
    this[CONTEXT].drop();
    this[CONTEXT].end(this.id, (err) => callback?.(err));
    return this;
  }

  save(callback?: (err?: unknown) => void): this {
    this[CONTEXT].write(this, (err) => {
      // After the write: it may have adopted groups changed under it (section 8).
      if (!err) this[SAVED] = sessionJson(this);
      callback?.(err);
    });
    return this;
  }

  /** Reads the session again from the store, in place of this object (on req.session). */
  reload(callback: (err?: unknown) => void): this {
    this[CONTEXT].load(this.id, (err, data) => {
      if (err) return callback(err);
      if (!data) return callback(new Error('failed to load session'));
      this[CONTEXT].replace(this.id, data);
      callback();
    });
    return this;
  }

  /** Nothing to do: the session's keys are extended when the response is sent (PROTOCOL.md section 12). For express-session's API. */
  touch(): this {
    return this;
  }

  toJSON(): Record<string, unknown> {
    return { ...this };
  }
}

/** True when the session's data (`json`: its JSON, when the caller has it) differs from what was last read or written (or it never was). */
export function unsavedChanges(session: FastifySharedSession, json = sessionJson(session)): boolean {
  return session[SAVED] !== json;
}

export function sessionJson(session: FastifySharedSession): string {
  return JSON.stringify(session);
}

import { createHmac } from 'node:crypto';
import { Logger } from '@nestjs/common';
import type { RevocationConfirmation } from './revocation-acknowledgements';

/**
 * PROTOCOL.md section 16: what the module did, as one structured event per
 * operation, for an operator (or an audit log) to follow. Session ids are
 * never in an event, only their event id (section 16.1), the same at nginx;
 * a user id only where the operator opted in.
 */

/** Injection token of the listener that receives every event (default: one that drops them). */
export const SHARED_SESSION_EVENTS = Symbol('SHARED_SESSION_EVENTS');

/** PROTOCOL.md section 16.2's event names: a fixed list. */
export type SharedSessionEventName =
  'login' | 'logout' | 'revocation' | 'group_change' | 'purge' | 'not_before' | 'migration_step' | 'wait_timeout';

import type { SharedSessionRefusalReason } from './refusal-reason';

export type { SharedSessionRefusalReason };

/** One event (PROTOCOL.md section 16.2). */
export interface SharedSessionEvent {
  event: SharedSessionEventName;
  /** The operation that caused it: `login`, `revokeUser`, `invalidateGroupCache`... */
  op: string;
  /** Milliseconds since the epoch. */
  at: number;
  /** The event id of the session concerned (never the session id). */
  session?: string;
  /** The user id, only with `events.includeUser`. */
  user?: string;
  /** Sessions changed or ended, for the control operations. */
  sessions?: number;
  /** After a wait for acknowledgements (PROTOCOL.md section 13.4). */
  acknowledged?: number;
  expected?: number;
  timedOut?: boolean;
  reason?: SharedSessionRefusalReason;
}

/** Receives every event; it must not throw (a throw is logged and ignored: an event never fails an operation). */
export interface SharedSessionEventListener {
  emit(event: SharedSessionEvent): void;
}

/** The module's `events` option. */
export interface SharedSessionEventsOptions {
  /** Log each event as one JSON line through Nest's logger (context `SharedSessionEvents`). Default false. */
  log?: boolean;
  /** Put the user id in the events of operations that know it. Default false (personal data). */
  includeUser?: boolean;
  /** Receives every event (also injectable as SHARED_SESSION_EVENTS). Default: none. */
  listener?: SharedSessionEventListener;
}

export interface SharedSessionEventsConfig {
  log: boolean;
  includeUser: boolean;
  listener: SharedSessionEventListener | null;
}

/** The listener used when none is given: events are dropped. */
export const NO_EVENT_LISTENER: SharedSessionEventListener = { emit: () => undefined };

/** Validates the `events` option; `error` builds the module's options error. */
export function resolveEventsOptions(value: unknown, error: (option: string, problem: string) => Error): SharedSessionEventsConfig {
  if (value === undefined) return { log: false, includeUser: false, listener: null };
  if (!value || typeof value !== 'object' || Array.isArray(value)) throw error('events', 'must be an object');
  const options = value as Record<string, unknown>;
  for (const key of Object.keys(options)) {
    if (!['log', 'includeUser', 'listener'].includes(key)) throw error(`events.${key}`, 'is not a known option');
  }
  const flag = (key: 'log' | 'includeUser'): boolean => {
    if (options[key] === undefined) return false;
    if (typeof options[key] !== 'boolean') throw error(`events.${key}`, 'must be true or false');
    return options[key];
  };
  const listener = options.listener;
  if (listener !== undefined && typeof (listener as { emit?: unknown } | null)?.emit !== 'function') {
    throw error('events.listener', 'must have an emit(event) method');
  }
  return { log: flag('log'), includeUser: flag('includeUser'), listener: (listener as SharedSessionEventListener | undefined) ?? null };
}

const EVENT_ID_LABEL = 'shared-session event id';

/** PROTOCOL.md section 16.1: the key of the event ids, derived from the (current) secret. */
function eventIdKey(secret: string): Buffer {
  return createHmac('sha256', secret).update(EVENT_ID_LABEL).digest();
}

function eventIdWithKey(key: Buffer, sessionId: string): string {
  return createHmac('sha256', key).update(sessionId).digest('hex').slice(0, 32);
}

/**
 * PROTOCOL.md section 16.1: the session's event id, 32 hex characters that
 * name a session in a log without giving its id; the same at nginx for the
 * same secret, so that the two doors' logs can be joined.
 */
export function sessionEventId(secret: string, sessionId: string): string {
  return eventIdWithKey(eventIdKey(secret), sessionId);
}

/**
 * PROTOCOL.md section 16.2's `migration_step`: one run of a layout
 * migration (the operator tool's `migrate-layout`), with the sessions it
 * wrote or deleted on the target.
 */
export function migrationStepEvent(op: string, sessions: number, at = Date.now()): SharedSessionEvent {
  return { event: 'migration_step', op, at, sessions };
}

/** What an operation knows when it reports itself. */
export interface EventFacts {
  sessionId?: string;
  user?: string;
  sessions?: number;
  confirmation?: RevocationConfirmation;
}

/**
 * Builds the events and hands them to the listener (and the log, when asked).
 * A wait that timed out is reported twice: in the operation's own event, and
 * as a `wait_timeout` event, so that one can alert on the name alone.
 */
export class SessionEvents {
  private readonly key: Buffer;
  private readonly logger = new Logger('SharedSessionEvents');
  private listenerFailed = false;

  constructor(
    secret: string,
    private readonly config: Pick<SharedSessionEventsConfig, 'log' | 'includeUser'>,
    private readonly listener: SharedSessionEventListener = NO_EVENT_LISTENER,
  ) {
    this.key = eventIdKey(secret);
  }

  /** Reports an operation. Never throws. */
  report(event: SharedSessionEventName, op: string, facts: EventFacts = {}): void {
    const at = Date.now();
    const common: Omit<SharedSessionEvent, 'event' | 'op' | 'at'> = {
      ...(facts.sessionId !== undefined ? { session: eventIdWithKey(this.key, facts.sessionId) } : {}),
      ...(this.config.includeUser && facts.user !== undefined ? { user: facts.user } : {}),
    };
    const wait = facts.confirmation
      ? { acknowledged: facts.confirmation.acknowledged, expected: facts.confirmation.expected, timedOut: facts.confirmation.timedOut }
      : {};
    this.send({ event, op, at, ...common, ...(facts.sessions !== undefined ? { sessions: facts.sessions } : {}), ...wait });
    if (facts.confirmation?.timedOut) this.send({ event: 'wait_timeout', op, at, ...common, ...wait });
  }

  private send(event: SharedSessionEvent): void {
    if (this.config.log) this.logger.log(JSON.stringify(event));
    try {
      this.listener.emit(event);
    } catch (err) {
      // Once: a listener that throws on every event must not flood the log either.
      if (!this.listenerFailed) this.logger.warn(`the events listener threw (${(err as Error)?.message ?? err}); its events are dropped`);
      this.listenerFailed = true;
    }
  }
}

import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { SessionEvents, sessionEventId, SharedSessionEvent } from './shared-session.events';
import { resolveSharedSessionOptions, SharedSessionOptionsError } from './shared-session.options';

interface EventIdVector {
  secret: string;
  session_id: string;
  event_id: string;
}

const vectors = (JSON.parse(readFileSync(resolve(__dirname, '../../../protocol/events.json'), 'utf8')) as { vectors: EventIdVector[] })
  .vectors;

describe('PROTOCOL.md section 16.1: the session event id (events.json)', () => {
  it.each(vectors)('$session_id under its secret', ({ secret, session_id, event_id }) => {
    expect(sessionEventId(secret, session_id)).toBe(event_id);
  });

  it('differs with the secret', () => {
    const sid = vectors[0].session_id;
    expect(sessionEventId('one secret', sid)).not.toBe(sessionEventId('another secret', sid));
  });
});

describe('SessionEvents', () => {
  it('hashes the session id, drops the user unless asked, and reports a timed-out wait twice', () => {
    const seen: SharedSessionEvent[] = [];
    const events = new SessionEvents('s', { log: false, includeUser: false }, { emit: (e) => seen.push(e) });
    events.report('revocation', 'revokeSession', {
      sessionId: 'abcdefghijklmnop',
      user: 'joe',
      sessions: 1,
      confirmation: { acknowledged: 1, expected: 2, timedOut: true },
    });
    const session = sessionEventId('s', 'abcdefghijklmnop');
    const wait = { acknowledged: 1, expected: 2, timedOut: true };
    expect(seen).toEqual([
      { event: 'revocation', op: 'revokeSession', at: expect.any(Number), session, sessions: 1, ...wait },
      { event: 'wait_timeout', op: 'revokeSession', at: expect.any(Number), session, ...wait },
    ]);
  });
});

describe('the events option', () => {
  const resolveEvents = (events: unknown) => resolveSharedSessionOptions({ secret: 's', events } as never).events;

  it('is off by default', () => {
    expect(resolveEvents(undefined)).toEqual({ log: false, includeUser: false, listener: null });
  });

  it.each([
    ['events', 'yes'],
    ['events.log', { log: 'yes' }],
    ['events.includeUser', { includeUser: 1 }],
    ['events.listener', { listener: {} }],
    ['events.other', { other: true }],
  ])('refuses a bad %s', (option, events) => {
    expect(() => resolveEvents(events)).toThrow(SharedSessionOptionsError);
    expect(() => resolveEvents(events)).toThrow(`"${option}"`);
  });
});

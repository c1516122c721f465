import type { SessionData } from 'express-session';
import Redis from 'ioredis';
import { ackChannel, invalidationChannel } from '../../../protocol/testkit';

/**
 * The helpers the library's specs share (src/*.spec.ts and test/): one copy
 * each.
 */

/** A logger that says nothing, and remembers what it was told (one per spec file: jest loads this module per file). */
export const quietLogger = { error: jest.fn(), warn: jest.fn(), log: jest.fn() };

/** A store method with a callback, as a promise. */
export function call<T>(fn: (cb: (err?: unknown, value?: T) => void) => void): Promise<T | undefined> {
  return new Promise((resolve, reject) => fn((err, value) => (err ? reject(err) : resolve(value))));
}

/** A session as express-session hands it to a store: the data, and a cookie the store does not keep. */
export function session(data: Record<string, unknown>): SessionData {
  return { cookie: { originalMaxAge: 1000, path: '/' }, ...data } as unknown as SessionData;
}

/**
 * A reader of `<prefix>:invalidate` as nginx is (PROTOCOL.md section 13.4):
 * it applies notices in order and answers each barrier `!ack <id>` with `<id>`
 * on `<prefix>:ack`, here `delayMs` after hearing it (never, with null: a
 * reader that does not acknowledge). It records what it heard and when it
 * acknowledged.
 */
export async function acknowledgingReader(url: string, prefix: string, delayMs: number | null) {
  const sub = new Redis(url);
  const pub = new Redis(url);
  const heard: string[] = [];
  const acks: number[] = [];
  sub.on('message', (_channel: string, notice: string) => {
    heard.push(notice);
    if (delayMs === null || !notice.startsWith('!ack ')) return;
    setTimeout(() => {
      acks.push(Date.now());
      void pub.publish(ackChannel(prefix), notice.slice('!ack '.length));
    }, delayMs);
  });
  await sub.subscribe(invalidationChannel(prefix));
  return {
    heard,
    acks,
    close() {
      sub.disconnect();
      pub.disconnect();
    },
  };
}

import type { INestApplication } from '@nestjs/common';
import type { SessionData } from 'express-session';
import Redis from 'ioredis';
import request from 'supertest';
import { ackChannel, invalidationChannel, PROTOCOL_DEFAULTS } from '../../../protocol/testkit';
import { RedisServer } from '../../../stack/redis-server';

/**
 * The helpers the library's specs share (src/*.spec.ts and test/): one copy
 * each.
 */

/** The Nest HTTP platforms the library runs on. */
export const TEST_ADAPTERS = ['express', 'fastify'] as const;
export type TestAdapter = (typeof TEST_ADAPTERS)[number];

/**
 * A spec's tests once per adapter: `forEachAdapter((adapter) => { ... })`,
 * each run in a describe named for its adapter.
 */
export function forEachAdapter(specs: (adapter: TestAdapter) => void): void {
  describe.each(TEST_ADAPTERS)('on %s', (adapter) => specs(adapter));
}

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

/** A describe block's real redis-server (set in its beforeAll), an admin client, and the Nest apps its tests started. */
export interface RedisFixture {
  server: RedisServer;
  admin: Redis;
  /** Closed after all the block's tests, before the server stops. */
  apps: INestApplication[];
}

/**
 * For the describe block it is called in: a redis-server started before all
 * its tests and emptied before each, with an admin client; after all, the
 * apps pushed to `apps` are closed, the client quits and the server stops.
 */
export function useRedisServer(): RedisFixture {
  const fixture = { apps: [] as INestApplication[] } as RedisFixture;
  beforeAll(async () => {
    fixture.server = await RedisServer.start();
    fixture.admin = new Redis(fixture.server.url);
  });
  afterAll(async () => {
    for (const app of fixture.apps) await app.close();
    fixture.admin?.disconnect();
    await fixture.server?.dispose();
  });
  beforeEach(() => fixture.admin.flushall());
  return fixture;
}

/**
 * Logs in through the test app's POST /login (204 expected): the session
 * cookie it set, as a Cookie header's `name=value`, and the session id in it.
 */
export async function login(app: INestApplication, body: { username: string; groups: string[] }): Promise<{ cookie: string; sid: string }> {
  const name = PROTOCOL_DEFAULTS.cookieName;
  const res = await request(app.getHttpServer()).post('/login').send(body).expect(204);
  const line = ([] as string[]).concat(res.headers['set-cookie'] ?? []).find((c) => c.startsWith(`${name}=`))!;
  const cookie = line.slice(0, line.indexOf(';'));
  return { cookie, sid: cookie.slice(name.length + 1, cookie.indexOf('.')) };
}

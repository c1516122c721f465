import type { SessionData } from 'express-session';

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

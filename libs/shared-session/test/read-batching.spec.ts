import Redis from 'ioredis';
import { KeyLayout, newTimedSessionId, signature, writeSession } from '../../../protocol/testkit';
import { RedisServer } from '../../../stack/redis-server';
import { sessionRepository } from '../src/flask-redis-session.store';
import { quietLogger } from './support';

/**
 * The session reads of one turn of the event loop (the requests that one poll
 * brought) leave in one write to Redis, and each still gets its own session:
 * judged by Redis's own count of the reads it made from its clients
 * (`INFO stats`, total_reads_processed), on a real redis-server.
 */
let server: RedisServer;
let client: Redis;
let info: Redis;
beforeAll(async () => {
  server = await RedisServer.start();
  client = new Redis(server.url);
  info = new Redis(server.url);
  await Promise.all([client.ping(), info.ping()]);
});
afterAll(async () => {
  client?.disconnect();
  info?.disconnect();
  await server?.dispose();
});

/** The reads Redis made from its clients while `run` ran (the INFO that closes the count is one). */
async function redisReads(run: () => Promise<unknown>): Promise<number> {
  const reads = async () => Number(/total_reads_processed:(\d+)/.exec(await info.info('stats'))?.[1]);
  const before = await reads();
  await run();
  return (await reads()) - before;
}

describe.each(['v1', 'compact'] as KeyLayout[])('session reads on the %s layout', (layout) => {
  const prefix = `batching_${layout}`;
  const sessions = () => sessionRepository({ client, keyPrefix: prefix, keyLayout: layout, logger: quietLogger });
  const ids = Array.from({ length: 20 }, () => newTimedSessionId(Date.now()));

  beforeAll(async () => {
    for (const [i, id] of ids.entries()) {
      await writeSession(client, prefix, id, { username: `user${i}` }, { layout, signature: signature(id, 's', 'salt') });
    }
  });

  it('leave in one write when they start in one turn of the event loop, each with its own session', async () => {
    const repository = sessions();
    let read: (string | null)[] = [];
    const count = await redisReads(async () => {
      read = (await Promise.all(ids.map((id) => repository.read(id)))).map(([json]) => json);
    });
    expect(read.map((json) => JSON.parse(json!).username)).toEqual(ids.map((_, i) => `user${i}`));
    expect(count).toBeLessThanOrEqual(2);
  });

  it('leave one by one when they start in turns of their own', async () => {
    const repository = sessions();
    const count = await redisReads(async () => {
      for (const id of ids) await new Promise((resolve) => setImmediate(() => resolve(repository.read(id))));
    });
    expect(count).toBeGreaterThanOrEqual(ids.length);
  });
});

/**
 * PROTOCOL.md section 13 at nginx, in real nginx workers against a real
 * redis-server: the not-before mark (refused even with a cached decision;
 * untimed ids fail closed), the group cache generation in an nginx variable,
 * no extra Redis round trip on a decision-cache hit, `!ack` barriers
 * acknowledged once per nginx, unknown notice kinds ignored. Changes are made
 * the way the protocol says (the keys and the notices), not through the
 * library.
 */
import Redis from 'ioredis';
import { ackChannel, groupGenerationKey, invalidationChannel, newTimedSessionId, notBeforeKey, writeSession } from '../../protocol/testkit';
import { NginxServer } from '../../stack/nginx-server';
import { sleep, waitFor } from '../../stack/wait';
import { RedisServer } from '../../stack/redis-server';
import {
  assertNoCrash,
  commandCalls,
  get,
  nginxConf,
  SALT,
  SECRET,
  sessionCookie,
  SID,
  signature,
  startRedisAndNginx,
  stopRedisAndNginx,
} from './support';

const PREFIX = 'rss_ctl';
const CHANNEL = invalidationChannel(PREFIX);

function confFor(redisPort: number, cache = true) {
  return nginxConf({
    dict: '1m',
    configure: `{
      secret = "${SECRET}", salt = "${SALT}", key_prefix = "${PREFIX}",
      redis = { port = ${redisPort}, connect_timeout = 100, read_timeout = 300 },
      ${cache ? 'decision_cache = { dict = "decisions", ttl = 10 },' : ''}
    }`,
    subscriber: true,
    locations: `
    location ~ ^/groups/(?<group_id>[^/]+)/ {
      set $shared_session_generation "";
      access_by_lua_block { require("resty.shared_session").access(ngx.var.group_id, "shared_session_generation") }
      content_by_lua_block { ngx.say("generation ", ngx.var.shared_session_generation) }
    }
    location ~ ^/undeclared/(?<group_id>[^/]+)/ {
      access_by_lua_block { require("resty.shared_session").access(ngx.var.group_id, "not_declared_here") }
      content_by_lua_block { ngx.say("allowed") }
    }
    location = /epoch {
      content_by_lua_block { ngx.say(ngx.shared.decisions:get("e") and "up" or "down") }
    }
`,
  });
}

describe('section 13 at nginx: the not-before mark, group generations, acknowledgements', () => {
  let redis: RedisServer;
  let client: Redis;
  let nginx: NginxServer;

  beforeAll(async () => {
    ({ redis, client, nginx } = await startRedisAndNginx((port) => ({ conf: confFor(port), workers: 2, errorLogLevel: 'info' })));
    await waitFor('subscriber up', async () => (await get(nginx, '/epoch')).body.trim() === 'up');
  }, 30_000);
  afterAll(() => stopRedisAndNginx({ redis, client, nginx }, (log) => assertNoCrash(log, { alerts: true })));
  beforeEach(async () => {
    await client.del(notBeforeKey(PREFIX));
    await client.publish(CHANNEL, '!not-before 0');
  });

  async function session(sid: string, groups = ['one', 'three']): Promise<string> {
    await writeSession(client, PREFIX, sid, { username: 'joe', groups }, { signature: signature(sid) });
    return sessionCookie(sid);
  }

  const status = async (path: string, cookie: string) => (await get(nginx, path, cookie)).status;

  /** Every request from now on, whichever worker takes it, answers `expected` (the notice reaches worker 0 within ms). */
  async function settlesTo(path: string, cookie: string, expected: number): Promise<void> {
    await waitFor(`${path} answers ${expected}`, async () => (await status(path, cookie)) === expected, 2000);
    const answers = await Promise.all(Array.from({ length: 20 }, () => status(path, cookie)));
    expect(answers).toEqual(Array(20).fill(expected));
  }

  it('refuses a session issued before the mark even while a decision is cached; a later one passes', async () => {
    const old = await session(newTimedSessionId(Date.now() - 60_000));
    const fresh = await session(newTimedSessionId(Date.now() + 5));
    for (let i = 0; i < 3; i++) expect(await status('/groups/one/r', old)).toBe(200);
    const mark = Date.now() - 30_000;
    await client.set(notBeforeKey(PREFIX), String(mark));
    await client.publish(CHANNEL, `!not-before ${mark}`);
    await settlesTo('/groups/one/r', old, 403);
    expect(nginx.errorLog()).toContain('session issued before the not-before mark');
    expect(await status('/groups/one/r', fresh)).toBe(200);
  });

  it('fails closed for untimed ids while a mark is set, and lets them in again when it is lifted', async () => {
    const flask = await session(SID);
    expect(await status('/groups/one/r', flask)).toBe(200);
    await client.set(notBeforeKey(PREFIX), '1');
    await client.publish(CHANNEL, '!not-before 1');
    await settlesTo('/groups/one/r', flask, 403);
    await client.del(notBeforeKey(PREFIX));
    await client.publish(CHANNEL, '!not-before 0');
    await settlesTo('/groups/one/r', flask, 200);
  });

  it('reads the mark with the membership query, so a new mark counts before any notice (no subscriber)', async () => {
    const other = await startRedisAndNginx((port) => ({ conf: confFor(port, false) }));
    try {
      const sid = newTimedSessionId(Date.now() - 60_000);
      await writeSession(other.client, PREFIX, sid, { groups: ['one'] }, { signature: signature(sid) });
      expect((await get(other.nginx, '/groups/one/r', sessionCookie(sid))).status).toBe(200);
      await other.client.set(notBeforeKey(PREFIX), String(Date.now()));
      expect((await get(other.nginx, '/groups/one/r', sessionCookie(sid))).status).toBe(403);
      await other.client.set(notBeforeKey(PREFIX), 'soon');
      expect((await get(other.nginx, '/groups/one/r', sessionCookie(sid))).status).toBe(503);
    } finally {
      await stopRedisAndNginx(other, (log) => assertNoCrash(log));
    }
  });

  it('asks Redis nothing on a decision-cache hit: not for the decision, the mark or the generation', async () => {
    const cookie = await session(newTimedSessionId(Date.now()));
    await settlesTo('/groups/one/r', cookie, 200); // every worker's first request may miss
    // The refresh those started (section 12: a script whose GET Redis counts too) is sent 50 ms later: not counted here.
    await sleep(300);
    const before = { get: await commandCalls(client, 'get'), sismember: await commandCalls(client, 'sismember') };
    for (let i = 0; i < 50; i++) expect((await get(nginx, '/groups/one/r', cookie)).body).toMatch(/^generation \d+/);
    expect({ get: await commandCalls(client, 'get'), sismember: await commandCalls(client, 'sismember') }).toEqual(before);
  });

  it('puts the group’s generation in the variable, and a new one takes effect at once, for that group only', async () => {
    const cookie = await session(newTimedSessionId(Date.now()));
    await client.set(groupGenerationKey(PREFIX, 'one'), '4');
    const generation = async (group: string) => (await get(nginx, `/groups/${group}/r`, cookie)).body.trim();
    await waitFor('generation read', async () => (await generation('one')) === 'generation 4');
    expect(await generation('three')).toBe('generation 0');
    const n = await client.incr(groupGenerationKey(PREFIX, 'one'));
    await client.publish(CHANNEL, `!generation ${n} one`);
    await waitFor('new generation', async () => (await generation('one')) === 'generation 5', 2000);
    const answers = await Promise.all(Array.from({ length: 20 }, () => generation('one')));
    expect(answers).toEqual(Array(20).fill('generation 5'));
    expect(await generation('three')).toBe('generation 0');
  });

  it('answers 503, never an uncached-key 200, when the generation variable is not declared', async () => {
    const cookie = await session(newTimedSessionId(Date.now()));
    expect(await status('/undeclared/one/r', cookie)).toBe(503);
    expect(nginx.errorLog()).toContain('variable $not_declared_here not declared');
  });

  it('acknowledges an !ack barrier once per nginx (worker 0, after the notices before it), and ignores unknown kinds', async () => {
    const cookie = await session(newTimedSessionId(Date.now()));
    await settlesTo('/groups/one/r', cookie, 200);
    const acks = new Redis(redis.port, '127.0.0.1');
    const heard: string[] = [];
    acks.on('message', (_c, id: string) => heard.push(id));
    await acks.subscribe(ackChannel(PREFIX));
    try {
      const sismembers = await commandCalls(client, 'sismember');
      await client.publish(CHANNEL, '!purge everything');
      await client.publish(CHANNEL, '!ack bad id');
      expect(await client.publish(CHANNEL, '!ack barrier-1')).toBe(1);
      await waitFor('ack', async () => heard.includes('barrier-1'));
      await sleep(100);
      expect(heard).toEqual(['barrier-1']);
      // The unknown kind dropped nothing: still hits.
      expect(await status('/groups/one/r', cookie)).toBe(200);
      expect(await commandCalls(client, 'sismember')).toBe(sismembers);
    } finally {
      acks.disconnect();
    }
  });
});

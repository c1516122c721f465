import type { Cluster, Redis as RedisClient } from 'ioredis';
import { compactKey, decodeCompact, encodeCompact, invalidationChannel, KeyLayout, sessionKeyList, sessionKeys } from './layout';

/** A single Redis or a cluster (with the cluster layout, a session's keys share one slot). */
type Redis = RedisClient | Cluster;

/**
 * Sessions written, read and destroyed exactly as PROTOCOL.md section 3 says
 * a party does, on any ioredis client: the tests' stand-in for "another
 * writer" (the Flask extension, an operator's script) and their way to look
 * at what the implementations wrote.
 */

export interface WriteSessionOptions {
  /** What `<prefix>:signature:<sid>` holds: the `<sig>` of the session's cookie. */
  signature: string;
  /** Seconds (default 3600). */
  ttl?: number;
  /** Also PUBLISH the sid on `<prefix>:invalidate` in the same MULTI (section 7). */
  publish?: boolean;
  /** Section 3's keys (default), section 14's, or section 15's one key. */
  layout?: KeyLayout;
}

/**
 * One MULTI: `SET data EX ttl`, `SET signature EX ttl`, `DEL groups`, then
 * `SADD groups …` and `EXPIRE groups ttl` when `data.groups` has any; with
 * `publish`, the section 7 notice.
 */
export async function writeSession(
  client: Redis,
  prefix: string,
  sid: string,
  data: Record<string, unknown>,
  options: WriteSessionOptions,
): Promise<void> {
  const ttl = options.ttl ?? 3600;
  if (options.layout === 'compact') {
    const multi = client.multi().set(compactKey(prefix, sid), encodeCompact(options.signature, JSON.stringify(data)), 'EX', ttl);
    if (options.publish) multi.publish(invalidationChannel(prefix), sid);
    await checkExec(await multi.exec());
    return;
  }
  const keys = sessionKeys(prefix, sid, options.layout);
  const groups = Array.isArray(data.groups) ? (data.groups as string[]) : [];
  const multi = client
    .multi()
    .set(keys.data, JSON.stringify(data), 'EX', ttl)
    .set(keys.signature, options.signature, 'EX', ttl)
    .del(keys.groups);
  if (groups.length) multi.sadd(keys.groups, ...groups).expire(keys.groups, ttl);
  if (options.publish) multi.publish(invalidationChannel(prefix), sid);
  await checkExec(await multi.exec());
}

/** What Redis holds for one session, as a reader sees it. */
export interface StoredSession {
  /** The JSON of the data key, parsed; `undefined` when the key is absent, the raw text when it is not JSON. */
  data: unknown;
  signature: string | null;
  groups: string[];
  /** Remaining time to live of each key, in seconds (-2: absent, -1: no expiry). */
  ttl: { data: number; signature: number; groups: number };
}

export async function readSession(client: Redis, prefix: string, sid: string, layout?: KeyLayout): Promise<StoredSession> {
  if (layout === 'compact') {
    const key = compactKey(prefix, sid);
    const [value, ttl] = (await checkExec(await client.multi().get(key).ttl(key).exec())) as [string | null, number];
    const session = decodeCompact(value);
    // A malformed value is no session to a reader; the raw text is there for a test to look at.
    if (!session)
      return { data: value === null ? undefined : value, signature: null, groups: [], ttl: { data: ttl, signature: ttl, groups: ttl } };
    return { data: session.data, signature: session.signature, groups: session.groups, ttl: { data: ttl, signature: ttl, groups: ttl } };
  }
  const keys = sessionKeys(prefix, sid, layout);
  const res = await client
    .multi()
    .get(keys.data)
    .get(keys.signature)
    .smembers(keys.groups)
    .ttl(keys.data)
    .ttl(keys.signature)
    .ttl(keys.groups)
    .exec();
  const [json, signature, groups, dataTtl, signatureTtl, groupsTtl] = (await checkExec(res)) as [
    string | null,
    string | null,
    string[],
    number,
    number,
    number,
  ];
  let data: unknown;
  if (json !== null) {
    try {
      data = JSON.parse(json);
    } catch {
      data = json;
    }
  }
  return { data, signature, groups: [...groups].sort(), ttl: { data: dataTtl, signature: signatureTtl, groups: groupsTtl } };
}

/** How many of the session's keys exist (0 after a logout; in the compact layout at most 1). */
export function sessionKeyCount(client: Redis, prefix: string, sid: string, layout?: KeyLayout): Promise<number> {
  return client.exists(...sessionKeyList(prefix, sid, layout));
}

/**
 * Deletes the session's keys; with `publish`, as a logout does it: the keys go
 * and the notice follows, in one MULTI.
 */
export async function destroySession(
  client: Redis,
  prefix: string,
  sid: string,
  options: { publish?: boolean; layout?: KeyLayout } = {},
): Promise<void> {
  const keys = sessionKeyList(prefix, sid, options.layout);
  if (options.publish)
    await checkExec(
      await client
        .multi()
        .del(...keys)
        .publish(invalidationChannel(prefix), sid)
        .exec(),
    );
  else await client.del(...keys);
}

type ExecReply = [Error | null, unknown][] | null;

async function checkExec(res: ExecReply): Promise<unknown[]> {
  if (!res) throw new Error('MULTI aborted');
  const failed = res.find(([err]) => err);
  if (failed) throw failed[0];
  return res.map(([, value]) => value);
}

/**
 * Every notice published on `<prefix>:invalidate` (section 7) while `run`
 * runs, in order: heard on a connection of its own (a duplicate of
 * `client`'s), until a marker that `client` publishes after `run` arrives.
 */
export async function noticesDuring(client: RedisClient, prefix: string, run: () => Promise<unknown>): Promise<string[]> {
  const MARK = 'end-of-test';
  const subscriber = client.duplicate();
  const heard: string[] = [];
  let marked!: () => void;
  const end = new Promise<void>((resolve) => (marked = resolve));
  subscriber.on('message', (_channel: string, message: string) => (message === MARK ? marked() : heard.push(message)));
  await subscriber.subscribe(invalidationChannel(prefix));
  try {
    await run();
    await client.publish(invalidationChannel(prefix), MARK);
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      end,
      new Promise((_resolve, reject) => (timer = setTimeout(() => reject(new Error('the notices never ended')), 5_000))),
    ]).finally(() => clearTimeout(timer));
  } finally {
    subscriber.disconnect();
  }
  return heard;
}

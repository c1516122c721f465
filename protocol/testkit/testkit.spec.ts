import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import Redis from 'ioredis';
import {
  compactKey,
  decodeCompact,
  encodeCompact,
  loadCompactCases,
  caseHeaderLines,
  caseOutcome,
  cookieGrammar,
  cookieOutcome,
  cookieValue,
  withoutOws,
  deriveKey,
  destroySession,
  invalidationChannel,
  loadSessionIdCases,
  newTimedSessionId,
  newSessionId,
  readSession,
  REPO_VECTORS_PATH,
  sessionIdOf,
  sessionKeyCount,
  sessionKeys,
  SHARED_VECTORS_PATH,
  signature,
  timedSessionId,
  vectors,
  writeSession,
} from '.';
import { RedisServer } from '../../stack/redis-server';

describe('the reference signer against vectors.json', () => {
  it.each(vectors.valid.map((v) => [v.sid, v] as const))('signs %s as the vector says', (_sid, v) => {
    expect(deriveKey(v.secret, v.salt).toString('hex')).toBe(v.derived_key_hex);
    expect(signature(v.sid, v.secret, v.salt)).toBe(v.signature);
    expect(cookieValue(v.sid, v.secret, v.salt)).toBe(v.cookie);
  });

  it('signs with the last of several secrets, as the rotation vector says', () => {
    const v = vectors.rotation.find((r) => r.expected_cookie)!;
    expect(cookieValue(v.sign_sid!, v.secrets[v.secrets.length - 1], v.salt)).toBe(v.expected_cookie);
  });

  it('reproduces each valid rotation cookie with one of its secrets', () => {
    for (const v of vectors.rotation.filter((r) => r.cookie && r.valid)) {
      const [sid] = v.cookie!.split('.');
      expect(v.secrets.map((s) => cookieValue(sid, s, v.salt))).toContain(v.cookie);
    }
  });

  it('reads back each valid cookie, and each valid rotation cookie under one of its secrets', () => {
    for (const v of vectors.valid) expect(sessionIdOf(v.cookie, v.secret, v.salt)).toBe(v.sid);
    for (const v of vectors.rotation.filter((r) => r.cookie)) {
      const sids = v.secrets.map((s) => sessionIdOf(v.cookie, s, v.salt)).filter((sid) => sid !== null);
      expect(sids).toEqual(v.valid ? [v.cookie!.split('.')[0]] : []);
    }
  });

  it.each(vectors.invalid.cases.map((c) => [c.why, c] as const))('reads no session id from the invalid cookie: %s', (_why, c) => {
    expect(sessionIdOf(c.cookie, vectors.invalid.secret, vectors.invalid.salt)).toBe(c.must_accept ? c.cookie.split('.')[0] : null);
  });

  it('reads no session id from what is not a string, or from an id outside section 1', () => {
    const { secret, salt } = vectors.valid[0];
    for (const value of [undefined, null, 42, {}, ['a.b']]) expect(sessionIdOf(value, secret, salt)).toBeNull();
    for (const sid of ['a'.repeat(15), 'a'.repeat(129), `${'a'.repeat(20)}~`])
      expect(sessionIdOf(cookieValue(sid, secret, salt), secret, salt)).toBeNull();
    for (const sid of ['a'.repeat(16), 'a'.repeat(128)]) expect(sessionIdOf(cookieValue(sid, secret, salt), secret, salt)).toBe(sid);
  });

  it('makes ids of the form section 1 prescribes', () => {
    expect(newSessionId()).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  });
});

describe('the reference reading of the Cookie header against cookie-grammar.json', () => {
  it.each(cookieGrammar.cases.map((c) => [c.why, c] as const))('%s', (_why, c) => {
    expect(cookieOutcome(caseHeaderLines(c), c.name ?? 'session')).toEqual(caseOutcome(c));
  });

  it('has cases for both sides of the size cap, and fills to the byte', () => {
    const filled = cookieGrammar.cases.filter((c) => c.fill !== undefined);
    expect(filled.map((c) => c.fill).sort()).toEqual([8000, 8000, 8000, 8001, 8001, 8001, 8001]);
    for (const c of filled) expect(withoutOws(caseHeaderLines(c).join('; '))).toHaveLength(c.fill!);
    expect(cookieGrammar.max_header_bytes).toBe(8000);
  });
});

describe('the reference timed session ids against session-ids.json (section 11)', () => {
  const cases = loadSessionIdCases();
  it.each(cases.make.map((c) => [c.sid, c] as const))('makes %s from its times and random bytes', (sid, c) => {
    expect(newTimedSessionId(c.issued_ms, c.deadline_ms, Buffer.from(c.random_hex, 'hex'))).toBe(sid);
  });
  it.each(cases.read.map((c) => [c.why, c] as const))('reads %s', (_why, c) => {
    expect(timedSessionId(c.sid)).toEqual(c.timed ? { issuedMs: c.issued_ms, deadlineMs: c.deadline_ms } : null);
    expect(sessionIdOf(cookieValue(c.sid, 's', 'salt'), 's', 'salt')).toBe(c.sid); // every case is a valid section 1 id
  });
  it('makes fresh ids of 48 characters that read back as made', () => {
    const sid = newTimedSessionId(1796169600000, 1796169700000);
    expect(sid).toHaveLength(48);
    expect(timedSessionId(sid)).toEqual({ issuedMs: 1796169600000, deadlineMs: 1796169700000 });
    expect(newTimedSessionId(1796169600000)).not.toBe(newTimedSessionId(1796169600000));
  });
});

describe('the repository copy of the protocol', () => {
  const shared = existsSync(SHARED_VECTORS_PATH);
  (shared ? it : it.skip)('has the shared vectors.json byte for byte', () => {
    expect(readFileSync(REPO_VECTORS_PATH, 'utf8')).toBe(readFileSync(SHARED_VECTORS_PATH, 'utf8'));
  });
  (shared ? it : it.skip)('keeps the shared PROTOCOL.md (v1) word for word; new sections only follow it', () => {
    const ours = readFileSync(resolve(REPO_VECTORS_PATH, '../PROTOCOL.md'), 'utf8');
    const reference = readFileSync(resolve(SHARED_VECTORS_PATH, '../PROTOCOL.md'), 'utf8');
    expect(ours.slice(0, reference.length)).toBe(reference);
  });
});

describe('the reference reading of compact values against compact.json (section 15)', () => {
  const cases = loadCompactCases();

  it.each(cases.keys.map((k) => [k.key, k] as const))('names the one key %s', (_key, k) => {
    expect(compactKey(k.prefix, k.sid)).toBe(k.key);
  });

  it.each(cases.valid.map((c) => [c.why, c] as const))('reads the valid value: %s', (_why, c) => {
    const session = decodeCompact(c.value);
    expect(session).not.toBeNull();
    expect(session!.signature).toBe(c.signature);
    expect(session!.groups).toEqual(c.groups);
    if (c.idle !== undefined) expect(session!.data._idle).toBe(c.idle);
  });

  it.each(cases.malformed.map((c) => [c.why, c] as const))('reads no session from the malformed value: %s', (_why, c) => {
    expect(decodeCompact(c.value)).toBeNull();
  });

  it('writes the value the write case names', () => {
    const w = cases.write;
    expect(compactKey(w.prefix, w.sid)).toBe(w.key);
    expect(encodeCompact(w.signature, w.json)).toBe(w.value);
  });
});

describe('sessions written and read as section 3 says (real redis-server)', () => {
  let redis: RedisServer;
  let client: Redis;
  beforeAll(async () => {
    redis = await RedisServer.start();
    client = new Redis(redis.port, '127.0.0.1');
  });
  afterAll(async () => {
    client.disconnect();
    await redis.dispose();
  });

  it('writes three keys with one ttl, reads them back, and publishes on request', async () => {
    const sid = newSessionId();
    const sub = new Redis(redis.port, '127.0.0.1');
    const heard: string[] = [];
    await sub.subscribe(invalidationChannel('kit'));
    sub.on('message', (_channel, message: string) => heard.push(message));
    try {
      await writeSession(client, 'kit', sid, { username: 'u', groups: ['b', 'a'] }, { signature: 'S', ttl: 100, publish: true });
      const stored = await readSession(client, 'kit', sid);
      expect(stored).toMatchObject({ data: { username: 'u', groups: ['b', 'a'] }, signature: 'S', groups: ['a', 'b'] });
      expect(Object.values(stored.ttl).every((t) => t > 90 && t <= 100)).toBe(true);
      expect(await client.type(sessionKeys('kit', sid).groups)).toBe('set');
      await destroySession(client, 'kit', sid, { publish: true });
      expect(await sessionKeyCount(client, 'kit', sid)).toBe(0);
      await new Promise((r) => setTimeout(r, 50));
      expect(heard).toEqual([sid, sid]);
    } finally {
      sub.disconnect();
    }
  });

  it('leaves the groups key absent for a session without groups', async () => {
    const sid = newSessionId();
    await writeSession(client, 'kit', sid, { username: 'u' }, { signature: 'S' });
    expect(await client.exists(sessionKeys('kit', sid).groups)).toBe(0);
    expect((await readSession(client, 'kit', sid)).groups).toEqual([]);
  });

  it('writes, reads and destroys a session in the compact layout as one key (section 15)', async () => {
    const sid = newSessionId();
    const sig = 'v1t7MPWDZv3Hf5x8Yc7Ahz2kq-Q';
    await writeSession(client, 'kit', sid, { username: 'u', groups: ['b', 'a'] }, { signature: sig, ttl: 100, layout: 'compact' });
    expect(await client.keys(`kit:{${sid}}*`)).toEqual([compactKey('kit', sid)]);
    expect(await client.get(compactKey('kit', sid))).toBe(`${sig}{"username":"u","groups":["b","a"]}`);
    const stored = await readSession(client, 'kit', sid, 'compact');
    expect(stored).toMatchObject({ data: { username: 'u', groups: ['b', 'a'] }, signature: sig, groups: ['a', 'b'] });
    expect(stored.ttl.data).toBeGreaterThan(90);
    expect(await sessionKeyCount(client, 'kit', sid, 'compact')).toBe(1);
    await destroySession(client, 'kit', sid, { layout: 'compact' });
    expect(await sessionKeyCount(client, 'kit', sid, 'compact')).toBe(0);
  });
});

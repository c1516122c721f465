/**
 * PROTOCOL.md section 3 (the v1 Redis layout) and section 7 (the revocation
 * channel), once for every test: nothing else in the tests spells a key.
 */

/** The protocol's defaults (sections 2 and 3): what a party uses when it is not configured. */
export const PROTOCOL_DEFAULTS = {
  salt: 'flask-resty-session',
  keyPrefix: 'resty_shared_session',
  cookieName: 'session',
  ttlSeconds: 31 * 24 * 3600,
} as const;

/** The three keys of session `sid`. */
export interface SessionKeys {
  data: string;
  signature: string;
  groups: string;
}

/**
 * Section 3's layout (`v1`), section 14's (`cluster`: the session id as a
 * hash tag), or section 15's (`compact`: one string key per session).
 */
export type KeyLayout = 'v1' | 'cluster' | 'compact';

/** The three keys of a session in the v1 or cluster layout (the compact layout has one: `compactKey`). */
export function sessionKeys(prefix: string, sid: string, layout: KeyLayout = 'v1'): SessionKeys {
  if (layout === 'compact') throw new Error('the compact layout keeps a session in one key: use compactKey()');
  if (layout === 'cluster')
    return { data: `${prefix}:{${sid}}:data`, signature: `${prefix}:{${sid}}:signature`, groups: `${prefix}:{${sid}}:groups` };
  return { data: `${prefix}:data:${sid}`, signature: `${prefix}:signature:${sid}`, groups: `${prefix}:groups:${sid}` };
}

/** Section 15: the one key of session `sid` in the compact layout. */
export function compactKey(prefix: string, sid: string): string {
  return `${prefix}:{${sid}}`;
}

/** Every key of session `sid`: data, signature, groups; in the compact layout its one key. */
export function sessionKeyList(prefix: string, sid: string, layout: KeyLayout = 'v1'): string[] {
  if (layout === 'compact') return [compactKey(prefix, sid)];
  const k = sessionKeys(prefix, sid, layout);
  return [k.data, k.signature, k.groups];
}

/** Section 7: where a writer publishes the id of a session it changed or destroyed. */
export function invalidationChannel(prefix: string): string {
  return `${prefix}:invalidate`;
}

/** Section 15: the value of a compact session: the signature, then the JSON object. */
export function encodeCompact(signature: string, json: string): string {
  return signature + json;
}

/** What a reader finds in a compact value (section 15), or null when it is malformed. */
export interface CompactSession {
  signature: string;
  data: Record<string, unknown>;
  /** The string members of `groups`, each once, sorted by code point. */
  groups: string[];
}

export function decodeCompact(value: string | Buffer | null | undefined): CompactSession | null {
  if (value === null || value === undefined) return null;
  const text = typeof value === 'string' ? value : value.toString('utf8');
  if (text.length < 29 || !/^[A-Za-z0-9_-]{27}\{/.test(text)) return null;
  const json = text.slice(27);
  // Section 15.1: at most 65536 bytes and 1000 levels of nesting; every string and key well-formed.
  if (Buffer.byteLength(json, 'utf8') > 65_536 || nestingDepth(json) > 1000) return null;
  const wellFormed = (s: string) => (s as unknown as { isWellFormed(): boolean }).isWellFormed();
  let data: unknown;
  try {
    data = JSON.parse(json, (key, v: unknown) => {
      if (!wellFormed(key) || (typeof v === 'string' && !wellFormed(v))) throw new SyntaxError('lone surrogate');
      return v;
    });
  } catch {
    return null;
  }
  if (typeof data !== 'object' || data === null || Array.isArray(data)) return null;
  const listed = (data as { groups?: unknown }).groups;
  const groups = Array.isArray(listed) ? [...new Set(listed.filter((g): g is string => typeof g === 'string'))] : [];
  return { signature: text.slice(0, 27), data: data as Record<string, unknown>, groups: groups.sort(byCodePoint) };
}

/** The deepest nesting of arrays and objects in a JSON text (brackets inside strings do not count). */
function nestingDepth(json: string): number {
  let depth = 0;
  let deepest = 0;
  for (const token of json.matchAll(/"(?:[^"\\]|\\.)*"|[[{]|[\]}]/g)) {
    if (token[0] === '[' || token[0] === '{') deepest = Math.max(deepest, ++depth);
    else if (token[0] === ']' || token[0] === '}') depth--;
  }
  return deepest;
}

/** Sorts strings by code point (not by UTF-16 unit, which `sort()` does). */
export function byCodePoint(a: string, b: string): number {
  const x = [...a].map((c) => c.codePointAt(0)!);
  const y = [...b].map((c) => c.codePointAt(0)!);
  for (let i = 0; i < Math.min(x.length, y.length); i++) if (x[i] !== y[i]) return x[i] - y[i];
  return x.length - y.length;
}

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

/** Section 3's layout (`v1`), or section 14's (`cluster`: the session id as a hash tag). */
export type KeyLayout = 'v1' | 'cluster';

export function sessionKeys(prefix: string, sid: string, layout: KeyLayout = 'v1'): SessionKeys {
  if (layout === 'cluster')
    return { data: `${prefix}:{${sid}}:data`, signature: `${prefix}:{${sid}}:signature`, groups: `${prefix}:{${sid}}:groups` };
  return { data: `${prefix}:data:${sid}`, signature: `${prefix}:signature:${sid}`, groups: `${prefix}:groups:${sid}` };
}

/** The three keys as a list, in the order data, signature, groups. */
export function sessionKeyList(prefix: string, sid: string, layout: KeyLayout = 'v1'): string[] {
  const k = sessionKeys(prefix, sid, layout);
  return [k.data, k.signature, k.groups];
}

/** Section 7: where a writer publishes the id of a session it changed or destroyed. */
export function invalidationChannel(prefix: string): string {
  return `${prefix}:invalidate`;
}

/**
 * PROTOCOL.md section 15: the value of a session in the compact layout,
 * `<sig><json>` (the cookie's 27-character signature, then at once the
 * session's JSON object). The one place in TypeScript that knows the format
 * (the Redis scripts read it with lib-compact-value.lua, their one copy).
 */

import { isWellFormed, sessionJsonBoundsProblem } from './session-json';

/** The length of the cookie's `<sig>` (section 2): the value's first 27 bytes. */
export const SIGNATURE_LENGTH = 27;

/** What a reader finds in a well-formed value. */
export interface CompactValue {
  signature: string;
  /** The JSON text after the signature, as stored. */
  json: string;
  data: Record<string, unknown>;
  /** The string members of `groups`, each once (stored order). */
  groups: string[];
}

/** The value of a session: its signature, then its JSON object. */
export function compactValue(signature: string, json: string): string {
  return signature + json;
}

/**
 * Section 15: a value is well-formed when it holds at least 29 bytes, its
 * first 27 are `[A-Za-z0-9_-]`, byte 28 is `{` and the rest parses as one
 * JSON object, within section 15.1's bounds, every string and key of which
 * is well-formed Unicode (lua-cjson, nginx's parser, refuses a lone
 * surrogate's escape, which JSON.parse takes). Anything else (null
 * included) is no session: null.
 */
export function parseCompactValue(value: string | null | undefined): CompactValue | null {
  if (typeof value !== 'string' || !/^[A-Za-z0-9_-]{27}\{/.test(value)) return null;
  const json = value.slice(SIGNATURE_LENGTH);
  if (sessionJsonBoundsProblem(json) !== undefined) return null;
  let data: unknown;
  try {
    data = JSON.parse(json, refuseLoneSurrogates);
  } catch {
    return null;
  }
  if (typeof data !== 'object' || data === null || Array.isArray(data)) return null;
  return { signature: value.slice(0, SIGNATURE_LENGTH), json, data: data as Record<string, unknown>, groups: groupsOfData(data) };
}

/** Section 15: the groups of a session are the string members of its data's `groups` array, each once. */
export function groupsOfData(data: object): string[] {
  const listed = (data as { groups?: unknown }).groups;
  return Array.isArray(listed) ? [...new Set(listed.filter((g): g is string => typeof g === 'string'))] : [];
}

/** A JSON.parse reviver: every key and string value well-formed, or the parse throws. */
function refuseLoneSurrogates(this: unknown, key: string, value: unknown): unknown {
  if (!isWellFormed(key) || (typeof value === 'string' && !isWellFormed(value))) {
    throw new SyntaxError('a lone surrogate in the JSON');
  }
  return value;
}

/**
 * PROTOCOL.md section 15.1: a session's JSON is at most 1000 arrays and
 * objects deep (lua-cjson's limit) and at most 65536 bytes; beyond either it
 * is malformed, for every reader and every layout. The one place in
 * TypeScript that knows the bounds.
 */

/** The deepest a session's JSON may nest arrays and objects (the outer object is 1). */
export const MAX_SESSION_JSON_DEPTH = 1000;

/** The most bytes (UTF-8) a session's JSON may have. */
export const MAX_SESSION_JSON_BYTES = 65_536;

/**
 * Why `json` is beyond the bounds, or undefined when it is within them. The
 * depth is counted by one scan of the text (`[` and `{` outside strings), so
 * that no JSON, however deep, reaches a recursive parser or the stack.
 */
export function sessionJsonBoundsProblem(json: string): string | undefined {
  // A UTF-16 unit is at most 3 UTF-8 bytes: most strings are settled without counting.
  if (json.length * 3 > MAX_SESSION_JSON_BYTES && Buffer.byteLength(json, 'utf8') > MAX_SESSION_JSON_BYTES) {
    return `more than ${MAX_SESSION_JSON_BYTES} bytes`;
  }
  let depth = 0;
  let inString = false;
  for (let i = 0; i < json.length; i++) {
    const c = json.charCodeAt(i);
    if (inString) {
      if (c === 0x5c)
        i++; // a backslash: the next unit is escaped
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) {
      inString = true;
    } else if (c === 0x5b || c === 0x7b) {
      if (++depth > MAX_SESSION_JSON_DEPTH) return `nested more than ${MAX_SESSION_JSON_DEPTH} deep`;
    } else if (c === 0x5d || c === 0x7d) {
      depth--;
    }
  }
  return undefined;
}

/** The session's JSON as an object: null when it is beyond the bounds, not JSON, or not an object. */
export function parseSessionJson(json: string): Record<string, unknown> | null {
  return sessionJsonBoundsProblem(json) === undefined ? jsonObject(json) : null;
}

/** JSON already found within the bounds, as an object: null when it is not JSON, or not an object. */
export function jsonObject(json: string): Record<string, unknown> | null {
  let value: unknown;
  try {
    value = JSON.parse(json);
  } catch {
    return null;
  }
  return value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as Record<string, unknown>) : null;
}

/** Section 13.1: the user a session's JSON names in `field` ('' when none), or null when it is no session (malformed). */
export function sessionUserOf(json: string, field: string): string | null {
  const data = parseSessionJson(json);
  if (data === null) return null;
  const user = data[field];
  return typeof user === 'string' ? user : '';
}

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** True when `s` holds no lone UTF-16 surrogate (String.prototype.isWellFormed, which ES2022's typings lack). */
export function isWellFormed(s: string): boolean {
  return !LONE_SURROGATE.test(s);
}

/**
 * PROTOCOL.md section 15: the value of a session in the compact layout,
 * `<sig><json>` (the cookie's 27-character signature, then at once the
 * session's JSON object). The one place that knows the format: the store,
 * the control and the migration read and build values here, in TypeScript
 * and in the Lua of their scripts.
 */

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

/** The one key of session `sid`. */
export function compactKey(prefix: string, sid: string): string {
  return `${prefix}:{${sid}}`;
}

/** The value of a session: its signature, then its JSON object. */
export function compactValue(signature: string, json: string): string {
  return signature + json;
}

/**
 * Section 15: a value is well-formed when it holds at least 29 bytes, its
 * first 27 are `[A-Za-z0-9_-]`, byte 28 is `{` and the rest parses as one
 * JSON object. Anything else (null included) is no session: null.
 */
export function parseCompactValue(value: string | null | undefined): CompactValue | null {
  if (typeof value !== 'string' || !/^[A-Za-z0-9_-]{27}\{/.test(value)) return null;
  const json = value.slice(SIGNATURE_LENGTH);
  let data: unknown;
  try {
    data = JSON.parse(json);
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

/**
 * The same reading in the Lua of a script (Redis' cjson):
 * `compact_session(value)` answers the decoded JSON table, or nil when the
 * value is malformed; `compact_groups(session)` the string members of its
 * `groups` array, each once.
 */
export const COMPACT_LUA = `
local function compact_session(value)
  if type(value) ~= 'string' or #value < 29 or not string.find(string.sub(value, 1, 28), '^[A-Za-z0-9_%-]+{$') then return nil end
  local ok, session = pcall(cjson.decode, string.sub(value, 28))
  if ok and type(session) == 'table' then return session end
  return nil
end
local function compact_groups(session)
  local groups, seen = {}, {}
  if type(session.groups) == 'table' then
    for _, g in ipairs(session.groups) do
      if type(g) == 'string' and not seen[g] then seen[g] = true; groups[#groups + 1] = g end
    end
  end
  return groups
end`;

import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { REPO_ROOT } from './vectors';

/** PROTOCOL.md section 15's cases (protocol/compact.json): what both implementations must read from a compact value. */
export const COMPACT_CASES_PATH = resolve(REPO_ROOT, 'protocol/compact.json');

export interface CompactCases {
  /** The one key of a session. */
  keys: { prefix: string; sid: string; key: string }[];
  /** Values a reader accepts, with the signature and the groups (sorted by code point) it finds; `idle`: the `_idle` it finds. */
  valid: { value: string; signature: string; groups: string[]; idle?: number; why: string }[];
  /** Values a reader treats as no session. */
  malformed: { value: string; why: string }[];
  /** A write: the key and value a writer stores for this session. */
  write: { prefix: string; sid: string; signature: string; json: string; key: string; value: string };
}

export function loadCompactCases(): CompactCases {
  return JSON.parse(readFileSync(COMPACT_CASES_PATH, 'utf8')) as CompactCases;
}

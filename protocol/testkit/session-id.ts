import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';

/**
 * PROTOCOL.md section 11, written again from the text as the test oracle:
 * timed session ids, which carry when a session was issued and the deadline
 * from which it has ended whatever happens.
 */

/** Beside PROTOCOL.md (this module loads nothing when imported: the bench uses it without the files). */
export const SESSION_IDS_PATH = resolve(__dirname, '../session-ids.json');

export interface SessionIdCases {
  make: { issued_ms: number; deadline_ms: number; random_hex: string; sid: string }[];
  read: ({ sid: string; why: string } & ({ timed: true; issued_ms: number; deadline_ms: number } | { timed: false }))[];
}

export function loadSessionIdCases(): SessionIdCases {
  return JSON.parse(readFileSync(SESSION_IDS_PATH, 'utf8')) as SessionIdCases;
}

/** `<issued>_<deadline>_<random>`; deadline 0: none. `random` is 16 bytes (fresh ones by default). */
export function newTimedSessionId(issuedMs: number, deadlineMs = 0, random: Buffer = randomBytes(16)): string {
  const hex = (ms: number) => ms.toString(16).padStart(12, '0');
  return `${hex(issuedMs)}_${hex(deadlineMs)}_${random.toString('base64url')}`;
}

/** The times a timed id carries (deadline 0: none), or null for an untimed id. */
export function timedSessionId(sid: string): { issuedMs: number; deadlineMs: number } | null {
  const match = /^([0-9a-f]{12})_([0-9a-f]{12})_[A-Za-z0-9_-]{22}$/.exec(sid);
  return match ? { issuedMs: parseInt(match[1], 16), deadlineMs: parseInt(match[2], 16) } : null;
}

import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { timedSessionId } from './session-id';
import { REPO_ROOT } from './vectors';

/**
 * PROTOCOL.md section 13, written again from the text as the test oracle:
 * the keys beside the session's own (the per-user index, the not-before
 * mark, group cache generations), the acknowledgement channel, and which
 * sessions a mark refuses.
 */

export const CONTROL_CASES_PATH = resolve(REPO_ROOT, 'protocol/control.json');

export type NoticeCase = { payload: string; why?: string } & (
  | { kind: 'not-before'; ms: number }
  | { kind: 'generation'; n: number; group: string }
  | { kind: 'ack'; id: string }
  | { kind: 'ignored' }
  | { kind: 'session' }
);

export interface ControlCases {
  mark: { sid: string; mark_ms: number; refused: boolean; why: string }[];
  notices: NoticeCase[];
}

export function loadControlCases(): ControlCases {
  return JSON.parse(readFileSync(CONTROL_CASES_PATH, 'utf8')) as ControlCases;
}

/** 13.1: the sorted set of a user's live sessions (member: sid, score: expiry in ms). */
export function userIndexKey(prefix: string, userId: string): string {
  return `${prefix}:user:${userId}`;
}

/** 13.2: the not-before mark (Unix ms). */
export function notBeforeKey(prefix: string): string {
  return `${prefix}:not-before`;
}

/** 13.3: a group's cache generation. */
export function groupGenerationKey(prefix: string, group: string): string {
  return `${prefix}:group-generation:${group}`;
}

/** 13.4: where readers acknowledge `!ack <id>` notices. */
export function ackChannel(prefix: string): string {
  return `${prefix}:ack`;
}

/** 13.2: true when a mark (ms; 0: none) refuses the session id. */
export function refusedByMark(sid: string, markMs: number): boolean {
  if (markMs <= 0) return false;
  const times = timedSessionId(sid);
  return times === null || times.issuedMs < markMs;
}

import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { REPO_ROOT } from './vectors';

/** PROTOCOL.md section 10's cases: Cookie header lines and what a reader must find in them. */
export const COOKIE_GRAMMAR_PATH = resolve(REPO_ROOT, 'protocol/cookie-grammar.json');

/** What a Cookie header holds under a cookie name: the value that counts, or none (absent: 401 at nginx; refused: 403). */
export type CookieOutcome = { value: string } | { none: 'absent' | 'refused' };

export interface CookieGrammarCase {
  why: string;
  /** The Cookie header lines, in order; latin1 strings (one character a byte). */
  lines: string[];
  /** The cookie name; default "session". */
  name?: string;
  value?: string;
  none?: 'absent' | 'refused';
  /** The last line is extended with 'x' until the lines joined with "; " are this many bytes long. */
  fill?: number;
}

export const cookieGrammar: { max_header_bytes: number; cases: CookieGrammarCase[] } = JSON.parse(
  readFileSync(COOKIE_GRAMMAR_PATH, 'utf8'),
);

/** A case's header lines, `fill` applied. */
export function caseHeaderLines(c: CookieGrammarCase): string[] {
  const lines = [...c.lines];
  if (c.fill !== undefined) lines[lines.length - 1] += 'x'.repeat(c.fill - withoutOws(lines.join('; ')).length);
  return lines;
}

/** A case's expected outcome. */
export function caseOutcome(c: CookieGrammarCase): CookieOutcome {
  return c.value !== undefined ? { value: c.value } : { none: c.none! };
}

/** The bytes other than SP and HTAB: what the size cap counts. */
export const withoutOws = (s: string) => s.replace(/[ \t]/g, '');
const trimOws = (s: string) => s.replace(/^[ \t]+|[ \t]+$/g, '');
const escapeRegExp = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/**
 * Section 10 read literally, as the tests' oracle: what a reader must find
 * under `name` in these Cookie header lines. Written apart from both
 * implementations (split and regular expressions, not their byte loops),
 * and checked against every case of cookie-grammar.json.
 */
export function cookieOutcome(lines: readonly string[], name: string): CookieOutcome {
  const header = lines.join('; ');
  if (withoutOws(header).length > cookieGrammar.max_header_bytes) return { none: 'refused' };
  // eslint-disable-next-line no-control-regex -- the control bytes are what rule 3 is about
  if (/[\x00-\x08\x0a-\x1f\x7f]/.test(header)) return { none: 'refused' };
  if (new RegExp(`,[ \\t]*${escapeRegExp(name)}[ \\t]*=`).test(header)) return { none: 'refused' };
  const values = header
    .split(';')
    .filter((piece) => piece.includes('=') && trimOws(piece.slice(0, piece.indexOf('='))) === name)
    .map((piece) => trimOws(piece.slice(piece.indexOf('=') + 1)));
  if (values.length === 0) return { none: 'absent' };
  return values.every((v) => v === values[0]) ? { value: values[0] } : { none: 'refused' };
}

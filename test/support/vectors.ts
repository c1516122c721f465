import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';

/** The repository's root folder. */
export const REPO_ROOT = resolve(__dirname, '../..');

/** PROTOCOL.md's test vectors: shared/ stands beside the repository (here and in CI). */
export const VECTORS_PATH = resolve(REPO_ROOT, '../shared/protocol/vectors.json');

export interface ValidVector {
  secret: string;
  salt: string;
  sid: string;
  derived_key_hex: string;
  signature: string;
  cookie: string;
}
export interface RotationVector {
  salt: string;
  secrets: string[];
  cookie?: string;
  valid?: boolean;
  sign_sid?: string;
  expected_cookie?: string;
  note: string;
}
export interface InvalidCase {
  cookie: string;
  why: string;
  python_accepts: boolean;
  must_accept: boolean;
}
export interface Vectors {
  valid: ValidVector[];
  rotation: RotationVector[];
  invalid: { secret: string; salt: string; cases: InvalidCase[] };
}

export const vectors: Vectors = JSON.parse(readFileSync(VECTORS_PATH, 'utf8'));

/** itsdangerous lists secrets oldest first and signs with the last; our API names them. */
export function namedSecrets(secrets: string[]): { secret: string; secretFallbacks: string[] } {
  return { secret: secrets[secrets.length - 1], secretFallbacks: secrets.slice(0, -1).reverse() };
}

import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';

/** The repository's root folder. */
export const REPO_ROOT = resolve(__dirname, '../..');

/** The project's shared folder keeps the authoritative vectors beside the repository (here and in CI). */
export const SHARED_VECTORS_PATH = resolve(REPO_ROOT, '../shared/protocol/vectors.json');
/** The copy shipped in the repository, for a clone that has no shared folder beside it. */
export const REPO_VECTORS_PATH = resolve(REPO_ROOT, 'protocol/vectors.json');
/** PROTOCOL.md's test vectors: the shared ones where present, else the repository's copy. */
export const VECTORS_PATH = existsSync(SHARED_VECTORS_PATH) ? SHARED_VECTORS_PATH : REPO_VECTORS_PATH;

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

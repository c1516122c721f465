import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { REPO_ROOT } from './nginx-platform';

/** Where scripts/install.sh puts the other Node majors the tests run on: `.tools/node<major>/bin/node`. */
export const NODE_TOOLS_DIR = join(REPO_ROOT, '.tools');

export interface NodeBinary {
  /** `v24.22.3` */
  version: string;
  path: string;
}

/**
 * The Node binaries to run a program on: this process's own, then each major
 * that scripts/install.sh installed into .tools/, one binary per version.
 */
export function nodeBinaries(): NodeBinary[] {
  const found: NodeBinary[] = [{ version: process.version, path: process.execPath }];
  const installed = existsSync(NODE_TOOLS_DIR)
    ? readdirSync(NODE_TOOLS_DIR)
        .filter((name) => /^node\d+$/.test(name))
        .sort()
    : [];
  for (const name of installed) {
    const path = join(NODE_TOOLS_DIR, name, 'bin', 'node');
    if (!existsSync(path)) continue;
    const version = execFileSync(path, ['--version'], { encoding: 'utf8' }).trim();
    if (!found.some((n) => n.version === version)) found.push({ version, path });
  }
  return found;
}

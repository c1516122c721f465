import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';

/**
 * Where things are and how Debian's nginx loads the Lua module: what every
 * nginx started here needs, whatever its configuration. It imports nothing of
 * the library, so the rock's own tests run without it.
 */

/** The repository's root folder: the nearest folder above this file's (source or compiled) with the nginx template. */
export const REPO_ROOT = findRepoRoot(__dirname);

function findRepoRoot(from: string): string {
  for (let dir = from; ; dir = dirname(dir)) {
    if (existsSync(join(dir, 'resty', 'conf', 'nginx.conf.template'))) return dir;
    if (dirname(dir) === dir) throw new Error(`no repository above ${from}`);
  }
}

/** Debian's nginx: its dynamic modules (ndk before lua), by absolute path. */
export function debianPlatformLines(modulesDir = '/usr/lib/nginx/modules'): string {
  const lines = ['ndk_http_module.so', 'ngx_http_lua_module.so', 'ngx_http_headers_more_filter_module.so'].map(
    (m) => `load_module ${join(modulesDir, m)};`,
  );
  // As root, nginx would run its workers as "nobody", who cannot read the
  // 0700 run folder: keep them as the user who runs nginx.
  if (process.getuid?.() === 0) lines.push('user root;');
  return lines.join('\n');
}

/**
 * Lua search path on Debian: the rock from this repository, and the libraries
 * unpacked into .vendor/. The trailing ";;" keeps the default path, where
 * resty.core lives.
 */
export function debianLuaPackagePath(): string {
  return [join(REPO_ROOT, 'resty', 'lib', '?.lua'), join(REPO_ROOT, '.vendor', 'usr', 'share', 'lua', '5.1', '?.lua'), ';'].join(';');
}

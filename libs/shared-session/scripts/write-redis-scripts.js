// Writes src/redis-scripts.generated.ts: the text of every Redis script of the
// library, from the one folder of Redis scripts that the Lua rock shares
// (resty/lib/resty/shared_session/scripts/, luacheck'd there). `npm run build`
// runs it before tsc, so dist/ carries the scripts inline in both its
// CommonJS and its ESM entry, and nothing reads a .lua file at run time;
// jest runs it as its global setup, for the specs that run src/ directly.
//
// A script is every `<name>.lua` there but the `lib-*.lua` snippets; a line
// `-- #include lib-<name>.lua` is replaced by that snippet (one copy of
// issued(), of the compact value's reading, of the migration's steps), and
// comment lines (the files' documentation, and `-- luacheck:` lines that only
// tell luacheck about the snippets) are left out of what Redis is sent.
'use strict';
const { readdirSync, readFileSync, writeFileSync, existsSync } = require('node:fs');
const { join } = require('node:path');

const SCRIPTS = join(__dirname, '../../../resty/lib/resty/shared_session/scripts');
const OUT = join(__dirname, '../src/redis-scripts.generated.ts');
const INCLUDE = /^-- #include (lib-[a-z0-9-]+\.lua)$/;

function text(file, seen = []) {
  if (seen.includes(file)) throw new Error(`${file} includes itself`);
  return readFileSync(join(SCRIPTS, file), 'utf8')
    .split('\n')
    .map((line) => {
      const include = INCLUDE.exec(line);
      if (include) return text(include[1], [...seen, file]).replace(/\n$/, '');
      return line.trimStart().startsWith('--') ? null : line;
    })
    .filter((line) => line !== null)
    .join('\n');
}

function writeRedisScripts() {
  const names = readdirSync(SCRIPTS)
    .filter((f) => f.endsWith('.lua') && !f.startsWith('lib-'))
    .sort();
  const body = names.map((f) => `  ${JSON.stringify(f.slice(0, -'.lua'.length))}: ${JSON.stringify(text(f))},\n`).join('');
  const source =
    '// Written by scripts/write-redis-scripts.js from resty/lib/resty/shared_session/scripts/\n' +
    '// (npm run build, and jest before the specs): not committed, not to be edited.\n' +
    `export const REDIS_SCRIPTS = {\n${body}} as const;\n`;
  // Unchanged: left alone, so that a watcher or jest's cache sees nothing new.
  if (!existsSync(OUT) || readFileSync(OUT, 'utf8') !== source) writeFileSync(OUT, source);
}

module.exports = writeRedisScripts;
if (require.main === module) writeRedisScripts();

#!/usr/bin/env bash
# `npm test`: installs what is missing, builds, and runs every suite: static
# checks, Lua unit specs (busted), and jest (library unit and integration, the
# nginx/Lua specs against a real nginx and redis-server, end to end). Ends
# with one line of totals over all of them.
set -uo pipefail
cd "$(dirname "$0")/.."
RESULTS=.run/test-results
rm -rf "$RESULTS" && mkdir -p "$RESULTS"

bash scripts/install.sh || { echo "install failed"; echo "0 passed, 1 failed"; exit 1; }

check() { # name, command...: a check that counts as one test
  local name=$1; shift
  echo "== $name"
  if "$@" >"$RESULTS/$name.log" 2>&1; then echo "ok" >"$RESULTS/$name.check"; echo "   ok"
  else echo "failed" >"$RESULTS/$name.check"; cat "$RESULTS/$name.log"; fi
}

check build npm run build --silent
check typecheck npx tsc --noEmit -p tsconfig.json
check luacheck bash -c 'cd resty && luacheck --no-color .'
check rockspec bash -c 'cd resty && luarocks lint resty-shared-session-*.rockspec'

echo "== busted (Lua unit specs)"
(cd resty && busted --lua=luajit -o json) >"$RESULTS/busted.json" 2>"$RESULTS/busted.err"
node -e '
  const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
  for (const f of [...r.failures, ...r.errors]) console.log("   FAIL", f.name, "\n", f.message || f.trace?.message || "");
  console.log(`   ${r.successes.length} passed, ${r.failures.length + r.errors.length} failed`);
' "$RESULTS/busted.json" 2>/dev/null || { echo "   busted did not run:"; cat "$RESULTS/busted.err"; }

echo "== jest"
npx jest --ci --json --outputFile="$RESULTS/jest.json" "$@"

node scripts/test-totals.js "$RESULTS"

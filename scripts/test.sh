#!/usr/bin/env bash
# `npm test`: installs what is missing, builds, and runs every suite: static
# checks (tsc, eslint, prettier, luacheck, `luarocks lint`, `npm publish
# --dry-run`), Lua unit specs
# (busted), and jest (library unit and integration, the pack test, the
# nginx/Lua specs against a real nginx and redis-server, end to end,
# reliability) on the machine's Node, then part of it again on Node 24. Ends
# with one line of totals over all of them.
set -uo pipefail
cd "$(dirname "$0")/.."
RESULTS=.run/test-results
rm -rf "$RESULTS" && mkdir -p "$RESULTS"

bash scripts/install.sh || { echo "install failed"; echo "0 passed, 1 failed"; exit 1; }

check() { # name, command...: a check that counts as one test; its output is printed by report
  local name=$1; shift
  if "$@" >"$RESULTS/$name.log" 2>&1; then echo "ok" >"$RESULTS/$name.check"; else echo "failed" >"$RESULTS/$name.check"; fi
}
report() { # name...: prints each check's result (its output when it failed), in order
  for name in "$@"; do
    echo "== $name"
    if [ "$(cat "$RESULTS/$name.check" 2>/dev/null)" = ok ]; then echo "   ok"; else cat "$RESULTS/$name.log"; fi
  done
}

check build npm run build --silent
report build
# The static checks and the Lua unit specs read the sources and the build, and write nothing there: they run side
# by side (the machine's two cores), and print in order.
check typecheck npx tsc --noEmit -p tsconfig.json &
check lint npx eslint . &
check format npx prettier --check . &
check luacheck bash -c 'cd resty && luacheck --no-color .' &
check rockspec bash -c 'cd resty && luarocks lint resty-shared-session-*.rockspec' &
# What `npm publish` would do: the file list and the metadata; any warning but the login one fails it. Its
# prepack (the library's `npm run build`) is the build check above, so it is not run twice.
check publish-dry-run bash -c 'cd libs/shared-session && out=$(npm publish --dry-run --ignore-scripts 2>&1); status=$?; echo "$out"
  [ $status = 0 ] && ! grep -v "requires you to be logged in" <<<"$out" | grep -qi "npm warn"' &
(cd resty && busted --lua=luajit -o json) >"$RESULTS/busted.json" 2>"$RESULTS/busted.err" &
wait
report typecheck lint format luacheck rockspec publish-dry-run

echo "== busted (Lua unit specs)"
node -e '
  const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
  for (const f of [...r.failures, ...r.errors]) console.log("   FAIL", f.name, "\n", f.message || f.trace?.message || "");
  console.log(`   ${r.successes.length} passed, ${r.failures.length + r.errors.length} failed`);
' "$RESULTS/busted.json" 2>/dev/null || { echo "   busted did not run:"; cat "$RESULTS/busted.err"; }

echo "== jest (Node $(node --version))"
# No --forceExit: jest must end by itself. On a 2-core machine it runs every
# suite in one process, so a handle one spec leaves open (a client, a server,
# a timer) keeps it alive after the run: that spec is the bug to fix.
# A hang is still bounded: past 25 minutes jest is stopped and counted as a
# failure (its results, written before it waits on handles, still count).
exits() { # name, command...: runs it under a 25-minute limit; a hang is one failed test
  local name=$1; shift
  timeout -k 10 1500 "$@"
  if [ $? = 124 ]; then echo "   $name did not end within 25 minutes (a leaked handle?)"; echo failed >"$RESULTS/$name-exit.check"; fi
}
exits jest npx jest --ci --json --outputFile="$RESULTS/jest.json" "$@"

# Node 24 (scripts/install.sh puts it in .tools/): the library's specs, the demo
# end to end, and the app's memory checks again. The pack test is not repeated:
# it runs the packed library on every Node itself; nor are the layout migration
# and the Redis Cluster and TLS/ACL specs (about 85 s: they exercise Redis and
# ioredis, not Node). The soak runs 10 s there (30 s on the first run): Node 24's memory over the same
# traffic, not a second soak.
NODE24=.tools/node24/bin/node
echo "== jest (Node $("$NODE24" --version)): library specs, the demo end to end, memory"
SOAK_SECONDS=10 exits jest-node24 "$NODE24" node_modules/jest/bin/jest.js --ci --json --outputFile="$RESULTS/jest-node24.json" \
  --selectProjects unit e2e reliability --testPathIgnorePatterns 'pack\.spec' 'cli-migrate-layout\.spec' 'redis-cluster\.spec' 'redis-tls-acl\.spec' \
  --testPathPatterns "^$PWD/(libs|apps|protocol|stack)/" "^$PWD/e2e/demo-stack" "^$PWD/reliability/(soak|oversized-requests)"
[ -f "$RESULTS/jest-node24.json" ] || { echo "   jest did not run on Node 24"; echo failed >"$RESULTS/jest-node24.check"; }

node scripts/test-totals.js "$RESULTS"

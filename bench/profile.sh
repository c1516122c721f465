#!/usr/bin/env bash
# Profiles the Nest side's guarded route (scenario f of `npm run bench`: the
# minimal app of bench/nest-app.ts, built from the package README's example)
# with `node --cpu-prof`: Redis and the app on CPU 0, wrk on CPU 1, 8 s of
# load with one logged-in session, then the top self-time functions of the
# steady state (the first 2.5 s, start-up included, left out). Needs a build
# (`npm run build && npx tsc -p bench/tsconfig.json`).
# Usage: bash bench/profile.sh [output folder]; PROFILE_APP=plain profiles
# (g)'s app instead (bench/plain-app.ts: express-session + connect-redis 7).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-.run/profile}
rm -rf "$OUT" && mkdir -p "$OUT"
free_port() { node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'; }
RP=$(free_port)
AP=$(free_port)
taskset -c 0 redis-server --port "$RP" --bind 127.0.0.1 --save '' --appendonly no >"$OUT/redis.log" 2>&1 &
RPID=$!
SESSION_SECRET=bench-secret CACHE_SECONDS=3600 NODE_ENV=production APP_PORT=$AP REDIS_URL=redis://127.0.0.1:$RP \
  taskset -c 0 node --cpu-prof --cpu-prof-dir="$OUT" "bench/dist/bench/${PROFILE_APP:-nest}-app.js" >"$OUT/app.log" 2>&1 &
APID=$!
trap 'kill "$APID" "$RPID" 2>/dev/null || true' EXIT
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$AP/app/healthz" && break; sleep 0.1; done
COOKIE=$(curl -s -i -X POST "http://127.0.0.1:$AP/app/login" |
  tr -d '\r' | sed -n 's/^[Ss]et-[Cc]ookie: \(\(session\|connect\.sid\)=[^;]*\).*/\1/p')
taskset -c 1 wrk -t1 -c32 -d8s -H "Cookie: $COOKIE" "http://127.0.0.1:$AP/app/api/v1/group/one/cacheable/bench" |
  grep -E 'Requests/sec|Non-2xx'
kill -INT "$APID" && wait "$APID" || true
node - "$OUT"/*.cpuprofile <<'JS'
const p = JSON.parse(require('fs').readFileSync(process.argv[2], 'utf8'));
const byId = new Map(p.nodes.map((n) => [n.id, n]));
const self = new Map();
const byPlace = new Map();
let t = 0, busy = 0;
p.samples.forEach((id, i) => {
  const d = p.timeDeltas[i] || 0;
  t += d;
  const f = byId.get(id).callFrame;
  if (t < 2.5e6 || f.functionName === '(idle)') return;
  busy += d;
  const key = `${f.functionName || '(anonymous)'} ${f.url.replace(/^.*node_modules\//, '').replace(/^.*\/(libs|apps)\//, '$1/')}:${f.lineNumber + 1}`;
  self.set(key, (self.get(key) || 0) + d);
  // The same by where the code lives: a package, this library, or Node itself.
  const where = /node_modules\/((@[^/]+\/)?[^/]+)/.exec(f.url)?.[1] ?? (/libs\/shared-session/.test(f.url) ? 'this library' : f.url ? 'node:' + f.url.replace(/^node:/, '').split('/')[0] : '(native, GC)');
  byPlace.set(where, (byPlace.get(where) || 0) + d);
});
for (const [k, v] of [...self].sort((a, b) => b[1] - a[1]).slice(0, 20)) console.log(`${((100 * v) / busy).toFixed(1).padStart(5)}%  ${k}`);
console.log('by place:');
for (const [k, v] of [...byPlace].sort((a, b) => b[1] - a[1]).slice(0, 12)) console.log(`${((100 * v) / busy).toFixed(1).padStart(5)}%  ${k}`);
JS

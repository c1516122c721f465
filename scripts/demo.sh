#!/usr/bin/env bash
# `npm run demo`: install what is missing, build, and run the stack.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
npm run build --silent
exec node stack/dist/stack/demo.js

#!/usr/bin/env bash
# Idempotent set-up, run by `npm test` and `npm run bench:kernel` before anything else:
# libtorch (+ an optimised BLAS) through apt when missing, node modules, the native addon and
# the TypeScript build. Each step is skipped quickly when it is already up to date.
set -euo pipefail
cd "$(dirname "$0")/.."
log() { echo "[edpo setup] $*" >&2; }

apt_install() {
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    log "missing system packages: $*"
    log "install them (Debian/Ubuntu: sudo apt-get install $*), or point LIBTORCH=/path/to/libtorch"
    log "(the folder with include/ and lib/) or Torch_DIR=/path/to/share/cmake/Torch at another libtorch."
    exit 1
  fi
  log "apt-get install $*"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# 1. libtorch. Debian's build links the reference BLAS unless OpenBLAS takes over the
#    alternative (about 14x slower matmuls measured on a 2-core Xeon), so the two come together.
if ! node scripts/torch-paths.js check >/dev/null 2>&1; then
  apt_install libtorch-dev libgloo-dev libopenblas0-pthread ccache
fi
if [ -z "${LIBTORCH:-}${Torch_DIR:-}" ] && command -v dpkg-query >/dev/null 2>&1 \
   && ! dpkg-query -W -f='${Status}' libopenblas0-pthread 2>/dev/null | grep -q "ok installed"; then
  apt_install libopenblas0-pthread
fi
# c10d's ProcessGroupGloo.hpp (data-parallel training, csrc/dist/) includes Gloo's headers, which
# Debian ships apart from libtorch-dev (a PyTorch libtorch download has them under include/).
if [ -z "${LIBTORCH:-}${Torch_DIR:-}" ] && command -v dpkg-query >/dev/null 2>&1 \
   && ! dpkg-query -W -f='${Status}' libgloo-dev 2>/dev/null | grep -q "ok installed"; then
  apt_install libgloo-dev
fi

# 2. Node modules (install scripts off: the addon is built below, with the right compiler).
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  log "npm ci"
  npm ci --ignore-scripts --no-audit --no-fund >/dev/null
fi

# 3. Native addon (node-gyp, CPU). A CUDA build (npm run build:cuda) is kept as it is; a fresh
#    prebuild (npm run prebuildify moves the build there) counts as built.
addon=build/Release/edpo.node
[ -f "$addon" ] || [ ! -f prebuilds/linux-x64/edpo.node ] || addon=prebuilds/linux-x64/edpo.node
if [ ! -f "$addon" ] || [ -n "$(find csrc binding.gyp scripts/torch-paths.js -newer "$addon" -print -quit)" ]; then
  if [ -f build/CMakeCache.txt ] && [ -f "$addon" ]; then
    log "csrc changed since the cmake-js build; rebuilding with cmake-js"
    npx cmake-js build >/dev/null
  else
    log "building the native addon ($(node scripts/torch-paths.js check))"
    if command -v ccache >/dev/null 2>&1; then export CXX="ccache ${CXX:-g++}"; fi
    npx node-gyp rebuild -j "$(nproc)" >/tmp/edpo-node-gyp.log 2>&1 || { tail -40 /tmp/edpo-node-gyp.log; exit 1; }
  fi
fi

# 4. TypeScript.
if [ ! -f dist/lib/index.js ] || [ -n "$(find lib bench tsconfig.json -name '*.ts' -newer dist/lib/index.js -print -quit 2>/dev/null)" ] \
   || [ tsconfig.json -nt dist/lib/index.js ]; then
  log "tsc"
  npx tsc -p tsconfig.json
fi

#!/usr/bin/env bash
# On the GPU machine (no Node, no registry): unpacks what scripts/device-bundle.sh packed into
# .device/ and builds the addon with cmake against that machine's PyTorch libtorch, CUDA on.
#   bash bench/gpu/node-build.sh          → build/Release/edpo.node, node at /tmp/edpo-node/bin/node
# EDPO_PREBUILT=1 installs .device/prebuilt/edpo.node (an earlier run's build) instead of building.
# EDPO_CUDA=0 builds the CPU addon instead (a dry run on a machine without a GPU). A failed
# compile keeps going (ninja -k 0), so one run shows every error. Log: $OUT/node-build.log.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
B="$ROOT/.device"
OUT="${OUT:-/tmp/edpo-gpu-out}"
mkdir -p "$OUT"
LOG="$OUT/node-build.log"
PY="${PYTHON:-python3}"
[[ -f "$B/node.xz" ]] || { echo "node-build: $B/node.xz missing: run scripts/device-bundle.sh here and carry .device" >&2; exit 2; }

# Node: xz through python's lzma (the machine may have no xz).
mkdir -p /tmp/edpo-node/bin
"$PY" -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' "$B/node.xz" /tmp/edpo-node/bin/node
chmod +x /tmp/edpo-node/bin/node
export PATH="/tmp/edpo-node/bin:$PATH"
# node_modules as a link; dist as a copy, since the benches find bench/*.py from their real path.
[[ -e "$ROOT/node_modules" ]] || ln -s "$B/node_modules" "$ROOT/node_modules"
[[ -e "$ROOT/dist" ]] || cp -r "$B/dist" "$ROOT/dist"
echo "node-build: node $(node -p process.version)" | tee "$LOG"

if [[ -n "${EDPO_PREBUILT:-}" ]]; then
  # The addon an earlier run on this kind of machine built (session.sh returns it stripped).
  mkdir -p "$ROOT/build/Release"
  cp "$B/prebuilt/edpo.node" "$ROOT/build/Release/edpo.node" || exit 2
  node -e "const r = require('./dist/lib/index.js').runtime(); console.log('node-build: loaded the prebuilt addon', JSON.stringify(r))" 2>&1 | tee -a "$LOG"
  exit "${PIPESTATUS[0]}"
fi

cuda="${EDPO_CUDA:-1}"
cmake_args=(-S "$ROOT" -B /tmp/edpo-cmake -G Ninja -DCMAKE_BUILD_TYPE=Release
            "-DCMAKE_JS_INC=$B/node-include" "-DCMAKE_LIBRARY_OUTPUT_DIRECTORY=$ROOT/build/Release")
if [[ "$cuda" == "1" ]]; then
  prefix="$("$PY" -c 'import torch; print(torch.utils.cmake_prefix_path)')"
  cmake_args+=("-DCMAKE_PREFIX_PATH=$prefix")
  # CMakeLists.txt finds nccl.h in the nvidia-nccl wheel; Gloo's headers (pip's torch has none):
  # Debian's, carried, where the machine has none of its own.
  [[ -f /usr/include/gloo/config.h ]] || export EDPO_GLOO_INCLUDE="$B/gloo-include"
  export EDPO_CUDA=1 EDPO_CUDA_ARCHS="${EDPO_CUDA_ARCHS:-90a}" TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0a}"
  export EDPO_CXX_STANDARD="${EDPO_CXX_STANDARD:-$(cd "$ROOT/bench/gpu" && "$PY" -c 'from check import cxx_standard; print(cxx_standard().replace("c++", ""))')}"
  echo "node-build: torch $prefix; C++$EDPO_CXX_STANDARD; arch $EDPO_CUDA_ARCHS; gloo headers ${EDPO_GLOO_INCLUDE:-/usr/include}" | tee -a "$LOG"
else
  export EDPO_CUDA=0
fi
start=$SECONDS
cmake "${cmake_args[@]}" >>"$LOG" 2>&1 || {
  tail -n 60 "$LOG"; echo "node-build: cmake configure failed" >&2; exit 2; }
ninja -C /tmp/edpo-cmake -k 0 -j "${JOBS:-$(nproc)}" >>"$LOG" 2>&1
status=$?
echo "node-build: ninja exited $status after $((SECONDS - start)) s" | tee -a "$LOG"
if [[ $status -ne 0 ]]; then
  grep -E "error|Error" "$LOG" | head -n 80
  exit 2
fi
node -e "const r = require('./dist/lib/index.js').runtime(); console.log('node-build: loaded', JSON.stringify(r))" 2>&1 | tee -a "$LOG"
exit "${PIPESTATUS[0]}"

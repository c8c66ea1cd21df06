#!/usr/bin/env bash
# Compile-only check of every CUDA source (csrc/ops/cuda/*.cu, bench/gpu/*.cu) for sm_80 and sm_90a.
# Needs nvcc but no GPU and no CUDA libraries beyond the runtime headers, so CI can run it.
# Objects go to build/cuda-check/. Usage: bash scripts/compile-cuda.sh   (from any directory)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

NVCC=""
for candidate in "${CUDA_HOME:+$CUDA_HOME/bin/nvcc}" /usr/local/cuda/bin/nvcc "$(command -v nvcc 2>/dev/null || true)"; do
  if [[ -n "$candidate" && -x "$candidate" ]]; then
    NVCC="$candidate"
    break
  fi
done
if [[ -z "$NVCC" ]]; then
  echo "compile-cuda: nvcc not found (looked at \$CUDA_HOME/bin/nvcc, /usr/local/cuda/bin/nvcc, PATH)." >&2
  echo "compile-cuda: install the CUDA toolkit or set CUDA_HOME." >&2
  exit 1
fi

OUT_DIR="build/cuda-check"
mkdir -p "$OUT_DIR"

# --threads 0: nvcc builds the two targets of each file in parallel.
FLAGS=(-O3 -std=c++17 -Xcompiler -Wall --threads 0
       -gencode arch=compute_80,code=sm_80
       -gencode arch=compute_90a,code=sm_90a)

shopt -s nullglob
SOURCES=(csrc/ops/cuda/*.cu bench/gpu/*.cu)
shopt -u nullglob
if [[ ${#SOURCES[@]} -eq 0 ]]; then
  echo "compile-cuda: no .cu files under cuda/ or bench/gpu/" >&2
  exit 1
fi

echo "compile-cuda: $("$NVCC" --version | tail -n 2 | head -n 1) ($NVCC)"
start_all=$SECONDS
count=0
for src in "${SOURCES[@]}"; do
  obj="$OUT_DIR/$(echo "${src%.cu}" | tr '/' '_').o"
  start=$SECONDS
  if ! "$NVCC" "${FLAGS[@]}" -c "$src" -o "$obj"; then
    echo "compile-cuda: FAILED $src" >&2
    exit 1
  fi
  echo "compile-cuda: ok $src -> $obj ($((SECONDS - start)) s)"
  count=$((count + 1))
done
echo "compile-cuda: $count file(s) compiled for sm_80 and sm_90a in $((SECONDS - start_all)) s"

# The CUDA backend's C++ glue (csrc/ops/cuda/cuda_backend.cc, optimizer_cuda.cc) is only built by CUDA builds;
# a syntax check against the CPU libtorch's headers (which ship c10/cuda but not its generated
# cmake macros header, supplied here) keeps it from rotting between GPU runs.
TORCH_INC="$(node scripts/torch-paths.js include 2>/dev/null || true)"
if [[ -n "$TORCH_INC" || -d /usr/include/torch ]]; then
  SHIM="$OUT_DIR/shim/c10/cuda/impl"
  mkdir -p "$SHIM"
  [[ -f "$SHIM/cuda_cmake_macros.h" ]] || echo '#define C10_CUDA_BUILD_SHARED_LIBS' > "$SHIM/cuda_cmake_macros.h"
  inc=(-I"$OUT_DIR/shim" -I"$(dirname "$(dirname "$NVCC")")/include")
  for d in $TORCH_INC; do inc+=(-I"$d"); done
  for f in csrc/ops/cuda/cuda_backend.cc csrc/ops/cuda/optimizer_cuda.cc; do
    start=$SECONDS
    if ! g++ -std=c++17 -fsyntax-only -Wall -DEDPO_WITH_CUDA "${inc[@]}" "$f"; then
      echo "compile-cuda: FAILED syntax check of $f" >&2
      exit 1
    fi
    echo "compile-cuda: ok $f (syntax check against CPU libtorch headers, $((SECONDS - start)) s)"
  done
  # The NCCL process group (csrc/dist/process_group.cc) is compiled only by CUDA builds; its c10d
  # header needs nccl.h, which the CUDA toolkit does not always ship.
  if echo '#include <nccl.h>' | g++ -x c++ -fsyntax-only "${inc[@]}" - 2>/dev/null; then
    start=$SECONDS
    if ! g++ -std=c++17 -fsyntax-only -Wall -DEDPO_WITH_CUDA -DUSE_C10D_NCCL -DUSE_C10D_GLOO "${inc[@]}" -Icsrc csrc/dist/process_group.cc; then
      echo "compile-cuda: FAILED syntax check of csrc/dist/process_group.cc (NCCL)" >&2
      exit 1
    fi
    echo "compile-cuda: ok csrc/dist/process_group.cc with NCCL (syntax check, $((SECONDS - start)) s)"
  else
    echo "compile-cuda: nccl.h not found; skipped the NCCL syntax check of csrc/dist/process_group.cc"
  fi
else
  echo "compile-cuda: libtorch headers not found; skipped the syntax check of csrc/ops/cuda/cuda_backend.cc"
fi

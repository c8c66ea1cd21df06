#!/usr/bin/env bash
# Build bench/gpu/kernel_check.cu with csrc/ops/cuda/epsilon_dpo_kernels.cu and run it on this machine's GPU:
# correctness against an fp64 reference, then timing. Then, if compute-sanitizer is installed, a small
# configuration under memcheck and racecheck. Needs a GPU, nvcc and the CUDA runtime only (no torch).
#
#   bash bench/gpu/run_kernels.sh [kernel_check args, e.g. --no-timing]
#
# Results: $OUT/kernel_check.json and $OUT/kernel_check.log when OUT is set, else ./kernel_check.json.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"

NVCC=""
for candidate in "${CUDA_HOME:+$CUDA_HOME/bin/nvcc}" /usr/local/cuda/bin/nvcc "$(command -v nvcc 2>/dev/null || true)"; do
  if [[ -n "$candidate" && -x "$candidate" ]]; then
    NVCC="$candidate"
    break
  fi
done
if [[ -z "$NVCC" ]]; then
  echo "run_kernels: nvcc not found (looked at \$CUDA_HOME/bin/nvcc, /usr/local/cuda/bin/nvcc, PATH)" >&2
  exit 1
fi
CUDA_BIN="$(dirname "$NVCC")"

# Target the GPU that is here: sm_90a on Hopper, sm_XY elsewhere; -arch=native if the query fails.
ARCH_FLAGS=(-arch=native)
if command -v nvidia-smi >/dev/null 2>&1; then
  cap="$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -n 1 | tr -d ' .' || true)"
  if [[ "$cap" =~ ^[0-9]+$ ]]; then
    if [[ "$cap" == "90" ]]; then
      ARCH_FLAGS=(-gencode "arch=compute_90a,code=sm_90a")
    else
      ARCH_FLAGS=(-gencode "arch=compute_${cap},code=sm_${cap}")
    fi
  fi
fi

BUILD_DIR="build/gpu-bench"
BIN="$BUILD_DIR/kernel_check"
mkdir -p "$BUILD_DIR"
echo "run_kernels: building $BIN with $NVCC ${ARCH_FLAGS[*]}"
start=$SECONDS
"$NVCC" -O3 -std=c++17 -Xcompiler -Wall -lineinfo "${ARCH_FLAGS[@]}" \
  csrc/ops/cuda/epsilon_dpo_kernels.cu bench/gpu/kernel_check.cu -o "$BIN"
echo "run_kernels: built in $((SECONDS - start)) s"

LOG=/dev/null
if [[ -n "${OUT:-}" ]]; then
  mkdir -p "$OUT"
  LOG="$OUT/kernel_check.log"
fi

status=0
"$BIN" "$@" 2>&1 | tee "$LOG" || status=$?

SANITIZER=""
for candidate in "$CUDA_BIN/compute-sanitizer" "$(command -v compute-sanitizer 2>/dev/null || true)"; do
  if [[ -n "$candidate" && -x "$candidate" ]]; then
    SANITIZER="$candidate"
    break
  fi
done
if [[ -n "$SANITIZER" ]]; then
  # The quick run writes its own JSON; keep it away from the main one.
  scratch="$(mktemp -d)"
  for tool in memcheck racecheck; do
    echo "run_kernels: compute-sanitizer --tool $tool (quick configuration)"
    if ! OUT="$scratch" "$SANITIZER" --tool "$tool" --error-exitcode 3 "$BIN" --quick 2>&1 | tail -n 25; then
      echo "run_kernels: compute-sanitizer $tool FAILED" >&2
      [[ $status -ne 0 ]] || status=3
    fi
  done
  rm -rf "$scratch"
else
  echo "run_kernels: compute-sanitizer not found; skipped"
fi

if [[ $status -eq 0 ]]; then
  echo "run_kernels: all checks passed"
else
  echo "run_kernels: FAILED (status $status)" >&2
fi
exit "$status"

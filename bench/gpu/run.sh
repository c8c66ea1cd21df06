#!/usr/bin/env bash
# One command for a GPU session (issue 6, section 2): builds the ε-DPO op (csrc/ops + cuda/) into a
# PyTorch extension with torch.utils.cpp_extension (JIT, ninja), checks it against the CPU op and a
# float64 reference, times it against the eager composition, torch.compile and a device copy, and
# measures the chunked path's memory. See bench/gpu/README.md.
#
#   OUT=/tmp/out bash bench/gpu/run.sh [--no-kernel-check] [--cpu-only] [check.py options...]
#
# Needs python3 with torch (CUDA build), nvcc and ninja; no Node, no network. Results:
# $OUT/results.json, $OUT/run.log, $OUT/build.ninja (and build_error.log when the build fails).
# On a GPU it also runs bench/gpu/run_kernels.sh (the raw kernels, no torch, and compute-sanitizer)
# unless --no-kernel-check. Exit status: 0 all passed; 1 a correctness check failed (check.py or
# the raw kernels); 2 only a timing section raised; 3 the build failed.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"

export OUT="${OUT:-/tmp/edpo-gpu-out}"
mkdir -p "$OUT"
export MAX_JOBS="${MAX_JOBS:-16}"
export PYTHONDONTWRITEBYTECODE=1
PY="${PYTHON:-python3}"

with_kernel_check=1
args=()
for arg in "$@"; do
  case "$arg" in
    --no-kernel-check) with_kernel_check=0 ;;
    --cpu-only) with_kernel_check=0; args+=("$arg") ;;
    *) args+=("$arg") ;;
  esac
done
"$PY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null || with_kernel_check=0

# cpp_extension finds nvcc through CUDA_HOME, else PATH, else /usr/local/cuda.
if [[ -z "${CUDA_HOME:-}" ]] && ! command -v nvcc >/dev/null 2>&1 && [[ -x /usr/local/cuda/bin/nvcc ]]; then
  export CUDA_HOME=/usr/local/cuda
  export PATH="/usr/local/cuda/bin:$PATH"
fi

{
  echo "run.sh: $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(uname -n); OUT=$OUT MAX_JOBS=$MAX_JOBS python=$(command -v "$PY")"
  "$PY" -c 'import torch, sys; print("run.sh: python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())' || true
  command -v nvcc >/dev/null 2>&1 && nvcc --version | tail -n 1
  command -v ninja >/dev/null 2>&1 && echo "run.sh: ninja $(ninja --version)" || echo "run.sh: ninja not on PATH (cpp_extension needs it)"
  command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
} 2>&1 | tee "$OUT/run.log"

start=$SECONDS
"$PY" "$ROOT/bench/gpu/check.py" --out "$OUT" ${args[@]+"${args[@]}"} 2>&1 | tee -a "$OUT/run.log"
status=${PIPESTATUS[0]}
echo "run.sh: check.py exited $status after $((SECONDS - start)) s" | tee -a "$OUT/run.log"

if [[ $with_kernel_check -eq 1 ]]; then
  echo "run.sh: bench/gpu/run_kernels.sh" | tee -a "$OUT/run.log"
  bash "$ROOT/bench/gpu/run_kernels.sh" 2>&1 | tee -a "$OUT/run.log"
  kstatus=${PIPESTATUS[0]}
  echo "run.sh: run_kernels.sh exited $kstatus" | tee -a "$OUT/run.log"
  # A raw-kernel failure (wrong values, a sanitizer finding, a failed build) is a correctness failure.
  if [[ $kstatus -ne 0 && ( $status -eq 0 || $status -eq 2 ) ]]; then status=1; fi
  # Print check.py's table again so that it ends the output.
  [[ -f "$OUT/results.json" ]] && "$PY" "$ROOT/bench/gpu/check.py" --print "$OUT/results.json"
fi

echo "run.sh: done in $SECONDS s, status $status; results in $OUT/results.json" | tee -a "$OUT/run.log"
exit "$status"

#!/usr/bin/env bash
# The one command of a GPU session (issue 16). On the GPU machine, from the repository root, with
# .device/ carried (scripts/device-bundle.sh):
#   OUT=... bash bench/gpu/session.sh [stage ...]      (default: every stage, in this order)
# Stages:
#   build    the Node addon with cmake (bench/gpu/node-build.sh) and the PyTorch extension
#            (check.py --build-only), side by side;
#   e2e      bench/gpu/node-e2e.ts: CUDA ops and `edpo train` against the CPU;
#   check    bench/gpu/check.py: correctness, timing, chunked memory, torch.compile;
#   kernels  bench/gpu/run_kernels.sh: the raw kernels, their timing and compute-sanitizer;
#   model    bench:model --device cuda (bf16, against PyTorch eager with SDPA);
#   step     bench:step --device cuda --dtype bfloat16 --only llama3-350m (the whole ε-DPO step
#            against PyTorch eager, on a 357M llama with Llama-3's vocabulary), then one profiled
#            step per engine (--profile): both section tables side by side in step.log, the
#            summaries and Chrome traces in logs.tgz (step-profile/);
#   step-1chunk  the same with --chunk-tokens 8192 on edpo's side (the loss in one chunk);
#   lora8b   bench:step --only llama3-8b-lora: a random Llama-3-8B (written on the device), bf16, LoRA
#            r = 16 on every projection, gradient checkpointing, 2 pairs x 1024 tokens, 5 steps per
#            engine against PyTorch eager with the same LoRA; its peak device memory against
#            `edpo plan --device cuda` (issue 26, item 3).
# The e2e stage holds node-e2e's dist section: one rank through the launcher at ZeRO 0-3 on NCCL.
# Every stage is bounded: EDPO_SESSION_S (default 540) is the whole run's budget, and a stage that
# would start with too little left is skipped and says so. The summary is printed last; $OUT keeps
# results.json, node-e2e.json, kernel_check.json, machine.txt, edpo.node and logs.tgz (every log).
# Exit status: 0 when every stage passed, else 1.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
export OUT="${OUT:-/tmp/edpo-gpu-out}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
export EDPO_BENCH_PYTHON="${EDPO_BENCH_PYTHON:-$(command -v python3)}"
export PATH="/tmp/edpo-node/bin:$PATH"
BUDGET="${EDPO_SESSION_S:-540}"
stages=("$@")
[[ ${#stages[@]} -gt 0 ]] || stages=(build e2e check kernels model step step-1chunk lora8b)
declare -A result rcs

wants() { local s; for s in "${stages[@]}"; do [[ "$s" == "$1" ]] && return 0; done; return 1; }
left() { echo $((BUDGET - SECONDS)); }
# run_stage NAME MIN_SECONDS MAX_SECONDS command...: skipped when fewer than MIN_SECONDS are left.
run_stage() {
  local name=$1 min=$2 max=$3
  shift 3
  wants "$name" || return 0
  local l
  l=$(left)
  if ((l < min)); then
    result[$name]="skipped (${l} s left, needs ${min})"
    rcs[$name]=skipped
    echo "=== $name: skipped, ${l} s left"
    return 0
  fi
  ((max < l)) || max=$l
  echo "=== $name (at ${SECONDS} s, limit ${max} s): $*"
  local t0=$SECONDS
  timeout --kill-after=10 "$max" "$@" >"$OUT/$name.log" 2>&1
  local rc=$?
  tail -n 40 "$OUT/$name.log"
  result[$name]="exit $rc after $((SECONDS - t0)) s"
  rcs[$name]=$rc
  echo "=== $name: ${result[$name]}"
}

{
  echo "session: $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(uname -n), stages: ${stages[*]}, budget ${BUDGET} s"
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm,clocks.mem,temperature.gpu,power.draw --format=csv 2>&1
  python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)'
  nvcc --version | tail -n 1
  nproc
} 2>&1 | tee "$OUT/machine.txt"

if wants build; then
  echo "=== build (at ${SECONDS} s)"
  t0=$SECONDS
  # EDPO_PREBUILT=1: the addon of an earlier session run (.device/prebuilt/edpo.node), no rebuild.
  JOBS=10 timeout 400 bash bench/gpu/node-build.sh >"$OUT/node-build.out" 2>&1 &
  node_pid=$!
  ext_rc=0
  if wants check; then
    MAX_JOBS=6 timeout 400 python3 bench/gpu/check.py --out "$OUT" --build-only >"$OUT/ext-build.log" 2>&1
    ext_rc=$?
  fi
  wait $node_pid
  node_rc=$?
  tail -n 30 "$OUT/node-build.out"
  [[ -f "$OUT/ext-build.log" ]] && tail -n 8 "$OUT/ext-build.log"
  # The built addon comes back (stripped) so that a second run can skip the build.
  [[ $node_rc -ne 0 || -n "${EDPO_PREBUILT:-}" ]] || { strip -o "$OUT/edpo.node" build/Release/edpo.node || cp build/Release/edpo.node "$OUT/"; }
  result[build]="node addon exit $node_rc, torch extension exit $ext_rc, $((SECONDS - t0)) s"
  rcs[build]=$((node_rc > ext_rc ? node_rc : ext_rc))
  echo "=== build: ${result[build]}"
fi

# The stages, most needed first; MIN is what a stage needs to say anything useful.
run_stage e2e 60 300 node dist/bench/gpu/node-e2e.js
run_stage check 90 240 python3 bench/gpu/check.py --out "$OUT" --budget-s 170
run_stage kernels 45 120 bash bench/gpu/run_kernels.sh
run_stage model 60 120 env EDPO_BENCH_ROUNDS=2 node dist/bench/model.js --device cuda
# --profile: one more step per engine, profiled: the sections side by side in step.log, traces in logs.tgz.
run_stage step 90 200 env EDPO_BENCH_ROUNDS=2 node dist/bench/step.js --device cuda --dtype bfloat16 --only llama3-350m --profile "$OUT/step-profile"
# The same step with the loss over all completion tokens in one chunk: what chunking costs on a GPU.
run_stage step-1chunk 60 150 env EDPO_BENCH_ROUNDS=1 'EDPO_BENCH_STEP_CONFIG={"chunkTokens":8192}' \
  node dist/bench/step.js --device cuda --dtype bfloat16 --only llama3-350m
# The 8B leg: writing the 16 GB fixture on the device, then each engine loads it and trains.
run_stage lora8b 150 360 env EDPO_BENCH_ROUNDS=1 node dist/bench/step.js --device cuda --dtype bfloat16 --only llama3-8b-lora

echo
echo "=== summary (${SECONDS} s)"
status=0
for s in "${stages[@]}"; do
  echo "$s: ${result[$s]:-not run}"
  [[ "${rcs[$s]:-}" == 0 ]] || status=1
done
[[ -f "$OUT/results.json" ]] && python3 bench/gpu/check.py --print "$OUT/results.json" 2>/dev/null | tail -n 45
grep -h "tokens/s = \|peak memory:\|first-step\|FAIL\|ERROR" "$OUT"/model.log "$OUT"/step.log "$OUT"/step-1chunk.log "$OUT"/lora8b.log "$OUT"/e2e.log 2>/dev/null | head -n 40
# The device tool returns at most 8 files: the JSON results, the addon, and every log in one archive.
(cd "$OUT" && tar czf /tmp/edpo-session-logs.tgz --exclude=logs.tgz --exclude=edpo.node --exclude=results.json \
   --exclude=node-e2e.json --exclude=kernel_check.json --exclude=machine.txt . && \
 mv /tmp/edpo-session-logs.tgz logs.tgz && find . -mindepth 1 -maxdepth 1 ! -name logs.tgz ! -name edpo.node ! -name results.json ! -name node-e2e.json \
   ! -name kernel_check.json ! -name machine.txt -exec rm -rf {} +)
exit $status

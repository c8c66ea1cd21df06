#!/usr/bin/env bash
# The numeric test files again under the settings users' machines differ by: kernels capped at AVX2
# (an AMD EPYC runs the AVX2 build where this CI's Xeon runs AVX-512) and a single libtorch thread
# (other reduction splits). Tolerances must hold under both. Run after `npm test` (which builds).
set -euo pipefail
cd "$(dirname "$0")/.."
numeric=(
  test/epsilon-dpo-reference.test.ts test/epsilon-dpo-gradient.test.ts test/epsilon-dpo-fixed.test.ts
  test/epsilon-dpo-limits.test.ts test/chunked-linear.test.ts test/cpu-isa.test.ts test/tensor.test.ts
  test/adamw.test.ts test/model-reference.test.ts test/model-grad.test.ts test/model-generate.test.ts
  test/gold-eval.test.ts test/train-step-semantics.test.ts test/train-e2e.test.ts test/sft.test.ts
)
echo "[edpo test-variants] EDPO_CPU_ISA=avx2"
EDPO_CPU_ISA=avx2 npx tap "${numeric[@]}"
echo "[edpo test-variants] OMP_NUM_THREADS=1"
OMP_NUM_THREADS=1 npx tap "${numeric[@]}"

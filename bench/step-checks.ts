// What bench:step requires of a round besides its times: both engines' losses finite, and their
// first-step logps/chosen equal within the dtype's rounding (the same weights and batch, and at
// step 1 the same policy: full fine-tuning starts from the weights, LoRA's B = 0 adds nothing).

/** What the checks read of one engine's result. */
export interface CheckedRun {
  engine: string
  first_logps: number | null
  losses: (number | null)[]
}

/**
 * Relative tolerance of the first-step logps/chosen. Each per-token log π is ≤ 0, so the relative
 * difference of their sums is at most the largest per-token relative difference: a bound in the
 * dtype's relative rounding, whatever the number of tokens. fp32 (2^-24 per rounding): the
 * engines' different op orders and fusions stay far under 1e-4 (3e-8 on the 33m CPU twin). bf16:
 * PyTorch keeps the logits and their sums in bf16, as the reference trainer does, so its value is
 * itself one bf16 number, off by up to half a spacing, i.e. up to 2^-8 ≈ 3.9e-3 relative (the 33m
 * twin: edpo -1228.26, PyTorch -1232, 3.0e-3); the rounded hidden states and logits before that
 * add a few bf16 steps per token. 1e-2 leaves room for that on top of the final rounding.
 */
export const FIRST_LOGPS_TOLERANCE: Readonly<Record<'float32' | 'bfloat16', number>> = { float32: 1e-4, bfloat16: 1e-2 }

/** |a - b| / max(|a|, |b|) (0 when both are 0). */
export function relativeDifference(a: number, b: number): number {
  const scale = Math.max(Math.abs(a), Math.abs(b))
  return scale === 0 ? 0 : Math.abs(a - b) / scale
}

/** The problems of one round (empty: it passes), each a line naming the workload and engine. */
export function roundProblems(label: string, dtype: 'float32' | 'bfloat16', ours: CheckedRun, torch: CheckedRun): string[] {
  const problems: string[] = []
  for (const x of [ours, torch]) {
    const bad = x.losses.findIndex((l) => l === null || !Number.isFinite(l))
    if (bad >= 0) problems.push(`${label}: ${x.engine}: the loss of step ${bad + 1} is not finite`)
    if (x.losses.length === 0) problems.push(`${label}: ${x.engine}: reported no losses`)
  }
  const a = ours.first_logps
  const b = torch.first_logps
  if (a === null || b === null || !Number.isFinite(a) || !Number.isFinite(b))
    problems.push(`${label}: first-step logps/chosen not finite (edpo ${a}, PyTorch ${b})`)
  else {
    const rel = relativeDifference(a, b)
    if (rel > FIRST_LOGPS_TOLERANCE[dtype])
      problems.push(
        `${label}: first-step logps/chosen differ: edpo ${a}, PyTorch ${b} (relative ${rel.toExponential(2)} > ${FIRST_LOGPS_TOLERANCE[dtype]} for ${dtype})`,
      )
  }
  return problems
}

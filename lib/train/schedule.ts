// Learning-rate schedules, as transformers' get_*_schedule_with_warmup: the multiplier for
// optimizer step k (0-based) of `total`, after ceil(warmupRatio · total) linear warm-up steps.
export type ScheduleKind = 'cosine' | 'linear' | 'constant'

export function warmupSteps(total: number, warmupRatio: number): number {
  return Math.ceil(total * warmupRatio)
}

export function lrMultiplier(kind: ScheduleKind, step: number, total: number, warmupRatio: number): number {
  const warmup = warmupSteps(total, warmupRatio)
  if (step < warmup) return step / Math.max(1, warmup)
  if (kind === 'constant') return 1
  const progress = (step - warmup) / Math.max(1, total - warmup)
  if (kind === 'linear') return Math.max(0, 1 - progress)
  return Math.max(0, 0.5 * (1 + Math.cos(Math.PI * progress)))
}

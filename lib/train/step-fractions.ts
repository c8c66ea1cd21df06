// Hugging Face's fractional intervals: logging_steps, eval_steps and save_steps below 1 are a
// fraction of the run's optimizer steps, rounded up (as transformers' Trainer does). They become
// whole steps once the run knows its length.
import { z } from 'zod'

/** A whole number of steps ≥ `min`, or a fraction of the run in (0, 1). */
export const stepsOrFraction = (min: number) =>
  z.number().refine((v) => (Number.isInteger(v) && v >= min) || (v > 0 && v < 1), {
    message: `expected a whole number of steps ≥ ${min}, or a fraction of the run's steps in (0, 1)`,
  })

export interface StepIntervals {
  logEvery: number
  evalEvery: number
  saveEvery: number
}

/** Replaces each fractional interval of `config` by ceil(fraction × totalSteps) steps. */
export function applyStepFractions(config: StepIntervals, totalSteps: number): void {
  for (const k of ['logEvery', 'evalEvery', 'saveEvery'] as const) {
    const v = config[k]
    if (v > 0 && v < 1) config[k] = Math.max(1, Math.ceil(v * totalSteps))
  }
}

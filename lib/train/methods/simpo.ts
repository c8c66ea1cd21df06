// SimPO (losses/simpo.ts): reference-free, length-normalised, target margin γ. Its paper's
// setting is --beta 2 with γ = 1 (γ/β = 0.5); --beta's default is every preference method's 0.1.
import { z } from 'zod'

import type { OptionTable } from '../option-table'
import { simpoLoss } from './losses'
import { baselineMethod } from './baseline-specs'

export const SIMPO_OPTIONS = {
  simpoGamma: { schema: z.number().min(0).default(1), kind: 'number', help: 'simpo: γ, the target reward margin (the paper: 1.0 with --beta 2)' },
} satisfies OptionTable

export const SIMPO = baselineMethod({
  title: 'SimPO',
  about: 'SimPO: reference-free, −log σ(β·(mean log-prob margin) − γ) (TRL CPOTrainer loss_type simpo)',
  reference: 'none',
  options: SIMPO_OPTIONS,
  make: (c) => ({ loss: (sums, beta) => simpoLoss(sums, { beta, gamma: c.simpoGamma }), metrics: [] }),
})

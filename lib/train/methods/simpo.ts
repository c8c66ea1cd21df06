// SimPO (losses/simpo.ts): reference-free, length-normalised, target margin γ. Its defaults are
// its paper's setting, β = 2 with γ = 1 (γ/β = 0.5), not TRL's CPOConfig 0.1 and 0.5.
import { z } from 'zod'

import type { OptionTable } from '../option-table'
import { simpoLoss } from './losses'
import { baselineMethod } from './baseline-specs'
import { betaOption } from './preference'
import { Tensor } from '../../core/tensor'

export const SIMPO_OPTIONS = {
  ...betaOption(2, 'simpo: β, the reward scale (the paper: 2.0; TRL\u2019s CPOConfig default is 0.1)'),
  simpoGamma: { schema: z.number().min(0).default(1), kind: 'number', help: 'simpo: γ, the target reward margin (the paper: 1.0 with --beta 2)' },
} satisfies OptionTable

export const SIMPO = baselineMethod({
  title: 'SimPO',
  about: 'SimPO: reference-free, −log σ(β·(mean log-prob margin) − γ) (TRL CPOTrainer loss_type simpo)',
  reference: 'none',
  options: SIMPO_OPTIONS,
  make: (c) => ({ loss: (sums, beta) => Tensor.tidy(() => simpoLoss(sums, { beta, gamma: c.simpoGamma })), metrics: [] }),
})

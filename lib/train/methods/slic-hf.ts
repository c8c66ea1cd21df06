// SLiC-HF (losses/slic-hf.ts): reference-free hinge max(0, 1 − β·(S_w − S_l)) (margin δ = 1/β)
// plus λ·NLL of the chosen. `--method hinge` (TRL's loss_type name) is the same method.
import { z } from 'zod'

import type { OptionTable } from '../option-table'
import { slicHfLoss } from './losses'
import { baselineMethod } from './baseline-specs'
import { BETA_OPTIONS } from './preference'
import { Tensor } from '../../core/tensor'

export const SLIC_HF_OPTIONS = {
  ...BETA_OPTIONS,
  slicLambda: { schema: z.number().min(0).default(0.1), kind: 'number', help: 'slic-hf: λ, the weight of the chosen completions\u2019 NLL' },
} satisfies OptionTable

export const SLIC_HF = baselineMethod({
  title: 'SLiC-HF',
  about: 'SLiC-HF: reference-free hinge max(0, 1 − β·(S_w − S_l)) plus λ·NLL of the chosen (TRL loss_type hinge, reference-free)',
  reference: 'none',
  options: SLIC_HF_OPTIONS,
  make: (c) => ({ loss: (sums, beta) => Tensor.tidy(() => slicHfLoss(sums, { beta, lambda: c.slicLambda })), metrics: ['nll_loss'], chosenNll: true }),
})

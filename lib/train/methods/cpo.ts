// CPO (losses/cpo.ts): reference-free sigmoid loss on summed log-probs plus λ·NLL of the chosen.
import { z } from 'zod'

import type { OptionTable } from '../option-table'
import { cpoLoss } from './losses'
import { baselineMethod } from './baseline-specs'
import { BETA_OPTIONS } from './preference'
import { Tensor } from '../../core/tensor'

export const CPO_OPTIONS = {
  ...BETA_OPTIONS,
  cpoAlpha: { schema: z.number().min(0).default(1), kind: 'number', help: 'cpo: λ, the weight of the chosen completions\u2019 NLL' },
} satisfies OptionTable

export const CPO = baselineMethod({
  title: 'CPO',
  about: 'CPO: reference-free −log σ(β·(S_w − S_l)) plus λ·NLL of the chosen (TRL CPOTrainer loss_type sigmoid)',
  reference: 'none',
  options: CPO_OPTIONS,
  make: (c) => ({ loss: (sums, beta) => Tensor.tidy(() => cpoLoss(sums, { beta, alpha: c.cpoAlpha })), metrics: ['nll_loss'], chosenNll: true }),
})

// RRHF (losses/rrhf.ts), pairwise: max(0, p_l − p_w) on length-normalised scores plus λ·NLL.
import { z } from 'zod'

import type { OptionTable } from '../option-table'
import { rrhfLoss } from './losses'
import { baselineMethod } from './baseline-specs'
import { Tensor } from '../../core/tensor'

export const RRHF_OPTIONS = {
  rrhfLambda: { schema: z.number().min(0).default(1), kind: 'number', help: 'rrhf: λ, the weight of the fine-tuning term (the paper: 1)' },
} satisfies OptionTable

export const RRHF = baselineMethod({
  title: 'RRHF',
  about: 'RRHF (pairwise): max(0, p_l − p_w) on per-token mean log-probs plus λ·NLL of the chosen',
  reference: 'none',
  options: RRHF_OPTIONS,
  make: (c) => ({ loss: (sums) => Tensor.tidy(() => rrhfLoss(sums, { lambda: c.rrhfLambda })), metrics: ['nll_loss'], chosenNll: true }),
})

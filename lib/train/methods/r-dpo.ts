// R-DPO (losses/r-dpo.ts): DPO with α·(|y_w| − |y_l|) inside the sigmoid.
import { z } from 'zod'

import type { OptionTable } from '../option-table'
import { rDpoLoss } from './losses'
import { baselineMethod } from './baseline-specs'
import { BETA_OPTIONS, REFERENCE_OPTIONS } from './preference'
import { Tensor } from '../../core/tensor'

export const R_DPO_OPTIONS = {
  ...BETA_OPTIONS,
  ...REFERENCE_OPTIONS,
  rdpoAlpha: {
    schema: z.number().min(0).default(0.05),
    kind: 'number',
    help: 'r-dpo: α, the length regulariser per token of the completions\u2019 length difference',
  },
} satisfies OptionTable

export const R_DPO = baselineMethod({
  title: 'R-DPO',
  about: 'R-DPO: length-regularised DPO, −log σ(β·margin + α·(|y_w| − |y_l|))',
  reference: 'frozen',
  options: R_DPO_OPTIONS,
  make: (c) => ({ loss: (sums, beta) => Tensor.tidy(() => rDpoLoss(sums, { beta, alpha: c.rdpoAlpha })), metrics: [] }),
})

// ORPO (losses/orpo.ts): NLL of the chosen plus λ times the log odds-ratio term; λ is --beta, as
// in TRL's ORPOTrainer.
import { orpoLoss } from './losses'
import { baselineMethod } from './baseline-specs'
import { betaOption } from './preference'
import { Tensor } from '../../core/tensor'

export const ORPO = baselineMethod({
  title: 'ORPO',
  about: 'ORPO: NLL of the chosen − λ·log σ(log odds ratio), λ = --beta (TRL ORPOTrainer)',
  reference: 'none',
  options: { ...betaOption(0.1, 'orpo: λ, the weight of the odds-ratio term (TRL\u2019s beta)') },
  make: () => ({
    loss: (sums, beta) => Tensor.tidy(() => orpoLoss(sums, { lambda: beta })),
    metrics: ['nll_loss', 'log_odds_ratio', 'log_odds_chosen'],
    chosenNll: true,
  }),
})

// IPO (losses/ipo.ts): τ is --beta, as in TRL's DPOTrainer loss_type 'ipo'.
import { ipoLoss } from './losses'
import { baselineMethod } from './baseline-specs'
import { betaOption, REFERENCE_OPTIONS } from './preference'
import { Tensor } from '../../core/tensor'

export const IPO = baselineMethod({
  title: 'IPO',
  about: 'IPO: squared distance of the per-token log-ratio margin from 1/(2τ), τ = --beta (TRL loss_type ipo)',
  reference: 'frozen',
  options: { ...betaOption(0.1, 'ipo: τ, the regularisation (TRL\u2019s beta for loss_type ipo)'), ...REFERENCE_OPTIONS },
  make: () => ({ loss: (sums, beta) => Tensor.tidy(() => ipoLoss(sums, { tau: beta })), metrics: [] }),
})

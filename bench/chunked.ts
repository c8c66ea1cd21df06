// The chunked fused-linear path against the materialised one, from hidden states and lm_head
// weights: (a) logits = h·Wᵀ for both models, then the fused op, backward through the matmul;
// (b) ops.epsilonDpoLossFromHidden, which never holds more than a chunk of logits.
import { maskedTokenLogps } from '../lib/eval/sequence-logps'
import { ops, Tensor } from '../lib/index'
import type { Measured } from './measure'

export interface ChunkedConfig {
  tokens: number
  hidden: number
  vocab: number
  chunkTokens?: number
}

export interface ChunkedInputs {
  policyHidden: Tensor
  policyHead: Tensor
  referenceHidden: Tensor
  referenceHead: Tensor
  labels: Tensor
  lossMask: Tensor
}

const BETA = 0.1
const EPSILON = 0.01
const STEPS = 256

export function makeChunkedInputs(c: ChunkedConfig): ChunkedInputs {
  const rows = c.tokens / STEPS
  Tensor.manualSeed(7)
  const policyHidden = Tensor.randn([rows, STEPS, c.hidden])
  policyHidden.requiresGrad = true
  const policyHead = Tensor.randn([c.vocab, c.hidden]).mul(1 / Math.sqrt(c.hidden))
  policyHead.requiresGrad = true
  const labels = new BigInt64Array(c.tokens)
  for (let i = 0; i < labels.length; i++) labels[i] = BigInt((i * 7919) % c.vocab)
  return {
    policyHidden,
    policyHead,
    referenceHidden: Tensor.randn([rows, STEPS, c.hidden]),
    referenceHead: Tensor.randn([c.vocab, c.hidden]).mul(1 / Math.sqrt(c.hidden)),
    labels: Tensor.from(labels, [rows, STEPS]),
    lossMask: Tensor.full([rows, STEPS], 1),
  }
}

export function materialised(x: ChunkedInputs): number {
  const policyLogits = x.policyHidden.matmul(x.policyHead.transpose(0, 1))
  const referenceLogits = x.referenceHidden.matmul(x.referenceHead.transpose(0, 1))
  const out = ops.epsilonDpoLoss({ policyLogits, referenceLogits, labels: x.labels, lossMask: x.lossMask, beta: BETA, epsilon: EPSILON })
  referenceLogits.dispose()
  out.loss.backward()
  policyLogits.dispose()
  return out.loss.item()
}

export function chunked(chunkTokens: number | undefined) {
  return (x: ChunkedInputs): number => {
    const out = ops.epsilonDpoLossFromHidden({ ...x, beta: BETA, epsilon: EPSILON, chunkTokens })
    out.loss.backward()
    return out.loss.item()
  }
}

export function zeroGrads(x: ChunkedInputs): void {
  x.policyHidden.zeroGrad()
  x.policyHead.zeroGrad()
}

/** SFT before the chunked path: full logits, log-softmax + gather (maskedTokenLogps), backward. */
export function sftMaterialised(x: ChunkedInputs): number {
  const logits = x.policyHidden.matmul(x.policyHead.transpose(0, 1))
  const loss = maskedTokenLogps(logits, x.labels, x.lossMask)
    .sum()
    .mul(-1 / x.labels.numel)
  loss.backward()
  logits.dispose()
  return loss.item()
}

/** SFT on the chunked path: ops.sequenceStatsFromHidden, never more than a chunk of logits. */
export function sftChunked(x: ChunkedInputs): number {
  const s = ops.sequenceStatsFromHidden({ policyHidden: x.policyHidden, policyHead: x.policyHead, labels: x.labels, lossMask: x.lossMask })
  const loss = s.logps.sum().mul(-1 / x.labels.numel)
  loss.backward()
  return loss.item()
}

export type { Measured }

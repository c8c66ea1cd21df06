// Held-out evaluation of a policy against its reference: preference accuracy and reward margins
// (the DPO implicit reward β·(S − S_ref)), and the mean sequence KL(π‖π_ref) over the completion
// tokens, Σ_t Σ_v π(v|·)·(log π(v|·) − log π_ref(v|·)), computed exactly over the vocabulary by the
// chunked lm_head op (no [2B,T,V] logits).
import { collate, type PreferenceTokenizer, type TokenizedPair } from '../data'
import type { CausalLM } from '../model'
import { checkInputErrors } from '../core/pair-record'
import { Tensor } from '../core/tensor'
import { modelSequenceStats } from './sequence-logps'

export interface PreferenceEvalOptions {
  policy: CausalLM
  reference: CausalLM
  pairs: readonly TokenizedPair[]
  tokenizer: PreferenceTokenizer
  beta: number
  batchSize?: number
  device?: string
  /** Called after each batch with the pairs done so far. */
  onProgress?: (done: number) => void
}

export interface PreferenceEval {
  pairs: number
  /** Fraction of pairs whose chosen reward exceeds the rejected one. */
  accuracy: number
  margin: number
  chosenReward: number
  rejectedReward: number
  /** Mean over completions (chosen and rejected) of the summed per-token KL(π‖π_ref). */
  kl: number
}

export async function evaluatePreferences(o: PreferenceEvalOptions): Promise<PreferenceEval> {
  const batchSize = o.batchSize ?? 8
  let wins = 0
  let margin = 0
  let chosen = 0
  let rejected = 0
  let kl = 0
  for (let start = 0; start < o.pairs.length; start += batchSize) {
    const batch = collate(o.pairs.slice(start, start + batchSize), o.tokenizer.padTokenId, { device: o.device })
    // One chunked pass over both models' hidden states: S, S_ref and the exact token KL per row.
    const s = await modelSequenceStats(o.policy, batch, { reference: o.reference })
    // One host read per batch: S, S_ref and the KL of every row, and the op's input-error flag.
    const rows = 2 * batch.pairs
    const all = Tensor.cat([s.logps, s.referenceLogps!, s.kl!, s.inputError.reshape([1])], 0)
    const host = Float64Array.from(all.toArray() as Float64Array)
    checkInputErrors([host[3 * rows]!])
    const S = host.subarray(0, rows)
    const Sref = host.subarray(rows, 2 * rows)
    const B = batch.pairs
    for (let i = 0; i < B; i++) {
      const c = o.beta * (S[i]! - Sref[i]!)
      const j = o.beta * (S[B + i]! - Sref[B + i]!)
      chosen += c
      rejected += j
      margin += c - j
      if (c > j) wins += 1
    }
    kl += host.subarray(2 * rows, 3 * rows).reduce((a, b) => a + b, 0)
    Tensor.disposeAll(all, s, batch)
    o.onProgress?.(Math.min(start + batchSize, o.pairs.length))
  }
  const n = o.pairs.length
  return {
    pairs: n,
    accuracy: n ? wins / n : 0,
    margin: n ? margin / n : 0,
    chosenReward: n ? chosen / n : 0,
    rejectedReward: n ? rejected / n : 0,
    kl: n ? kl / (2 * n) : 0,
  }
}

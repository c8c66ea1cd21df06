// Evaluation on the chunked lm_head path against the same quantities from full [2B,T,V] logits:
// preference accuracy, rewards and the exact token KL (evaluatePreferences), and the per-row
// log-probs of modelSequenceStats (what SFT and the gold KL use).
import t from 'tap'

import { collate, loadPreferenceData } from '../lib/data'
import { evaluatePreferences, maskedTokenLogps, modelSequenceStats } from '../lib/eval'
import { CausalLM, Tensor } from '../lib/index'
import { close, describe } from './helpers/assert'
import { tempDir } from './helpers/data-fixtures'
import { makeTrainableModel, writeToyPreferences } from './helpers/train-fixtures'

t.test('evaluatePreferences and modelSequenceStats match the full-logits computation', async (t) => {
  const policyDir = makeTrainableModel(t, 5)
  const policy = (await CausalLM.fromPretrained(policyDir)).eval()
  const reference = (await CausalLM.fromPretrained(makeTrainableModel(t, 6))).eval()
  const data = await loadPreferenceData({ data: writeToyPreferences(tempDir(t), 10), tokenizer: policyDir, log: () => {} })
  const beta = 0.3

  // Eager: full logits of both models, fp64 from there on.
  let wins = 0
  let margin = 0
  let kl = 0
  const logps: number[] = []
  for (let start = 0; start < data.train.length; start += 4) {
    const batch = collate(data.train.slice(start, start + 4), data.tokenizer.padTokenId)
    const p = policy.forward(batch.inputIds, { attentionMask: batch.attentionMask, grad: false }).logits.to('float64')
    const r = reference.forward(batch.inputIds, { attentionMask: batch.attentionMask, grad: false }).logits.to('float64')
    // collate writes −100 at masked positions; gather needs a valid index there (masked out anyway).
    const labels = batch.labels.where(batch.lossMask.gt(0), Tensor.zeros(batch.labels.shape, { dtype: 'int64' }))
    const S = maskedTokenLogps(p, labels, batch.lossMask).sum(1).toArray() as Float64Array
    const Sref = maskedTokenLogps(r, labels, batch.lossMask).sum(1).toArray() as Float64Array
    logps.push(...S)
    const B = batch.pairs
    for (let i = 0; i < B; i++) {
      const c = beta * (S[i]! - Sref[i]!)
      const j = beta * (S[B + i]! - Sref[B + i]!)
      margin += c - j
      if (c > j) wins++
    }
    const lp = p.logSoftmax(-1)
    const lr = r.logSoftmax(-1)
    kl += lp.exp().mul(lp.sub(lr)).sum(-1).mul(batch.lossMask.to('float64')).sum().item()

    // The same rows through modelSequenceStats (policy only, as SFT calls it).
    const fused = await modelSequenceStats(policy, batch)
    const cmp = close(fused.logps.toArray() as Float64Array, S, 1e-5, 1e-5)
    t.ok(cmp.ok, `rows ${start}…: logps ${describe(cmp)}`)
    t.same(Array.from(fused.tokenCount.toArray() as Float64Array), Array.from(batch.completionTokens), 'token counts')
  }
  const n = data.train.length
  const got = await evaluatePreferences({ policy, reference, pairs: data.train, tokenizer: data.tokenizer, beta, batchSize: 3 })
  t.equal(got.pairs, n)
  t.equal(got.accuracy, wins / n, 'accuracy (no pair is within rounding of a tie)')
  t.ok(close([got.margin], [margin / n], 1e-5, 1e-6).ok, `margin ${got.margin} vs ${margin / n}`)
  t.ok(close([got.kl], [kl / (2 * n)], 1e-4, 1e-6).ok, `KL ${got.kl} vs ${kl / (2 * n)}`)
  t.ok(got.kl > 0, 'two different models have a positive KL')
})

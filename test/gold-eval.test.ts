// Gold evaluation on a tiny random llama: seeded sampling, completions cut at EOS, the sampled
// log-ratio log π(y|x) − log π_ref(y|x) against a float64 host recomputation, and win-rate
// counting (ties ½) with judges whose answers are known in advance.

import t from 'tap'

import { collateSequences, loadTokenizer } from '../lib/data'
import { evaluateWithGold, type GoldJudge, sampleCompletions, sampleLogRatios } from '../lib/eval/gold'
import { CausalLM } from '../lib/index'
import { makeTrainableModel } from './helpers/train-fixtures'

const PROMPTS = ['how are you ?', 'hello world !', 'the cat sat .', 'i am', 'the dog ran .', 'hello']

function hostLogp(lm: CausalLM, prompt: Int32Array, completion: Int32Array): number {
  const seq = [...prompt, ...completion]
  const ids = collateSequences([{ prompt: Int32Array.from(seq), completion: new Int32Array() }], 0).inputIds
  const logits = lm.forward(ids, { grad: false }).logits.to('float64').toArray() as Float64Array
  const V = logits.length / seq.length
  let s = 0
  for (let pos = prompt.length - 1; pos < seq.length - 1; pos++) {
    const row = logits.subarray(pos * V, (pos + 1) * V)
    const max = Math.max(...row)
    s += row[seq[pos + 1]!]! - (max + Math.log(row.reduce((a, v) => a + Math.exp(v - max), 0)))
  }
  return s
}

t.test('sampling, sampled log-ratios and win rates', async (t) => {
  const dirA = makeTrainableModel(t, 1)
  const dirB = makeTrainableModel(t, 2)
  const tokenizer = loadTokenizer(dirA)
  const policy = (await CausalLM.fromPretrained(dirA)).eval()
  const reference = (await CausalLM.fromPretrained(dirB)).eval()
  const o = { maxNewTokens: 6, seed: 3, temperature: 1 }
  const a = await sampleCompletions(policy, tokenizer, PROMPTS, o)
  t.same(a, await sampleCompletions(policy, tokenizer, PROMPTS, o), 'the same seed gives the same samples')
  t.notSame(
    a.map((s) => s.text),
    (await sampleCompletions(policy, tokenizer, PROMPTS, { ...o, seed: 4 })).map((s) => s.text),
  )
  t.same(
    a.map((s) => s.prompt),
    PROMPTS,
    'samples come back in prompt order (grouped by length inside)',
  )
  for (const s of a) {
    const eos = Array.from(s.completionIds).indexOf(tokenizer.eosTokenId)
    t.ok(eos < 0 ? s.completionIds.length === 6 : eos === s.completionIds.length - 1, 'cut right after the first EOS, or at maxNewTokens')
  }

  const ratios = await sampleLogRatios(policy, reference, a, tokenizer.padTokenId, { batchSize: 4 })
  a.forEach((s, i) => {
    const want = hostLogp(policy, s.promptIds, s.completionIds) - hostLogp(reference, s.promptIds, s.completionIds)
    t.ok(Math.abs(ratios[i]! - want) < 1e-3, `log-ratio ${ratios[i]} vs host ${want}`)
  })

  // Judges with known outcomes: a constant one ties everything; "longer wins" counts by hand.
  const run = (judge: GoldJudge) => evaluateWithGold({ policy, reference, tokenizer, prompts: PROMPTS, judge, ...o })
  const constant = await run({ name: 'constant', reward: () => 1 })
  t.equal(constant.winRate, 0.5)
  t.equal(constant.meanReward, 1)
  const longer = await run({ name: 'length', reward: (_p, c) => c.length })
  const byHand =
    longer.samples.reduce((w, s) => w + (s.policy.length > s.reference.length ? 1 : s.policy.length === s.reference.length ? 0.5 : 0), 0) / PROMPTS.length
  t.equal(longer.winRate, byHand)
  // evaluateWithGold batches all 6 samples at once while `ratios` used batches of 4: fp32 forwards of
  // differently padded batches differ in the last bits (the EPYC runner saw 3.6e-7 on 5.37), so the
  // bound is fp32 rounding of a sum of ~10 per-token log-probs, not an exact equality.
  const meanRatio = ratios.reduce((x, y) => x + y, 0) / ratios.length
  const klTol = 1e-5 * (1 + ratios.reduce((x, y) => x + Math.abs(y), 0) / ratios.length)
  t.ok(Math.abs(longer.kl - meanRatio) < klTol, `KL ${longer.kl} is the mean log-ratio ${meanRatio} over the policy samples`)
  const sameBatching = await sampleLogRatios(policy, reference, a, tokenizer.padTokenId) // a: the same seed and prompts
  t.equal(longer.kl, sameBatching.reduce((x, y) => x + y, 0) / sameBatching.length, 'with the same batching it is the mean exactly')
})

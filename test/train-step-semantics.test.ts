// One optimizer step over 2 accumulation micro-batches against an fp64 re-computation of spec §5–§6:
// both micro-batches use the same β, each pair its own β_i from its own step decision, the
// accumulated gradient is the mean of the micro-batch losses' gradients, and β is updated once
// from the mean step over all pairs of the step.
import * as path from 'node:path'

import t from 'tap'

import { data, Tensor } from '../lib/index'
import { Trainer } from '../lib/train/engine'
import { close, describe } from './helpers/assert'
import { tempDir } from './helpers/data-fixtures'
import { referenceLoss, sequenceGradients } from './helpers/reference'
import { makeTrainableModel, writeToyPreferences } from './helpers/train-fixtures'

t.test('2 micro-batches: gradient, per-pair β and the β update', async (t) => {
  const model = makeTrainableModel(t, 3)
  const referenceModel = makeTrainableModel(t, 4) // a different reference, so the steps are not all ties
  const work = tempDir(t)
  const beta = 0.5
  const epsilon = 0.1
  const lr = 1e-3
  // AdamW's first step moves a weight by d = −lr·g/(|g| + eps) exactly (m̂ = g, √v̂ = |g|), so the
  // gradient the trainer used is read back as g = −sign(d)·eps·|d/lr|/(1 − |d/lr|).
  const adamEpsilon = 1
  const trainer = await Trainer.create(
    {
      model,
      referenceModel,
      data: [writeToyPreferences(work, 16)],
      out: path.join(work, 'run'),
      dtype: 'float64',
      batchSize: 3,
      gradAccumulation: 2,
      maxSteps: 1,
      learningRate: lr,
      warmupRatio: 0,
      adamEpsilon,
      maxGradNorm: 0,
      beta,
      epsilon,
      maxLength: 32,
      seed: 7,
    },
    { log: () => {} },
  )
  const head = trainer.policy.namedParameters().get('lm_head.weight')!
  const before = Float64Array.from(head.toArray() as Float64Array)

  // fp64 re-computation on the same two batches (the sampler is deterministic from the seed).
  const sampler = new data.PairSampler(trainer.data.train.length, { batchSize: 3, seed: 7, shuffle: true })
  const steps: number[] = []
  for (let k = 0; k < 2; k++) {
    const batch = data.collate(
      sampler.next().indices.map((i) => trainer.data.train[i]!),
      trainer.data.tokenizer.padTokenId,
    )
    const policy = await trainer.policy.forwardAsync(batch.inputIds, { attentionMask: batch.attentionMask })
    const reference = await trainer.reference!.forwardAsync(batch.inputIds, { attentionMask: batch.attentionMask, grad: false })
    const c = {
      pairs: batch.pairs,
      steps: batch.length,
      vocab: policy.logits.shape[2]!,
      policy: policy.logits,
      reference: reference.logits,
      labels: batch.labels,
      mask: batch.lossMask,
    }
    const ref = referenceLoss(c, beta, epsilon)
    steps.push(...ref.steps)
    const labels = batch.labels.where(batch.lossMask.gt(0), Tensor.zeros(batch.labels.shape, { dtype: 'int64' }))
    const S = policy.logits.logSoftmax(-1).gather(2, labels.unsqueeze(-1)).squeeze(-1).mul(batch.lossMask.to('float64')).sum(1)
    S.mul(Tensor.from(sequenceGradients(ref, batch.pairs), [2 * batch.pairs]))
      .sum()
      .mul(0.5)
      .backward()
  }
  const want = Float64Array.from(head.grad!.toArray() as Float64Array)
  for (const p of trainer.policy.namedParameters().values()) p.zeroGrad()
  t.ok(
    steps.some((s) => s !== 0),
    `steps ${steps}`,
  )

  const logs: Record<string, number>[] = []
  trainer.on('log', (m) => logs.push(m))
  const state = await trainer.train()
  const after = head.toArray() as Float64Array
  const used = Float64Array.from(after, (v, i) => {
    const d = (v - before[i]!) / lr
    return (-Math.sign(d) * adamEpsilon * Math.abs(d)) / (1 - Math.abs(d))
  })
  const cmp = close(used, want, 1e-5, 1e-9)
  t.ok(cmp.ok, `lm_head gradient: ${describe(cmp)}`)

  const avg = steps.reduce((a, b) => a + b, 0) / steps.length
  t.equal(logs[0]!['kl/beta'], beta, 'both micro-batches used the step-start β')
  t.ok(Math.abs(logs[0]!['kl/avg_steps']! - avg) < 1e-15, 's̄ over all 6 pairs of the step')
  t.ok(Math.abs(state.method.beta - beta / (1 + epsilon * avg)) < 1e-15, 'β ← β/(1 + ε·s̄), once')
})

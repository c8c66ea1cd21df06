// Device→host reads are what stall a training step on a GPU. The addon counts every read that
// would sync on CUDA (runtime().hostSyncs, counted on the CPU too), so these budgets hold on any
// device: an ε-DPO optimizer step reads twice (the step's pair records, the clip's gradient
// norm) however many micro-batches it accumulates, and preference evaluation once per batch.
import * as path from 'node:path'

import t, { type Test } from 'tap'

import { runtime } from '../lib/index'
import { collate } from '../lib/data'
import { evaluatePreferences, modelSequenceStats } from '../lib/eval'
import { Trainer } from '../lib/train/engine'
import { tempDir } from './helpers/data-fixtures'
import { makeTrainableModel, writeToyPreferences } from './helpers/train-fixtures'

const syncs = () => runtime().hostSyncs

async function syncsPerStep(t: Test, gradAccumulation: number): Promise<{ perStep: number[]; trainer: Trainer }> {
  const model = makeTrainableModel(t, 3)
  const work = tempDir(t)
  const trainer = await Trainer.create(
    {
      model,
      data: [writeToyPreferences(work, 32)],
      out: path.join(work, 'run'),
      dtype: 'float32',
      batchSize: 2,
      gradAccumulation,
      maxSteps: 3,
      learningRate: 1e-3,
      warmupRatio: 0,
      maxGradNorm: 1,
      beta: 0.1,
      epsilon: 0.01,
      maxLength: 32,
      seed: 7,
    },
    { log: () => {} },
  )
  // Between two 'step' events lies exactly one optimizer step (and its logging).
  const marks: number[] = []
  trainer.on('step', () => marks.push(syncs()))
  await trainer.train()
  return { perStep: marks.slice(1).map((m, i) => m - marks[i]!), trainer }
}

t.test('an optimizer step reads the device at most twice, with or without accumulation', async (t) => {
  for (const accumulation of [1, 4]) {
    const { perStep } = await syncsPerStep(t, accumulation)
    t.equal(perStep.length, 2, 'two measured steps')
    for (const n of perStep) t.ok(n <= 2 && n >= 1, `gradAccumulation ${accumulation}: ${n} host reads in one step`)
  }
})

t.test('preference evaluation reads the device at most once per batch', async (t) => {
  const { trainer } = await syncsPerStep(t, 1)
  const pairs = trainer.data.train.slice(0, 6)
  const before = syncs()
  const r = await evaluatePreferences({
    policy: trainer.policy,
    reference: trainer.reference!,
    pairs,
    tokenizer: trainer.data.tokenizer,
    beta: 0.1,
    batchSize: 2,
  })
  t.equal(r.pairs, 6)
  t.ok(syncs() - before <= 3, `${syncs() - before} host reads for 3 batches`)
  t.ok(Number.isFinite(r.kl) && r.kl >= 0, `kl ${r.kl}`)
})

t.test('the counter counts item(), toArray() and the nonzero() fallback', async (t) => {
  const { trainer } = await syncsPerStep(t, 1)
  const before = syncs()
  const batch = collate(trainer.data.train.slice(0, 2), trainer.data.tokenizer.padTokenId)
  const withRows = await modelSequenceStats(trainer.policy, batch)
  t.equal(syncs() - before, 0, 'activeRows given: no read')
  const { activeRows, ...rest } = batch
  const without = await modelSequenceStats(trainer.policy, rest)
  t.equal(syncs() - before, 1, 'without activeRows: one read (nonzero)')
  t.equal(without.logps.toArray().length, 4)
  t.equal(syncs() - before, 2, 'toArray: one read')
  withRows.tokenCount.sum().item()
  t.equal(syncs() - before, 3, 'item: one read')
  activeRows.dispose()
})

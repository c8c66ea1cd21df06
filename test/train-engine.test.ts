// The engine reads the device once per optimizer step, whatever the method and gradAccumulation:
// micro-batches leave their loss and stats on the device, and the step's stats come back together
// (one Tensor.cat + toArray). Counted on Tensor.toArray / Tensor.item, the only host reads.
import * as path from 'node:path'

import t from 'tap'

import { Tensor } from '../lib/index'
import { SftTrainer, Trainer } from '../lib/train/engine'
import { tempDir, writeJsonl } from './helpers/data-fixtures'
import { makeTrainableModel, writeToyPreferences } from './helpers/train-fixtures'

function countReads(t: { teardown(fn: () => void): void }): { reads: number } {
  const counter = { reads: 0 }
  const proto = Tensor.prototype as unknown as Record<'toArray' | 'item', (...a: unknown[]) => unknown>
  for (const name of ['toArray', 'item'] as const) {
    const original = proto[name]
    proto[name] = function (this: unknown, ...a: unknown[]) {
      counter.reads++
      return original.apply(this, a)
    }
    t.teardown(() => {
      proto[name] = original
    })
  }
  return counter
}

async function readsPerStep(trainer: Trainer | SftTrainer, counter: { reads: number }): Promise<number[]> {
  const per: number[] = []
  let last = counter.reads
  trainer.on('step', () => {
    per.push(counter.reads - last)
    last = counter.reads
  })
  await trainer.train()
  return per
}

const base = { batchSize: 3, gradAccumulation: 4, maxSteps: 3, logEvery: 1000, maxLength: 32 }

t.test('ε-DPO: one host read per step over 4 micro-batches', async (t) => {
  const work = tempDir(t)
  const trainer = await Trainer.create(
    { ...base, model: makeTrainableModel(t), data: [writeToyPreferences(work, 40)], out: path.join(work, 'run') },
    { log: () => {} },
  )
  t.same(await readsPerStep(trainer, countReads(t)), [1, 1, 1])
})

t.test('SFT: one host read per step over 4 micro-batches', async (t) => {
  const work = tempDir(t)
  const data = writeJsonl(
    path.join(work, 'sft.jsonl'),
    Array.from({ length: 40 }, (_, i) => ({ prompt: 'how are you ?', completion: i % 2 ? 'i am good .' : 'good , thanks !' })),
  )
  const trainer = await SftTrainer.create({ ...base, model: makeTrainableModel(t), data: [data], out: path.join(work, 'run') }, { log: () => {} })
  t.same(await readsPerStep(trainer, countReads(t)), [1, 1, 1])
})

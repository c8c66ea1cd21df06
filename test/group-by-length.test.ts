// --group-by-length (HF's group_by_length): the sampler orders each shuffled epoch as Hugging
// Face's LengthGroupedSampler (mega-batches sorted by decreasing length, the longest example
// first), which cuts padding; a sampler resumed from a saved state yields exactly the remaining
// batches; a trainer run interrupted and resumed with grouping ends bit-exact with an
// uninterrupted one, and its batches are the grouped ones.
import * as fs from 'node:fs'
import * as path from 'node:path'

import t from 'tap'

import { data, io } from '../lib/index'
import { readMetrics } from '../lib/train/metrics-log'
import { Trainer } from '../lib/train/engine'
import { tempDir, writeJsonl } from './helpers/data-fixtures'
import { makeTrainableModel } from './helpers/train-fixtures'

// Lengths with many ties and a wide spread, seeded.
const LENGTHS = Array.from({ length: 203 }, (_, i) => 3 + ((i * 7919) % 61) + (i % 17 === 0 ? 200 : 0))

t.test('a grouped epoch: a permutation; each mega-batch sorted by decreasing length; the longest first', (t) => {
  const batchSize = 4
  const mega = Math.min(Math.floor(LENGTHS.length / (4 * batchSize)), 50) * batchSize // 12·4 = 48
  for (const epoch of [0, 1]) {
    const perm = Array.from(data.lengthGroupedPermutation(LENGTHS, batchSize, 5, epoch))
    t.same(
      [...perm].sort((a, b) => a - b),
      LENGTHS.map((_, i) => i),
      `epoch ${epoch}: every example once`,
    )
    t.equal(LENGTHS[perm[0]!], Math.max(...LENGTHS), `epoch ${epoch}: the longest example comes first`)
    // Each mega-batch holds the shuffled epoch's examples of its slice, in non-increasing length
    // (its first element may be the one swapped with the longest, so it is left out).
    const random = Array.from(data.epochPermutation(LENGTHS.length, 5, epoch))
    for (let start = 0; start < perm.length; start += mega) {
      const group = perm.slice(start, start + mega)
      const slice = new Set(random.slice(start, start + mega))
      t.ok(
        group.slice(1).every((i) => slice.has(i)),
        `mega-batch at ${start}: the epoch's shuffled examples of its slice`,
      )
      t.ok(
        group.slice(2).every((i, k) => LENGTHS[i]! <= LENGTHS[group[k + 1]!]!),
        `mega-batch at ${start}: sorted by decreasing length`,
      )
    }
  }
  t.not(data.lengthGroupedPermutation(LENGTHS, batchSize, 5, 0).join(), data.lengthGroupedPermutation(LENGTHS, batchSize, 5, 1).join(), 'epochs differ')
  t.not(data.lengthGroupedPermutation(LENGTHS, batchSize, 6, 0).join(), data.lengthGroupedPermutation(LENGTHS, batchSize, 5, 0).join(), 'seeds differ')
  t.end()
})

t.test('grouping cuts the padding of the batches', (t) => {
  const padded = (perm: ArrayLike<number>, batchSize: number) => {
    let sum = 0
    for (let s = 0; s < perm.length; s += batchSize) {
      const batch = Array.from(perm)
        .slice(s, s + batchSize)
        .map((i) => LENGTHS[i]!)
      sum += batch.length * Math.max(...batch)
    }
    return sum
  }
  const random = padded(data.epochPermutation(LENGTHS.length, 5, 0), 4)
  const grouped = padded(data.lengthGroupedPermutation(LENGTHS, 4, 5, 0), 4)
  const real = LENGTHS.reduce((a, b) => a + b, 0)
  t.ok(grouped - real < 0.5 * (random - real), `padding tokens ${grouped - real} grouped vs ${random - real} shuffled`)
  t.end()
})

t.test('a grouped sampler resumes exactly, across epochs; bad lengths are named', (t) => {
  const take = (s: data.PairSampler, n: number) => Array.from({ length: n }, () => s.next())
  const opts = { batchSize: 5, seed: 9, lengths: LENGTHS }
  const whole = take(new data.PairSampler(LENGTHS.length, opts), 100)
  t.same(
    whole.slice(0, 41).flatMap((b) => b.indices),
    Array.from(data.lengthGroupedPermutation(LENGTHS, 5, 9, 0)),
    'epoch 0 is the grouped permutation',
  )
  for (const cut of [0, 1, 17, 40, 41, 63]) {
    const s = new data.PairSampler(LENGTHS.length, opts)
    take(s, cut)
    const state = JSON.parse(JSON.stringify(s.state())) as data.SamplerState
    t.same(take(new data.PairSampler(LENGTHS.length, { batchSize: 5, lengths: LENGTHS, state }), 100 - cut), whole.slice(cut), `resume after ${cut} batches`)
  }
  t.throws(() => new data.PairSampler(10, { batchSize: 2, lengths: [1, 2, 3] }), /sampler.lengths: 3 lengths for a dataset of 10 pairs/)
  t.throws(() => new data.PairSampler(3, { batchSize: 2, lengths: [1, 2, 3], shuffle: false }), /sampler.lengths: grouping by length needs shuffle/)
  t.throws(() => new data.PairSampler(3, { batchSize: 2, lengths: [1, -2, 3] }), /lengths/)
  t.end()
})

t.test('a trainer with groupByLength: grouped batches, and a resumed run ends bit-exact', async (t) => {
  const model = makeTrainableModel(t)
  const work = tempDir(t)
  // Prompts of 1..12 words and answers of 1..6: lengths spread enough to group.
  const words = ['good', 'bad', 'the', 'cat', 'dog', 'ran', 'sat', 'hello', 'world', 'you', 'are', 'how']
  const rows = Array.from({ length: 40 }, (_, i) => ({
    prompt: words.slice(0, 1 + ((i * 5) % 12)).join(' '),
    chosen: ['good', ...words.slice(2, 2 + (i % 6))].join(' '),
    rejected: ['bad', ...words.slice(3, 3 + ((i * 7) % 6))].join(' '),
  }))
  const prefs = writeJsonl(path.join(work, 'prefs.jsonl'), rows)
  const config = {
    model,
    data: [prefs],
    batchSize: 4,
    maxSteps: 14,
    learningRate: 2e-3,
    epsilon: 0.05,
    beta: 0.5,
    saveEvery: 3,
    maxLength: 32,
    warmupRatio: 0,
    groupByLength: true,
    seed: 4,
  }
  const full = path.join(work, 'full')
  const trainer = await Trainer.create({ ...config, out: full }, { log: () => {} })
  // The first batch holds the longest pair (the grouped order), which a shuffled order rarely does.
  const pairs = trainer.data.train
  const length = (i: number) => pairs[i]!.prompt.length + Math.max(pairs[i]!.chosen.length, pairs[i]!.rejected.length)
  const expected = data.lengthGroupedPermutation(
    pairs.map((_, i) => length(i)),
    4,
    4,
    0,
  )
  const longest = Math.max(...pairs.map((_, i) => length(i)))
  t.equal(length(expected[0]!), longest, 'the grouped order starts with the longest pair')
  // The batches the trainer runs are padded to their longest row: the grouped order's.
  const forward = trainer.policy.forwardHiddenAsync.bind(trainer.policy)
  const widths: number[] = []
  trainer.policy.forwardHiddenAsync = (ids, o) => {
    widths.push(ids.shape[1]!)
    return forward(ids, o)
  }
  const whole = await trainer.train()
  const groupedWidths = Array.from({ length: 10 }, (_, b) => Math.max(...Array.from(expected.subarray(4 * b, 4 * b + 4), length)))
  t.same(widths.slice(0, 10), groupedWidths, 'the first epoch runs the grouped batches')

  const cut = path.join(work, 'cut')
  const first = await Trainer.create({ ...config, out: cut }, { log: () => {} })
  const abort = new AbortController()
  first.on('step', (s) => {
    if (s.step === 11) abort.abort() // an interruption in the second epoch (10 batches per epoch)
  })
  await first.train({ signal: abort.signal })
  const resumed = await (await Trainer.create({}, { log: () => {}, resume: cut })).train()
  t.equal(resumed.step, 14)
  t.equal(resumed.method.beta, whole.method.beta)
  const weights = (dir: string) =>
    Object.fromEntries(Object.entries(io.loadSafetensors(path.join(dir, 'model.safetensors'))).map(([n, x]) => [n, Array.from(x.toArray() as Float32Array)]))
  t.same(weights(path.join(cut, 'checkpoint-14')), weights(path.join(full, 'checkpoint-14')), 'same weights')
  const strip = (m: Record<string, number>) => ({ ...m, tokens_per_second: 0, step_time: 0 })
  t.same(readMetrics(cut).map(strip), readMetrics(full).map(strip), 'same metrics')
  t.ok(fs.existsSync(path.join(full, 'checkpoint-14')))
})

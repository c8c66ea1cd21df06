// The sampler: a seeded permutation per epoch, deterministic, and resumable from {epoch, position,
// seed}: resuming mid-epoch yields exactly the remaining batches.
import t from 'tap'

import { EdpoInputError, data } from '../lib/index'

function take(s: data.PairSampler, n: number): { epoch: number; indices: number[] }[] {
  return Array.from({ length: n }, () => s.next())
}

t.test('each epoch is a permutation of all pairs, different per epoch, the same for the same seed', (t) => {
  const s = new data.PairSampler(10, { batchSize: 4, seed: 7 })
  t.equal(s.batchesPerEpoch, 3)
  const batches = take(s, 6)
  t.same(
    batches.map((b) => [b.epoch, b.indices.length]),
    [
      [0, 4],
      [0, 4],
      [0, 2],
      [1, 4],
      [1, 4],
      [1, 2],
    ],
  )
  const e0 = batches.slice(0, 3).flatMap((b) => b.indices)
  const e1 = batches.slice(3).flatMap((b) => b.indices)
  t.same(
    [...e0].sort((a, b) => a - b),
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
  )
  t.same(
    [...e1].sort((a, b) => a - b),
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
  )
  t.not(e0.join(), e1.join(), 'epochs are shuffled differently')
  t.not(e0.join(), '0,1,2,3,4,5,6,7,8,9', 'shuffled')
  t.same(take(new data.PairSampler(10, { batchSize: 4, seed: 7 }), 6), batches, 'same seed, same batches')
  t.not(
    take(new data.PairSampler(10, { batchSize: 4, seed: 8 }), 3)
      .flatMap((b) => b.indices)
      .join(),
    e0.join(),
    'another seed, another order',
  )
  t.same(Array.from(data.epochPermutation(10, 7, 1)), e1, 'the permutation depends on (seed, epoch) only')
  t.end()
})

t.test('resuming from a saved state yields exactly the remaining batches, across epochs', (t) => {
  const whole = take(new data.PairSampler(11, { batchSize: 3, seed: 3 }), 9)
  for (let cut = 0; cut <= 9; cut++) {
    const s = new data.PairSampler(11, { batchSize: 3, seed: 3 })
    take(s, cut)
    const saved = JSON.parse(JSON.stringify(s.state())) as data.SamplerState
    const resumed = new data.PairSampler(11, { batchSize: 3, state: saved })
    t.same(take(resumed, 9 - cut), whole.slice(cut), `resume after ${cut} batches (${JSON.stringify(saved)})`)
  }
  const s = new data.PairSampler(11, { batchSize: 3, seed: 3 })
  take(s, 2)
  t.same(s.state(), { epoch: 0, position: 6, seed: 3 })
  take(s, 2)
  t.same(s.state(), { epoch: 0, position: 11, seed: 3 })
  t.ok(s.epochDone)
  t.equal(s.currentEpoch, 1)
  t.end()
})

t.test("dropLast drops each epoch's short batch; shuffle: false keeps file order", (t) => {
  const s = new data.PairSampler(10, { batchSize: 4, seed: 1, dropLast: true })
  t.equal(s.batchesPerEpoch, 2)
  t.same(
    take(s, 3).map((b) => [b.epoch, b.indices.length]),
    [
      [0, 4],
      [0, 4],
      [1, 4],
    ],
  )
  t.same(
    take(new data.PairSampler(5, { batchSize: 2, shuffle: false }), 3).map((b) => b.indices),
    [[0, 1], [2, 3], [4]],
  )
  t.end()
})

t.test('bad options and states are refused with the field named', (t) => {
  t.throws(() => new data.PairSampler(10, { batchSize: 0 }), { name: 'EdpoInputError', message: /^sampler\.batchSize: / })
  t.throws(() => new data.PairSampler(0, { batchSize: 2 }), new EdpoInputError('sampler: the dataset is empty (size 0)'))
  t.throws(
    () => new data.PairSampler(10, { batchSize: 2, state: { epoch: 0, position: 11, seed: 0 } }),
    new EdpoInputError("sampler.state.position: 11 is past the dataset's 10 pairs"),
  )
  t.throws(() => new data.PairSampler(10, { batchSize: 2, state: { epoch: -1, position: 0, seed: 0 } }), { message: /^sampler\.state\.epoch: / })
  t.throws(
    () => new data.PairSampler(10, { batchSize: 2, seed: 1, state: { epoch: 0, position: 0, seed: 2 } }),
    new EdpoInputError('sampler.state.seed: 2 differs from sampler.seed 1'),
  )
  t.throws(() => new data.PairSampler(3, { batchSize: 4, dropLast: true }), new EdpoInputError('sampler: dropLast with batchSize 4 leaves no batch of 3 pairs'))
  t.end()
})

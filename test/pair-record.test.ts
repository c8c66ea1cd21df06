// The ε-DPO ops' per-pair record: one float64 row per pair with the columns PAIR_RECORD_COLUMNS,
// checked against the fp64 reference; the result's fields are views of it; one host read of the
// records of several micro-batches gives the same metrics as the fields read one by one.
import t from 'tap'

import { EdpoInputError, ops, Tensor } from '../lib/index'
import { close, describe } from './helpers/assert'
import { makeCase, referenceLoss } from './helpers/reference'

const beta = 0.2
const epsilon = 0.05

t.test('record columns match the fp64 reference', (t) => {
  const c = makeCase({ pairs: 4, steps: 9, vocab: 11, seed: 21, dtype: 'float64' })
  const want = referenceLoss(c, beta, epsilon)
  const out = ops.epsilonDpoLoss({ policyLogits: c.policy, referenceLogits: c.reference, labels: c.labels, lossMask: c.mask, beta, epsilon })
  t.same(out.record.shape, [4, ops.PAIR_RECORD_COLUMNS.length])
  t.equal(out.record.dtype, 'float64')
  const r = ops.pairRecordColumns(Float64Array.from(out.record.toArray() as Float64Array))
  t.equal(r.pairs, 4)
  const B = 4
  const check = (got: ArrayLike<number>, ref: ArrayLike<number>, what: string) => {
    const cmp = close(Array.from(got), Array.from(ref), 1e-9, 1e-9)
    t.ok(cmp.ok, `${what}: ${describe(cmp)}`)
  }
  check(r.chosenLogps, want.S.subarray(0, B), 'chosenLogps')
  check(r.rejectedLogps, want.S.subarray(B), 'rejectedLogps')
  check(r.refChosenLogps, want.Sref.subarray(0, B), 'refChosenLogps')
  check(r.refRejectedLogps, want.Sref.subarray(B), 'refRejectedLogps')
  check(r.chosenRewards, want.chosenRewards, 'chosenRewards')
  check(r.rejectedRewards, want.rejectedRewards, 'rejectedRewards')
  t.same(Array.from(r.step), want.steps)
  check(r.beta, want.betas, 'beta')
  check([r.loss.reduce((a, b) => a + b, 0) / B], [want.loss], 'mean of per-pair losses')
  check([r.chosenLogitSum.reduce((a, b) => a + b, 0) / r.chosenTokens.reduce((a, b) => a + b, 0)], [want.meanChosenLogits], 'chosen logit sums / tokens')
  check(
    [r.rejectedLogitSum.reduce((a, b) => a + b, 0) / r.rejectedTokens.reduce((a, b) => a + b, 0)],
    [want.meanRejectedLogits],
    'rejected logit sums / tokens',
  )
  t.same(Array.from(r.inputError), [0, 0, 0, 0], 'no input error on valid input')
  // The fields are views of the record, with today's dtypes.
  t.equal(out.steps.dtype, 'int64')
  t.same(Array.from(out.steps.toArray() as BigInt64Array, Number), want.steps)
  check(out.betas.toArray() as Float64Array, want.betas, 'betas view')
  check([out.meanChosenLogits.item()], [want.meanChosenLogits], 'meanChosenLogits view')
  t.end()
})

t.test('one read of several records equals the fields read one by one', (t) => {
  const outs = [1, 2, 3].map((seed) => {
    const c = makeCase({ pairs: 2, steps: 5, vocab: 7, seed, dtype: 'float32' })
    return ops.epsilonDpoLoss({ policyLogits: c.policy, referenceLogits: c.reference, labels: c.labels, lossMask: c.mask, beta, epsilon })
  })
  const r = ops.pairRecordColumns(
    Float64Array.from(
      Tensor.cat(
        outs.map((o) => o.record),
        0,
      ).toArray() as Float64Array,
    ),
  )
  t.equal(r.pairs, 6)
  const oneByOne = outs.flatMap((o) => Array.from(o.chosenRewards.toArray() as Float32Array))
  const cmp = close(Array.from(r.chosenRewards), oneByOne, 1e-6, 1e-6)
  t.ok(cmp.ok, `chosenRewards: ${describe(cmp)}`)
  t.same(
    Array.from(r.step),
    outs.flatMap((o) => Array.from(o.steps.toArray() as BigInt64Array, Number)),
  )
  t.end()
})

t.test('input-error flags become EdpoInputError naming the argument', (t) => {
  t.doesNotThrow(() => ops.checkInputErrors([0, 0]))
  t.throws(() => ops.checkInputErrors([0, 1]), { name: 'EdpoInputError', message: /^lossMask: contains a non-finite value$/ })
  t.throws(() => ops.checkInputErrors([2]), { name: 'EdpoInputError', message: /^labels: values at unmasked positions/ })
  t.throws(() => ops.checkInputErrors([6]), { message: /labels: .*; activeRows: / })
  t.throws(() => ops.pairRecordColumns(new Float64Array(ops.PAIR_RECORD_COLUMNS.length + 1)), EdpoInputError)
  t.end()
})

t.test("activeRows must be the mask's non-zero rows (checked, on the CPU, eagerly)", (t) => {
  const hidden = Tensor.randn([2, 3, 4])
  const head = Tensor.randn([5, 4])
  const labels = Tensor.zeros([2, 3], { dtype: 'int64' })
  const lossMask = Tensor.from(new Float32Array([0, 1, 1, 1, 0, 1]), [2, 3])
  const args = { policyHidden: hidden, policyHead: head, labels, lossMask }
  const rows = (xs: number[]) => Tensor.from(BigInt64Array.from(xs.map(BigInt)), [xs.length])
  const plain = ops.sequenceStatsFromHidden(args).logps.toArray() as Float64Array
  const given = ops.sequenceStatsFromHidden({ ...args, activeRows: rows([1, 2, 3, 5]) }).logps.toArray() as Float64Array
  t.same(Array.from(given), Array.from(plain))
  for (const bad of [
    [1, 2, 3],
    [1, 2, 3, 4],
    [2, 1, 3, 5],
    [1, 1, 3, 5],
    [1, 2, 3, 9],
  ]) {
    t.throws(() => ops.sequenceStatsFromHidden({ ...args, activeRows: rows(bad) }), { name: 'EdpoInputError', message: /^activeRows: must list/ }, `[${bad}]`)
  }
  t.throws(() => ops.sequenceStatsFromHidden({ ...args, activeRows: Tensor.zeros([4]) }), {
    name: 'EdpoInputError',
    message: /^activeRows: expected a 1-D int64 tensor/,
  })
  t.end()
})

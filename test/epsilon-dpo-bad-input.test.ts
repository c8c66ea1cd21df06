// Bad inputs to the op throw errors that name the argument; none of them crashes the process.
import t from 'tap'

import { EdpoInputError, type EdpoNativeError, ops, Tensor } from '../lib/index'

const B = 2
const T = 3
const V = 5
const logits = () => Tensor.zeros([2 * B, T, V])
const good = () => ({
  policyLogits: logits(),
  referenceLogits: logits(),
  labels: Tensor.zeros([2 * B, T], { dtype: 'int64' }),
  lossMask: Tensor.full([2 * B, T], 1),
  beta: 0.1,
  epsilon: 0.01,
})

const cases: [string, Record<string, unknown>, RegExp, typeof EdpoInputError | typeof EdpoNativeError][] = [
  ['2-D policy', { policyLogits: Tensor.zeros([2 * B, V]) }, /policyLogits: expected a 3-D/, EdpoInputError],
  [
    'odd row count',
    { policyLogits: Tensor.zeros([3, T, V]), referenceLogits: Tensor.zeros([3, T, V]) },
    /policyLogits: the first dimension must be 2B/,
    EdpoInputError,
  ],
  ['reference shape', { referenceLogits: Tensor.zeros([2 * B, T, V + 1]) }, /referenceLogits: shape/, EdpoInputError],
  ['reference dtype', { referenceLogits: Tensor.zeros([2 * B, T, V], { dtype: 'float64' }) }, /referenceLogits: dtype/, EdpoInputError],
  [
    'integer logits',
    { policyLogits: Tensor.zeros([2 * B, T, V], { dtype: 'int32' }), referenceLogits: Tensor.zeros([2 * B, T, V], { dtype: 'int32' }) },
    /policyLogits: expected float32/,
    EdpoInputError,
  ],
  ['labels shape', { labels: Tensor.zeros([2 * B, T + 1], { dtype: 'int64' }) }, /labels: expected shape/, EdpoInputError],
  ['labels dtype', { labels: Tensor.zeros([2 * B, T], { dtype: 'int32' }) }, /labels: expected int64/, EdpoInputError],
  [
    'label too large',
    { labels: Tensor.full([2 * B, T], V, { dtype: 'int64' }) },
    /labels: values at unmasked positions must lie in \[0, 5\), found 5/,
    EdpoInputError,
  ],
  ['label negative', { labels: Tensor.full([2 * B, T], -1, { dtype: 'int64' }) }, /labels: .*found -1/, EdpoInputError],
  ['mask shape', { lossMask: Tensor.full([2 * B], 1) }, /lossMask: expected shape/, EdpoInputError],
  ['mask NaN', { lossMask: Tensor.full([2 * B, T], NaN) }, /lossMask: contains a non-finite value/, EdpoInputError],
  ['beta NaN', { beta: NaN }, /beta: must be a number in \(0, 1e\+06\], got nan/, EdpoInputError],
  ['beta zero', { beta: 0 }, /beta: must be a number in \(0, 1e\+06\], got 0/, EdpoInputError],
  ['epsilon infinite', { epsilon: Infinity }, /epsilon: must be finite and in \[0, 1\), got inf/, EdpoInputError],
  ['epsilon 1', { epsilon: 1 }, /epsilon: must be finite and in \[0, 1\), got 1/, EdpoInputError],
  ['label smoothing', { labelSmoothing: 0.7 }, /labelSmoothing: must be in \[0, 0.5\]/, EdpoInputError],
  ['not a tensor', { labels: [1, 2, 3] }, /labels: expected a Tensor/, EdpoInputError],
  ['unknown field', { temperature: 1 }, /epsilonDpoLoss: unknown argument 'temperature'/, EdpoInputError],
]

for (const [name, patch, pattern, kind] of cases) {
  t.test(name, (t) => {
    const args = { ...good(), ...patch } as Parameters<typeof ops.epsilonDpoLoss>[0]
    t.throws(() => ops.epsilonDpoLoss(args), kind)
    t.throws(() => ops.epsilonDpoLoss(args), pattern)
    t.end()
  })
}

t.test('labels outside [0, V) are fine where the mask is 0 (TRL writes -100 there)', (t) => {
  const args = good()
  const labels = new BigInt64Array(2 * B * T).fill(-100n)
  const mask = new Float32Array(2 * B * T)
  for (let r = 0; r < 2 * B; r++) {
    labels[r * T + T - 1] = 2n
    mask[r * T + T - 1] = 1
  }
  const out = ops.epsilonDpoLoss({ ...args, labels: Tensor.from(labels, [2 * B, T]), lossMask: Tensor.from(mask, [2 * B, T]) })
  t.ok(Number.isFinite(out.loss.item()))
  t.end()
})

t.test('the async form rejects with the same error', async (t) => {
  await t.rejects(ops.epsilonDpoLossAsync({ ...good(), labels: Tensor.full([2 * B, T], 99, { dtype: 'int64' }) }), /labels: values/)
})

t.test('a disposed tensor is reported, not dereferenced', (t) => {
  const args = good()
  args.policyLogits.dispose()
  t.throws(() => ops.epsilonDpoLoss(args), /policyLogits: the tensor was disposed/)
  t.end()
})

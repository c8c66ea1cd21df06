// The collator's batch layout (docs/epsilon-dpo.md §1) on a worked example: chosen rows then
// rejected rows, prompt then completion, right padding trimmed to the batch, shifted labels and a
// loss mask on exactly the completion tokens.
import t from 'tap'

import { EdpoInputError, data } from '../lib/index'

const pair = (source: string, prompt: number[], chosen: number[], rejected: number[]): data.TokenizedPair => ({
  source,
  prompt: Int32Array.from(prompt),
  chosen: Int32Array.from(chosen),
  rejected: Int32Array.from(rejected),
})

const PAD = 0
const X = -100 // IGNORE_INDEX
// Pair 0: prompt [11 12], chosen [21 22 2], rejected [31 2]
// Pair 1: prompt [13], chosen [23 2], rejected [32 33 34 2]   → longest row: 1 + 4 = 5
const pairs = [pair('a:1', [11, 12], [21, 22, 2], [31, 2]), pair('a:2', [13], [23, 2], [32, 33, 34, 2])]

t.test('host batch: rows, padding, shifted labels and loss mask (worked example)', (t) => {
  const b = data.collateHost(pairs, PAD)
  t.equal(b.pairs, 2)
  t.equal(b.length, 5, 'padded to the longest row of this batch only')
  const rows = (a: ArrayLike<bigint | number>) =>
    Array.from({ length: 4 }, (_, r) =>
      Array.from(a)
        .slice(r * 5, r * 5 + 5)
        .map(Number),
    )
  t.same(rows(b.inputIds), [
    [11, 12, 21, 22, 2], // chosen 0
    [13, 23, 2, PAD, PAD], // chosen 1
    [11, 12, 31, 2, PAD], // rejected 0
    [13, 32, 33, 34, 2], // rejected 1
  ])
  t.same(rows(b.attentionMask), [
    [1, 1, 1, 1, 1],
    [1, 1, 1, 0, 0],
    [1, 1, 1, 1, 0],
    [1, 1, 1, 1, 1],
  ])
  // labels[r,t] = token t+1 where that token is a completion token.
  t.same(rows(b.labels), [
    [X, 21, 22, 2, X],
    [23, 2, X, X, X],
    [X, 31, 2, X, X],
    [32, 33, 34, 2, X],
  ])
  t.same(rows(b.lossMask), [
    [0, 1, 1, 1, 0],
    [1, 1, 0, 0, 0],
    [0, 1, 1, 0, 0],
    [1, 1, 1, 1, 0],
  ])
  t.same(Array.from(b.completionTokens), [3, 2, 2, 4])
  t.same(b.sources, ['a:1', 'a:2'])
  t.end()
})

t.test('tensors: int64 ids, mask and labels, float32 loss mask, shape [2B, T]', (t) => {
  const b = data.collate(pairs.slice(0, 1), PAD)
  for (const [name, tensor, dtype] of [
    ['inputIds', b.inputIds, 'int64'],
    ['attentionMask', b.attentionMask, 'int64'],
    ['labels', b.labels, 'int64'],
    ['lossMask', b.lossMask, 'float32'],
  ] as const) {
    t.same(tensor.shape, [2, 5], `${name} shape: one pair, longest row 2 + 3`)
    t.equal(tensor.dtype, dtype, `${name} dtype`)
  }
  t.same(Array.from(b.labels.toArray() as BigInt64Array).map(Number), [X, 21, 22, 2, X, X, 31, 2, X, X])
  t.same(Array.from(b.lossMask.toArray() as Float32Array), [0, 1, 1, 1, 0, 0, 1, 1, 0, 0])
  t.same(Array.from(b.completionTokens), [3, 2])
  t.throws(() => data.collate([], PAD), new EdpoInputError('collate: a batch needs at least one pair'))
  t.end()
})

t.test('padded: set when some row is shorter than the batch; paddingLayout drops a mask of ones', (t) => {
  const padded = data.collate(pairs, PAD)
  t.equal(padded.padded, true)
  t.same(Object.keys(data.paddingLayout(padded)), ['attentionMask'], 'a padded batch keeps its mask')
  // One pair whose chosen and rejected rows have the same length: nothing is padded.
  const even = data.collate([pair('b:1', [11, 12], [21, 2], [31, 2])], PAD)
  t.equal(even.padded, false)
  t.same(Array.from(even.attentionMask.toArray() as BigInt64Array).map(Number), [1, 1, 1, 1, 1, 1, 1, 1])
  t.same(data.paddingLayout(even), {}, 'a mask of ones is left out')
  t.same(Object.keys(data.paddingLayout({ attentionMask: even.attentionMask })), ['attentionMask'], 'a batch that does not say keeps its mask')
  t.end()
})

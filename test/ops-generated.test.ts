// lib/core/ops-generated.ts is generated from the built addon's op table (csrc/js_op_table.cc); this
// fails when the two drift apart (run `node scripts/gen-op-types.js` after changing the table).
import * as fs from 'node:fs'
import * as path from 'node:path'

import t from 'tap'

import { ops, Tensor } from '../lib/index'
import { nativeAddon } from '../lib/core/native'

// eslint-disable-next-line @typescript-eslint/no-require-imports
const gen = require('../scripts/gen-op-types.js') as { generate(d: unknown): string; loadDeclarations(): unknown; target: string }

t.test('the committed lib/core/ops-generated.ts equals a fresh generation from the addon', (t) => {
  t.equal(fs.readFileSync(path.join(__dirname, '..', 'lib', 'core', 'ops-generated.ts'), 'utf8'), gen.generate(nativeAddon().opDeclarations()))
  t.end()
})

t.test('every declared op is bound as name and nameAsync, and nothing else op-like', (t) => {
  const decls = nativeAddon().opDeclarations()
  const addon = nativeAddon() as unknown as Record<string, unknown>
  for (const op of decls.ops) {
    t.type(addon[op.name], 'function', op.name)
    t.type(addon[`${op.name}Async`], 'function', `${op.name}Async`)
  }
  t.same([...ops.PAIR_RECORD_COLUMNS], decls.pairRecordColumns)
  t.end()
})

t.test('the generic reader names missing, mistyped and unknown arguments', (t) => {
  const hidden = Tensor.zeros([2, 3, 4])
  const head = Tensor.zeros([5, 4])
  const labels = Tensor.zeros([2, 3], { dtype: 'int64' })
  const lossMask = Tensor.full([2, 3], 1)
  const args = { policyHidden: hidden, policyHead: head, labels, lossMask }
  t.equal(ops.sequenceStatsFromHidden(args).logps.shape[0], 2)
  const call = (a: Record<string, unknown>) => () => ops.sequenceStatsFromHidden(a as unknown as Parameters<typeof ops.sequenceStatsFromHidden>[0])
  t.throws(call({ ...args, labels: undefined }), { name: 'EdpoInputError', message: /^labels: missing \(expected a Tensor\)/ })
  t.throws(call({ ...args, chunkTokens: '4' }), { name: 'EdpoInputError', message: /^chunkTokens: expected a number/ })
  t.throws(call({ ...args, chunkTokens: 2.5 }), { name: 'EdpoInputError', message: /^chunkTokens: expected an integer/ })
  t.throws(call({ ...args, head }), { name: 'EdpoInputError', message: /sequenceStatsFromHidden: unknown argument 'head'/ })
  t.throws(call({ ...args, policyBias: {} }), { name: 'EdpoInputError', message: /^policyBias: expected a Tensor/ })
  const dead = Tensor.zeros([5])
  dead.dispose()
  t.throws(call({ ...args, policyBias: dead }), { name: 'EdpoInputError', message: /policyBias/ })
  t.rejects(ops.sequenceStatsFromHiddenAsync({ ...args, finalLogitSoftcap: -1 }), { name: 'EdpoInputError', message: /^finalLogitSoftcap:/ })
  t.end()
})

t.test('list arguments: entries are named by index, null only where the declaration allows it', (t) => {
  const p = Tensor.zeros([3])
  const args = { params: [p], master: [null], expAvg: [Tensor.zeros([3])], expAvgSq: [Tensor.zeros([3])], step: 1, lr: 0.1, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0 }
  t.doesNotThrow(() => ops.adamwStep(args))
  const call = (a: Record<string, unknown>) => () => ops.adamwStep(a as unknown as Parameters<typeof ops.adamwStep>[0])
  t.throws(call({ ...args, expAvg: [null] }), { name: 'EdpoInputError', message: /^expAvg\[0\]: expected a Tensor/ })
  t.throws(call({ ...args, master: [1] }), { name: 'EdpoInputError', message: /^master\[0\]: expected a Tensor/ })
  t.throws(call({ ...args, params: p }), { name: 'EdpoInputError', message: /^params: expected an array of Tensors/ })
  t.throws(call({ ...args, step: 1.5 }), { name: 'EdpoInputError', message: /^step: expected an integer/ })
  t.throws(call({ ...args, lr: -1 }), { name: 'EdpoInputError', message: /^lr: must be a finite number >= 0/ })
  t.end()
})
